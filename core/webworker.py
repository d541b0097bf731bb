"""gunicorn's parts of `pacsdesk serve`: a one-thread worker no client may stall, and the access log."""

from __future__ import annotations

import select
from collections.abc import MutableMapping
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.workers.sync import SyncWorker

from core.health import PATH as HEALTH_PATH

REQUEST_WAIT_S = 5.0  # silence allowed before a connection's request starts
STALL_S = 30.0  # silence allowed between two packets of a request or an answer (a tablet roaming)


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
