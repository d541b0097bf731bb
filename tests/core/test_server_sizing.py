"""The server's workers, threads and connection pool fit the machine, and can be set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from app import create_app
from core.cli import worker_app
from core.config import JOB_THREADS, ConfigError, load_config
from core.extensions import db


def test_workers_and_threads_default_to_the_cores_the_server_may_use(tmp_path):
    config = load_config({}, {"PACSDESK_INSTANCE_PATH": str(tmp_path)})
    cores = len(os.sched_getaffinity(0))
    assert config["PACSDESK_WEB_WORKERS"] == min(max(cores, 2), 16)
    assert config["PACSDESK_WEB_THREADS"] == 1


def test_workers_and_threads_can_be_set_and_a_bad_value_names_the_variable(tmp_path):
    config = load_config({"PACSDESK_WEB_WORKERS": "3", "PACSDESK_WEB_THREADS": "6"},
                         {"PACSDESK_INSTANCE_PATH": str(tmp_path)})
    assert (config["PACSDESK_WEB_WORKERS"], config["PACSDESK_WEB_THREADS"]) == (3, 6)
    with pytest.raises(ConfigError, match="PACSDESK_WEB_THREADS: must be `auto` or a whole number"):
        load_config({"PACSDESK_WEB_THREADS": "0"}, {"PACSDESK_INSTANCE_PATH": str(tmp_path)})


def test_each_workers_connection_pool_is_sized_to_its_threads(app_config):
    app = create_app({**app_config, "PACSDESK_WEB_THREADS": 6})
    with app.app_context():
        pool = db.engine.pool
        assert pool.size() == 6  # type: ignore[attr-defined]
        assert pool._max_overflow == 6  # type: ignore[attr-defined]
        db.engine.dispose()


def test_the_pool_holds_at_least_the_job_workers_threads(app_config):
    app = create_app({**app_config, "PACSDESK_WEB_THREADS": 1})
    with app.app_context():
        pool = db.engine.pool
        assert pool.size() == JOB_THREADS  # type: ignore[attr-defined]
        db.engine.dispose()


def test_a_job_worker_with_many_threads_gets_a_connection_for_each_job_read_and_its_loop(app_config):
    app = worker_app(8, app_config)
    with app.app_context():
        # Eight jobs each hold their session's connection and a snapshot read beside it; the loop one more.
        held = [db.engine.connect() for _ in range(2 * 8 + 1)]
        try:
            assert all(connection.scalar(text("SELECT 1")) == 1 for connection in held)
        finally:
            for connection in held:
                connection.close()
            db.engine.dispose()


def test_a_web_workers_full_collections_walk_what_requests_leave_not_the_loaded_app(tmp_path):
    # A web worker loads the app through the server `serve` runs; the app's own objects are frozen,
    # so a full garbage collection (70-110 ms over the whole app) walks only what comes afterwards.
    probe = ("import gc\nfrom core.webworker import WebServer\n"
             "app = WebServer('127.0.0.1:0', workers=2, threads=1).load()\n"
             "print(type(app).__name__, gc.get_freeze_count(), len(gc.get_objects()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update(PACSDESK_INSTANCE_PATH=str(tmp_path), PACSDESK_DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}",
               PACSDESK_SECRET_KEY="x" * 32)
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kind, *counts = done.stdout.split()
    assert kind == "Flask"
    frozen, tracked = map(int, counts)
    assert frozen > 50_000  # the loaded app: modules, classes, templates, mappers
    assert tracked < frozen // 20
