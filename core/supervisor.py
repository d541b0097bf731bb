"""`pacsdesk serve` keeps its helper processes (the job worker) alive, and they die with it.

A helper that exits is started again within a few seconds, and the restart is logged with how it
ended (its exit status or the signal that killed it). A helper asks the kernel to send it SIGTERM
when the serving process dies, even by SIGKILL (``PR_SET_PDEATHSIG``), so no orphan keeps running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from gunicorn.arbiter import Arbiter

log = logging.getLogger("pacsdesk.supervisor")

PARENT_ENV = "PACSDESK_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
RESTART_DELAYS = (1.0, 2.0, 4.0, 8.0)   # after quick successive crashes; never more than 8 s

# The helpers' pids, and the wait statuses of those collected by the web server's master (below).
_helpers: set[int] = set()
_collected: dict[int, int] = {}
_waiting = threading.Lock()


def _reap(pid: int) -> int | None:
    """A helper's wait status if it has exited and is collected now, else None (caller holds ``_waiting``).

    A helper collected now, or collected already, is no longer watched.
    """
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # collected already
        done, status = pid, -1
    if not done:
        return None
    _helpers.discard(pid)
    return status if status >= 0 else None


def _collect(pid: int) -> int | None:
    """A helper's wait status once it has exited, whoever collected it first; None while it runs."""
    with _waiting:
        status = _reap(pid)
        if status is None and pid not in _helpers:  # the web server's master collected it first
            return _collected.pop(pid, -1)
        return status


def how_it_ended(status: int) -> str:
    """A wait status in words: "exit status 1", "signal SIGKILL"."""
    if status < 0:
        return "an unknown status (the web server's master collected it)"
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


class SupervisingArbiter(Arbiter):
    """gunicorn's master, which keeps the wait status of a helper it collects for the helper's supervisor.

    The master collects every child that exits (``waitpid(-1)``), the helpers included, and would
    leave their supervisors reading "exit status 0" for a helper killed by a signal.
    """

    def reap_workers(self) -> None:
        """Collect the exited helpers, keeping their statuses, then the web workers as gunicorn does."""
        with _waiting:
            for pid in list(_helpers):
                if (status := _reap(pid)) is not None:
                    _collected[pid] = status
        super().reap_workers()


def die_with_parent() -> None:
    """In a supervised helper: exit when the supervising process dies (Linux), at once if it already has."""
    expected = os.environ.get(PARENT_ENV)
    if not expected:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != expected:
        log.warning("the supervising process %s is gone; exiting", expected)
        sys.exit(0)


def helper_command(*args: str) -> list[str]:
    """`pacsdesk ARGS` as a child process that never imports from the working directory (``-P``)."""
    return [sys.executable, "-P", "-m", "core.cli", *args]


class Supervised(threading.Thread):
    """Runs one helper process and starts it again whenever it exits, until ``stop()``."""

    def __init__(self, name: str, argv: list[str]) -> None:
        super().__init__(name=f"supervise-{name}", daemon=True)
        self.label = name
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the helper (this thread lives as long as the server, as PR_SET_PDEATHSIG requires)."""
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        # close_fds=False lets Popen use posix_spawn: its default fork-and-exec waits on a pipe
        # that a web worker forked meanwhile inherits, which left this thread blind until that
        # worker exited. Python opens its own files non-inheritable, so nothing leaks.
        with _waiting:
            process = subprocess.Popen(self.argv, env=env, close_fds=False)  # noqa: S603 - our own command line
            _helpers.add(process.pid)
        log.info("%s started (pid %d)", self.label, process.pid)
        return process

    def wait_for_end(self, process: subprocess.Popen[bytes]) -> int | None:
        """The helper's wait status once it has ended (-1 if unknown), or None when told to stop first."""
        while (status := _collect(process.pid)) is None:
            if self._stopping.wait(0.5):
                return None
        process.returncode = os.waitstatus_to_exitcode(status) if status >= 0 else -1
        return status

    def run(self) -> None:
        """Start the helper and restart it when it exits, backing off after quick successive crashes."""
        quick_crashes = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = self._spawn()
            status = self.wait_for_end(self.process)
            if status is None or self._stopping.is_set():
                return
            quick_crashes = quick_crashes + 1 if time.monotonic() - started < 30 else 0
            delay = RESTART_DELAYS[min(quick_crashes, len(RESTART_DELAYS)) - 1] if quick_crashes else 1.0
            self.restarts += 1
            log.warning("%s (pid %d) ended with %s; restarting it in %.0f s", self.label,
                        self.process.pid, how_it_ended(status), delay)
            self._stopping.wait(delay)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop restarting, ask the helper to stop (SIGTERM), kill it after ``timeout``."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.join(timeout=5)
