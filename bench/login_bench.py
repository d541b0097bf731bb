"""Login benchmark: a directory login (search, groups, bind) against a local one, and the directory sync.

Starts its own OpenLDAP slapd on loopback (Debian's slapd and ldap-utils, as the integration tests
do) with the AD-shaped test tree and 5,000 generated people, then through the real application
(Flask test client, ``POST /login``, a new browser each time):

- login p95 for a directory account (ldaps, service-account search, memberOf groups, bind as the
  person, account update, audit event) against a local account (Argon2id verification, audit
  event), interleaved in the same run;
- the directory sync over 5,000 directory accounts: the first run, which ends the access of
  everyone the generated directory marks as left or puts in no role group, and a second run that
  finds nothing to change.

Both kinds of login verify one Argon2id hash (a directory login verifies a throw-away one, so the
two cost the same on the server). ``--argon2 default`` uses argon2-cffi's defaults (time cost 3,
64 MiB, parallelism 4), as production does; ``--argon2 cheap`` the test suite's (1, 1 MiB, 1).

    python bench/login_bench.py
    python bench/login_bench.py --database-url postgresql://user@host/db --logins 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import benchlib  # first: it puts the project on sys.path
from sqlalchemy import func, select

from core.auth import directory_accounts
from core.auth.models import AuthSource, Role, User
from core.auth.services import NO_LOCAL_PASSWORD, NewUser, create_user
from core.extensions import db
from core.timeutil import utcnow
from tests.core.directory.conftest import ad_settings, configure, openldap_settings
from tests.core.directory.data import (
    ad_entries,
    generated_entries,
    generated_role,
    ol_group,
    openldap_entries,
)
from tests.core.directory.slapd import (
    OPENLDAP_SUFFIX,
    USER_PASSWORD,
    Slapd,
    find_slapd,
    ldif,
    make_certificates,
)

CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
LOCAL_PASSWORD = "plum-orbit-ledger-93"
SYNC_USERS = 5000


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="sqlite:///file.db or postgresql://... "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--logins", type=int, default=100, help="logins of each kind (default 100)")
    parser.add_argument("--argon2", choices=["default", "cheap"], default="default",
                        help="Argon2id cost: argon2-cffi's defaults or the tests' cheap ones")
    return parser.parse_args()


def start_directory(folder: Path) -> tuple[Slapd, object]:
    """slapd with TLS, the AD-shaped tree, and 5,000 generated people in the OpenLDAP-shaped one."""
    find_slapd()
    certificates = make_certificates(folder)
    server = Slapd(folder, (certificates.server_cert, certificates.server_key), certificates.ca_file)
    server.start()
    server.load(ldif(ad_entries()))
    server.load(ldif(openldap_entries() + generated_entries(SYNC_USERS)), OPENLDAP_SUFFIX)
    return server, certificates


def login_ms(app, username: str, password: str) -> float:
    """Milliseconds one login takes, from a new browser; it must succeed."""
    client = app.test_client()
    started = time.perf_counter()
    response = client.post("/login", data={"username": username, "password": password})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 302:
        raise SystemExit(f"login of {username} failed: {response.status_code}")
    return elapsed


def measure_logins(app, runs: int) -> tuple[list[float], list[float]]:
    """Directory and local login times, interleaved so both see the same machine."""
    directory, local = [], []
    for _ in range(3):  # warm-up: first connections, the account made at first login
        login_ms(app, "rita.radiologist", USER_PASSWORD)
        login_ms(app, "ada", LOCAL_PASSWORD)
    for _ in range(runs):
        directory.append(login_ms(app, "rita.radiologist", USER_PASSWORD))
        local.append(login_ms(app, "ada", LOCAL_PASSWORD))
    return directory, local


def directory_accounts_rows(count: int) -> list[dict]:
    """Rows for ``count`` directory accounts as their first logins would have made them."""
    now = utcnow()
    return [{"username": f"user{i:05d}", "full_name": f"Generated User{i:05d}", "department": "Radiology",
             "role": (generated_role(i) or "requester"), "password_hash": NO_LOCAL_PASSWORD,
             "auth_source": AuthSource.DIRECTORY, "is_disabled": False, "created_at": now,
             "failed_login_count": 0, "session_version": 1, "must_change_password": False,
             "directory_dn": f"uid=user{i:05d},ou=generated,{OPENLDAP_SUFFIX}"} for i in range(count)]


def main() -> None:
    """Run the benchmark and print its figures."""
    args = parse_args()
    params = CHEAP_ARGON2 if args.argon2 == "cheap" else {}
    with tempfile.TemporaryDirectory() as folder, \
            benchlib.scratch_database(args.database_url, "login_bench") as (url, schema):
        server, certificates = start_directory(Path(folder))
        try:
            login_config = configure(ad_settings(server, certificates), {})
            app = benchlib.make_app(url, Path(folder) / "instance", schema,
                                    settings={"PACSDESK_MFA_REQUIRED_ROLES": "none"},
                                    config={"PACSDESK_DIRECTORY": login_config, "RATELIMIT_ENABLED": False,
                                            "WTF_CSRF_ENABLED": False,  # no form page fetched first
                                            "PASSWORD_HASH_PARAMS": params})
            with app.app_context():
                db.create_all()
                create_user(NewUser(username="ada", role=Role.REQUESTER, password=LOCAL_PASSWORD))
                db.session.commit()
            directory, local = measure_logins(app, args.logins)
            cost = "cheap (t=1, 1 MiB, p=1)" if params else "argon2-cffi defaults (t=3, 64 MiB, p=4)"
            engine = app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0]
            print(f"argon2id: {cost}; database: {engine}; {args.logins} logins each")
            print(f"login p95, directory (ldaps search + groups + bind): {benchlib.p95(directory):7.1f} ms "
                  f"(median {sorted(directory)[len(directory) // 2]:.1f})")
            print(f"login p95, local account:                           {benchlib.p95(local):7.1f} ms "
                  f"(median {sorted(local)[len(local) // 2]:.1f})")
            print(f"directory / local p95: {benchlib.p95(directory) / benchlib.p95(local):.2f}x")

            sync_config = configure(openldap_settings(server, certificates), {
                "user_base": f"ou=generated,{OPENLDAP_SUFFIX}",
                "role_groups": f"technician={ol_group('generated-techs')};"
                               f"requester={ol_group('generated-requesters')}"})
            with app.app_context():
                benchlib.bulk_insert(User, directory_accounts_rows(SYNC_USERS))
                db.session.commit()
                for label in ("first sync (ends access of leavers)", "second sync (nothing to change)"):
                    started = time.perf_counter()
                    outcome = directory_accounts.sync_directory(sync_config)
                    db.session.commit()
                    seconds = time.perf_counter() - started
                    print(f"{label}: {seconds:6.2f} s for {outcome.listed:,} listed, "
                          f"{outcome.ended} accesses ended, ok={outcome.ok}")
                active = db.session.execute(select(func.count()).select_from(User).where(
                    User.auth_source == "directory", User.is_disabled.is_(False))).scalar_one()
                print(f"directory accounts still active: {active:,}")
                db.session.remove()
                db.engine.dispose()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
