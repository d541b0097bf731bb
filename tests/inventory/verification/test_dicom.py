"""inventory.verification.dicom.echo against real peers: every outcome, and bad input that must not crash."""

from __future__ import annotations

import time

import pytest
from pynetdicom import evt

from inventory.verification.dicom import Outcome, echo
from tests.inventory.conftest import (
    PEER_AET,
    close_after_request,
    send_garbage,
    stay_silent,
)

TIMEOUT = 1.0


def test_echo_to_an_accepting_scp_is_ok_with_latency(verification_scp):
    port = verification_scp()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.OK
    assert result.ok
    assert 0 < result.latency_ms < TIMEOUT * 1000
    assert "succeeded" in result.detail


def test_echo_by_host_name_resolves_it(verification_scp):
    port = verification_scp()
    assert echo("localhost", port, PEER_AET, "PACSDESK", TIMEOUT).outcome is Outcome.OK


def test_wrong_called_ae_title_is_rejected_permanently_with_reason(verification_scp):
    port = verification_scp(require_called_aet=True)
    result = echo("127.0.0.1", port, "NOT-THIS-ONE", "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.REJECTED
    assert (result.result, result.source, result.reason) == (1, 1, 7)
    assert result.detail == ("Association rejected (permanent, service user): "
                             "called AE title not recognised")


def test_right_called_ae_title_passes_a_checking_scp(verification_scp):
    port = verification_scp(require_called_aet=True)
    assert echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT).outcome is Outcome.OK


def test_scp_over_its_association_limit_is_busy_with_the_transient_rejection(verification_scp):
    def hold(event):
        time.sleep(0.6)
        return 0x0000

    port = verification_scp(handlers=[(evt.EVT_C_ECHO, hold)])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(14) as pool:
        results = list(pool.map(lambda _: echo("127.0.0.1", port, PEER_AET, "PACSDESK", 2.0),
                                range(14)))
    rejected = [r for r in results if r.outcome is Outcome.BUSY]
    assert rejected, [r.outcome for r in results]
    assert (rejected[0].result, rejected[0].source, rejected[0].reason) == (2, 3, 2)
    assert "transient" in rejected[0].detail and "local limit exceeded" in rejected[0].detail


def test_scp_without_verification_gives_no_verification_context(verification_scp):
    port = verification_scp(verification=False)
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.NO_VERIFICATION_CONTEXT
    assert "Verification" in result.detail


def test_scp_slower_than_the_timeout_is_echo_failed_within_the_timeout(verification_scp):
    def slow(event):
        time.sleep(TIMEOUT + 1)
        return 0x0000

    port = verification_scp(handlers=[(evt.EVT_C_ECHO, slow)])
    started = time.monotonic()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.ECHO_FAILED
    assert "No C-ECHO response within" in result.detail
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_non_success_echo_status_is_echo_failed_with_the_status(verification_scp):
    port = verification_scp(handlers=[(evt.EVT_C_ECHO, lambda event: 0x0122)])
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.ECHO_FAILED
    assert result.detail == "C-ECHO returned status 0x0122"


def test_peer_aborting_during_the_echo_is_aborted(verification_scp):
    def abort(event):
        event.assoc.abort()
        return 0x0000

    port = verification_scp(handlers=[(evt.EVT_C_ECHO, abort)])
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.ABORTED
    assert "during the C-ECHO" in result.detail


def test_tls_node_with_an_untrusted_self_signed_certificate_is_tls_error(verification_scp,
                                                                        self_signed_tls):
    port = verification_scp(ssl_context=self_signed_tls.server_context())
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT, tls=True)
    assert result.outcome is Outcome.TLS_ERROR
    assert "not trusted" in result.detail and "self-signed" in result.detail


def test_tls_node_with_a_trusted_certificate_is_ok(verification_scp, self_signed_tls):
    port = verification_scp(ssl_context=self_signed_tls.server_context())
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT, tls=True,
                  ssl_context=self_signed_tls.trusting_client_context())
    assert result.outcome is Outcome.OK


def test_tls_to_a_plain_scp_is_tls_error(verification_scp):
    port = verification_scp()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT, tls=True)
    assert result.outcome is Outcome.TLS_ERROR


def test_closed_port_is_refused_at_once_not_after_the_timeout(closed_port):
    result = echo("127.0.0.1", closed_port, PEER_AET, "PACSDESK", 60.0)
    assert result.outcome is Outcome.REFUSED
    assert "refused" in result.detail
    assert result.latency_ms < 60_000, "the refusal ended the check, not the 60 s timeout"


def test_host_that_never_completes_the_tcp_handshake_is_connect_timeout(full_backlog_port):
    started = time.monotonic()
    result = echo("127.0.0.1", full_backlog_port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.CONNECT_TIMEOUT
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_socket_that_accepts_and_stays_silent_is_no_response_within_the_timeout(raw_peer):
    port = raw_peer(stay_silent)
    started = time.monotonic()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.NO_RESPONSE
    assert "no association answer" in result.detail
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_peer_sending_garbage_is_aborted_not_a_crash(raw_peer):
    port = raw_peer(send_garbage)
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.ABORTED
    assert "not DICOM" in result.detail


def test_peer_closing_mid_association_is_aborted(raw_peer):
    port = raw_peer(close_after_request)
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.ABORTED
    assert "closed the connection" in result.detail


def test_unresolvable_host_name_is_dns_error(unresolvable):
    lookups = unresolvable("no-such-modality.invalid")
    result = echo("no-such-modality.invalid", 104, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.DNS_ERROR
    assert "no-such-modality.invalid" in result.detail
    assert "Name or service not known" in result.detail
    assert lookups == ["no-such-modality.invalid"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"called_ae": "A" * 40}, "called AE title"),
        ({"called_ae": "A" * 17}, "at most 16 characters"),
        ({"called_ae": "BAD\\AE"}, "backslash"),
        ({"called_ae": "    "}, "all spaces"),
        ({"called_ae": ""}, "called AE title"),
        ({"called_ae": "TAB\tAE"}, "control characters"),
        ({"calling_ae": "X" * 17}, "calling AE title"),
        ({"port": 0}, "port must be"),
        ({"port": 70000}, "port must be"),
        ({"port": "104"}, "port must be"),
        ({"host": "bad host name"}, "host must be"),
        ({"host": ""}, "host must be"),
        ({"timeout": 0}, "timeout must be"),
    ],
)
def test_bad_target_raises_a_clear_value_error(kwargs, message):
    args = {"host": "127.0.0.1", "port": 104, "called_ae": PEER_AET, "calling_ae": "PACSDESK",
            "timeout": TIMEOUT} | kwargs
    with pytest.raises(ValueError, match=message):
        echo(**args)


def test_ae_titles_with_insignificant_spaces_are_trimmed(verification_scp):
    port = verification_scp(require_called_aet=True)
    assert echo("127.0.0.1", port, f" {PEER_AET}  ", " PACSDESK ", TIMEOUT).ok
