"""gunicorn's parts of `pacsdesk serve`: the server, a one-thread worker no client may stall, its log."""

from __future__ import annotations

import select
from collections.abc import MutableMapping
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.workers.sync import SyncWorker

from core.health import PATH as HEALTH_PATH
from core.supervisor import SupervisingArbiter

REQUEST_WAIT_S = 5.0  # silence allowed before a connection's request starts
STALL_S = 30.0  # silence allowed between two packets of a request or an answer (a tablet roaming)


class WebServer(BaseApplication):
    """Gunicorn serving PACS Desk on ``bind``: ``workers`` processes of ``threads`` request threads."""

    def __init__(self, bind: str, workers: int, threads: int) -> None:
        self._bind, self._workers, self._threads = bind, workers, threads
        super().__init__()

    def load_config(self) -> None:
        """The server's settings (gunicorn calls this while it is constructed)."""
        self.cfg.set("bind", self._bind)
        self.cfg.set("workers", self._workers)
        self.cfg.set("threads", self._threads)
        # A worker takes a connection only when a thread is free, and answers it with
        # "Connection: close": waiting requests queue in arrival order for the first free
        # worker instead of piling up behind a busy one that kept their connection.
        self.cfg.set("worker_class", "core.webworker.OneRequestWorker" if self._threads == 1 else "gthread")
        self.cfg.set("worker_connections", self._threads)
        self.cfg.set("keepalive", 0)
        self.cfg.set("timeout", 120)
        self.cfg.set("accesslog", "-")
        self.cfg.set("logger_class", "core.webworker.AccessLog")
        self.cfg.set("forwarded_allow_ips", "127.0.0.1")
        # One control socket per user would be shared by every server on the machine.
        self.cfg.set("control_socket_disable", True)

    def run(self) -> None:
        """Run gunicorn's master, keeping the exit status of a helper it collects (supervisor).

        A bad configuration raises ``RuntimeError``, gunicorn's own way to report it.
        """
        SupervisingArbiter(self).run()

    def load(self) -> Any:
        """The app of one web worker (each worker builds its own)."""
        from core.cli import web_app  # the CLI's factory, which imports this module

        return web_app(self._threads)


class OneRequestWorker(SyncWorker):
    """gunicorn's sync worker, except that a silent or stalled connection is let go.

    It takes a connection only when it is free, so waiting requests stay in the kernel's queue in
    arrival order for whichever worker frees up first. The plain sync worker waits for a request
    for as long as the connection stays open: a browser's unused pre-connection or a client that
    sends nothing would hold the worker until the 120-second worker timeout.
    """

    def accept(self, listener: Any) -> None:
        """Take one connection; serve it if its request starts arriving within REQUEST_WAIT_S."""
        client, addr = listener.accept()
        util.close_on_exec(client)
        if not select.select([client], [], [], REQUEST_WAIT_S)[0]:
            util.close(client)
            return
        client.settimeout(STALL_S)
        self.handle(listener, client, addr)


class AccessLog(Logger):
    """gunicorn's access log without the answered health checks a load balancer sends every few seconds.

    A failing health check (503) is still logged, as is every other request.
    """

    def access(self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: Any) -> None:
        """Log the request unless it is a health check answered ``200``."""
        if environ.get("PATH_INFO") == HEALTH_PATH and resp.status_code == 200:
            return
        super().access(resp, req, environ, request_time)
