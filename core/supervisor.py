"""`pacsdesk serve` keeps its helper processes (the job worker) alive, and they die with it.

A helper that exits is started again within a few seconds, and the restart is logged. A
helper asks the kernel to send it SIGTERM when the serving process dies, even by SIGKILL
(``PR_SET_PDEATHSIG``), so no orphan keeps running.
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

log = logging.getLogger("pacsdesk.supervisor")

PARENT_ENV = "PACSDESK_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
RESTART_DELAYS = (1.0, 2.0, 4.0, 8.0)   # after quick successive crashes; never more than 8 s


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
        process = subprocess.Popen(self.argv, env=env, close_fds=False)  # noqa: S603 - our own command line
        log.info("%s started (pid %d)", self.label, process.pid)
        return process

    def run(self) -> None:
        """Start the helper and restart it when it exits, backing off after quick successive crashes."""
        quick_crashes = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = self._spawn()
            while self.process.poll() is None and not self._stopping.is_set():
                time.sleep(0.5)
            if self._stopping.is_set():
                break
            quick_crashes = quick_crashes + 1 if time.monotonic() - started < 30 else 0
            delay = RESTART_DELAYS[min(quick_crashes, len(RESTART_DELAYS)) - 1] if quick_crashes else 1.0
            self.restarts += 1
            log.warning("%s (pid %d) exited with status %s; restarting it in %.0f s", self.label,
                        self.process.pid, self.process.returncode, delay)
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
