"""TOTP codes (RFC 6238) with a frozen clock, QR codes drawn locally, and recovery codes."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import time_machine
from argon2 import PasswordHasher

from core.auth.mfa import (
    check_recovery_code,
    current_step,
    hash_recovery_code,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    qr_svg,
    verify_code,
)
from tests.conftest import CHEAP_ARGON2

NOW = datetime(2026, 3, 14, 9, 26, 45, tzinfo=UTC)  # 15 s into its 30-second step
CHEAP = PasswordHasher(**CHEAP_ARGON2)


def code_at(secret: str, moment: datetime) -> str:
    """What an authenticator app shows at ``moment``."""
    return pyotp.TOTP(secret).at(moment)


def test_new_secrets_are_random_160_bit_base32():
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


def test_rfc_6238_test_vectors():
    # RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last six of the eight digits.
    secret = base64.b32encode(b"12345678901234567890").decode()
    for unix_time, expected in ((59, "287082"), (1111111109, "081804"), (2000000000, "279037")):
        at = datetime.fromtimestamp(unix_time, UTC)
        assert verify_code(secret, expected, None, at=at) == unix_time // 30


def test_provisioning_uri_names_the_issuer_and_account():
    secret = new_secret()
    uri = provisioning_uri(secret, "rita.radiologist@hospital.org", "St. Example Hospital PACS Desk")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/St. Example Hospital PACS Desk:rita.radiologist@hospital.org"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["St. Example Hospital PACS Desk"]


def test_qr_code_is_a_self_contained_svg():
    uri = provisioning_uri(new_secret(), "alice.admin", "PACS Desk")
    svg = qr_svg(uri)
    root = ET.fromstring(svg)  # noqa: S314 -- our own output, parsed to prove it is well-formed
    assert root.tag == "svg" and root.find(".//path") is not None
    assert "<script" not in svg and "href" not in svg and "http" not in svg
    assert qr_svg(uri) == svg  # drawn from the URI alone
    assert qr_svg(provisioning_uri(new_secret(), "alice.admin", "PACS Desk")) != svg


@time_machine.travel(NOW, tick=False)
def test_current_code_is_accepted_and_its_step_returned():
    secret = new_secret()
    step = verify_code(secret, code_at(secret, NOW), None)
    assert step == current_step() == int(NOW.timestamp()) // 30


@time_machine.travel(NOW, tick=False)
def test_one_step_of_clock_drift_either_way_is_accepted():
    secret = new_secret()
    now = current_step()
    assert verify_code(secret, code_at(secret, NOW - timedelta(seconds=30)), None) == now - 1
    assert verify_code(secret, code_at(secret, NOW + timedelta(seconds=30)), None) == now + 1


@time_machine.travel(NOW, tick=False)
def test_two_steps_away_is_refused():
    # A fixed secret whose codes two and three steps away differ from the three accepted ones.
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    accepted = {code_at(secret, NOW + timedelta(seconds=s)) for s in (-30, 0, 30)}
    for offset in (-60, 60, -90, 90):
        code = code_at(secret, NOW + timedelta(seconds=offset))
        assert code not in accepted
        assert verify_code(secret, code, None) is None, offset


@time_machine.travel(NOW, tick=False)
def test_a_code_is_accepted_only_once():
    secret = new_secret()
    code = code_at(secret, NOW)
    step = verify_code(secret, code, None)
    assert step is not None
    assert verify_code(secret, code, step) is None


def test_a_used_code_stays_refused_while_it_is_still_within_the_drift_window():
    secret = new_secret()
    code = code_at(secret, NOW)
    with time_machine.travel(NOW, tick=False):
        step = verify_code(secret, code, None)
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        assert verify_code(secret, code, step) is None  # would be valid as one step of drift
        assert verify_code(secret, code, None) == step  # proof: only the stored step refuses it


def test_an_older_code_is_refused_after_a_newer_one_was_used():
    secret = new_secret()
    with time_machine.travel(NOW, tick=False):
        newer = verify_code(secret, code_at(secret, NOW + timedelta(seconds=30)), None)
        assert newer == current_step() + 1
        assert verify_code(secret, code_at(secret, NOW), newer) is None


@time_machine.travel(NOW, tick=False)
def test_wrong_and_malformed_codes_are_refused():
    secret = new_secret()
    good = code_at(secret, NOW)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for code in (wrong, "", "12345", "1234567", "abcdef", good[:5] + "x", f" {good}0", None):
        assert verify_code(secret, code, None) is None, code


@time_machine.travel(NOW, tick=False)
def test_spaces_typed_in_the_middle_are_ignored():
    secret = new_secret()
    good = code_at(secret, NOW)
    assert verify_code(secret, f"{good[:3]} {good[3:]}", None) == current_step()


def test_a_given_moment_overrides_the_clock():
    secret = new_secret()
    moment = datetime(2031, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert verify_code(secret, code_at(secret, moment), None, at=moment) == int(moment.timestamp()) // 30


def test_recovery_codes_are_friendly_and_distinct():
    codes = new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2}", code)
        assert not set(code) & set("01lio")
    assert len(new_recovery_codes(3)) == 3


def test_recovery_code_matches_its_hash_whatever_the_case_and_dashes():
    codes = new_recovery_codes(4)
    hashes = [hash_recovery_code(code, CHEAP) for code in codes]
    assert all(stored.startswith("$argon2id$") and codes[0] not in stored for stored in hashes)
    assert check_recovery_code(codes[2], hashes, CHEAP) == 2
    assert check_recovery_code(codes[2].upper().replace("-", ""), hashes, CHEAP) == 2
    assert check_recovery_code(" " + codes[3].replace("-", " ") + " ", hashes, CHEAP) == 3


def test_unknown_or_used_recovery_code_is_refused():
    codes = new_recovery_codes(3)
    hashes = [hash_recovery_code(code, CHEAP) for code in codes]
    assert check_recovery_code("aaaa-bbbb-cc", hashes, CHEAP) is None
    assert check_recovery_code("", hashes, CHEAP) is None
    used = check_recovery_code(codes[1], hashes, CHEAP)
    assert used == 1
    del hashes[used]
    assert check_recovery_code(codes[1], hashes, CHEAP) is None


def test_a_damaged_stored_hash_is_skipped_not_an_error():
    code = new_recovery_codes(1)[0]
    assert check_recovery_code(code, ["not-a-hash", hash_recovery_code(code, CHEAP)], CHEAP) == 1


@pytest.mark.parametrize("hasher", [None, CHEAP])
def test_default_hasher_and_the_apps_hasher_both_verify(hasher):
    code = new_recovery_codes(1)[0]
    assert check_recovery_code(code, [hash_recovery_code(code, hasher)], hasher) == 0
