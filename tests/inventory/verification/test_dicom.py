"""inventory.verification.dicom.echo against real peers: every outcome, and bad input that must not crash."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from itertools import islice

import pytest
from pynetdicom import evt

from inventory.verification.dicom import Outcome, Target, echo, echo_many
from tests.helpers import ANSWER_TIMEOUT, OVERRUN
from tests.inventory.conftest import (
    PEER_AET,
    close_after_request,
    send_garbage,
    stay_silent,
)

TIMEOUT = ANSWER_TIMEOUT  # checks that are answered
SHORT = 1.0  # checks that must time out


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
    release = threading.Event()

    def hold(event):
        release.wait(20)  # accepted associations stay open until four others were turned away
        return 0x0000

    port = verification_scp(handlers=[(evt.EVT_C_ECHO, hold)])
    with ThreadPoolExecutor(14) as pool:
        futures = [pool.submit(echo, "127.0.0.1", port, PEER_AET, "PACSDESK", 30.0) for _ in range(14)]
        try:  # an accepted check cannot end before release, so the first four to end were turned away
            turned_away = [future.result() for future in islice(as_completed(futures, timeout=15), 4)]
        finally:
            release.set()
        results = [future.result() for future in futures]
    for result in turned_away:
        assert result.outcome is Outcome.BUSY, result
        assert (result.result, result.source, result.reason) == (2, 3, 2)
        assert result.detail == ("Association rejected (transient, service provider, presentation): "
                                 "local limit exceeded")
    outcomes = Counter(r.outcome for r in results)  # a rejected association's thread still counts a moment
    assert set(outcomes) == {Outcome.OK, Outcome.BUSY} and outcomes[Outcome.OK] <= 10, outcomes


def test_scp_without_verification_gives_no_verification_context(verification_scp):
    port = verification_scp(verification=False)
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.NO_VERIFICATION_CONTEXT
    assert "Verification" in result.detail


def test_scp_slower_than_the_timeout_is_echo_failed_within_the_timeout(verification_scp):
    answer = threading.Event()

    def slow(event):
        answer.wait(30)
        return 0x0000

    port = verification_scp(handlers=[(evt.EVT_C_ECHO, slow)])
    started = time.monotonic()
    try:
        result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", SHORT)
        seconds = time.monotonic() - started
    finally:
        answer.set()
    assert result.outcome is Outcome.ECHO_FAILED
    assert "No C-ECHO response within" in result.detail
    assert seconds < SHORT + OVERRUN


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
    assert "the peer does not speak TLS" in result.detail


def test_closed_port_is_refused_at_once_not_after_the_timeout(closed_port):
    result = echo("127.0.0.1", closed_port, PEER_AET, "PACSDESK", 60.0)
    assert result.outcome is Outcome.REFUSED
    assert "refused" in result.detail
    assert result.latency_ms < 60_000, "the refusal ended the check, not the 60 s timeout"


def test_host_that_never_completes_the_tcp_handshake_is_connect_timeout(full_backlog_port):
    started = time.monotonic()
    result = echo("127.0.0.1", full_backlog_port, PEER_AET, "PACSDESK", SHORT)
    assert result.outcome is Outcome.CONNECT_TIMEOUT
    assert time.monotonic() - started < SHORT + OVERRUN


def test_socket_that_accepts_and_stays_silent_is_no_response_within_the_timeout(raw_peer):
    port = raw_peer(stay_silent)
    started = time.monotonic()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", SHORT)
    assert result.outcome is Outcome.NO_RESPONSE
    assert "no association answer" in result.detail
    assert time.monotonic() - started < SHORT + OVERRUN


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


# ---------------------------------------------------------------- echo_many


TCP_ESTABLISHED = 1


def _still_open(conn: socket.socket) -> bool:
    """Whether the client still holds this connection (the kernel's TCP state, not unread data)."""
    try:
        return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED
    except (OSError, ValueError):
        return False


class ConnectionCounter:
    """A silent peer behaviour that counts how many connections the client holds at once.

    Counted when each connection arrives, from the TCP state of the earlier ones: a client that
    closed a connection before opening the next has left it in CLOSE_WAIT, whenever this peer's
    threads get round to noticing.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: set[socket.socket] = set()
        self.most = 0
        self.closed = threading.Semaphore(0)

    def __call__(self, conn) -> None:
        with self.lock:
            self.held = {c for c in self.held if _still_open(c)} | {conn}
            self.most = max(self.most, len(self.held))
        try:
            stay_silent(conn)
        finally:
            self.closed.release()


def test_echo_many_yields_every_target_with_its_result(verification_scp, closed_port):
    port = verification_scp()
    targets = [Target("127.0.0.1", port, f"NODE{i}") for i in range(5)]
    targets.append(Target("127.0.0.1", closed_port, PEER_AET))
    results = dict(echo_many(targets, "PACSDESK", TIMEOUT, concurrency=4))
    assert set(results) == set(targets)
    assert [results[t].outcome for t in targets] == [Outcome.OK] * 5 + [Outcome.REFUSED]


def test_echo_many_yields_quick_answers_before_slow_ones(verification_scp, raw_peer):
    silent = Target("127.0.0.1", raw_peer(stay_silent), PEER_AET)
    quick = Target("127.0.0.1", verification_scp(), PEER_AET)
    order = [target for target, _ in echo_many([silent, quick], "PACSDESK", 5.0, concurrency=2)]
    assert order == [quick, silent]


def test_echo_many_never_holds_more_connections_than_its_concurrency(raw_peer):
    counter = ConnectionCounter()
    port = raw_peer(counter)
    targets = [Target("127.0.0.1", port, f"NODE{i}") for i in range(6)]
    results = list(echo_many(targets, "PACSDESK", 0.5, concurrency=2))
    assert [r.outcome for _, r in results] == [Outcome.NO_RESPONSE] * 6
    assert counter.most == 2


def test_slow_consumer_does_not_turn_answers_into_timeouts(verification_scp):
    port = verification_scp()
    targets = [Target("127.0.0.1", port, f"NODE{i}") for i in range(6)]
    outcomes = []
    for _, result in echo_many(targets, "PACSDESK", 3.0, concurrency=6):
        outcomes.append(result.outcome)
        time.sleep(0.7)  # writing results takes longer than the checks' timeout altogether
    assert outcomes == [Outcome.OK] * 6


def test_target_that_cannot_be_checked_is_reported_while_the_others_run(verification_scp):
    port = verification_scp()
    bad, good = Target("127.0.0.1", 0, PEER_AET), Target("127.0.0.1", port, PEER_AET)
    results = dict(echo_many([bad, good], "PACSDESK", TIMEOUT, concurrency=2))
    assert results[bad].outcome is Outcome.ECHO_FAILED
    assert results[bad].detail.startswith("Cannot check this node: port must be")
    assert results[good].outcome is Outcome.OK


def test_stopping_a_sweep_early_closes_its_connections(raw_peer, verification_scp):
    counter = ConnectionCounter()
    silent_port = raw_peer(counter)
    targets = [Target("127.0.0.1", verification_scp(), PEER_AET)]
    targets += [Target("127.0.0.1", silent_port, f"NODE{i}") for i in range(3)]
    sweep = echo_many(targets, "PACSDESK", 60.0, concurrency=4)
    first, result = next(sweep)
    assert (first, result.outcome) == (targets[0], Outcome.OK)
    sweep.close()
    for _ in range(3):
        assert counter.closed.acquire(timeout=10), "a silent node's connection was left open"


def test_echo_many_takes_the_services_targets(verification_scp):
    from inventory.verification.services import EchoTarget

    target = EchoTarget(1, "CT-01", "127.0.0.1", verification_scp(), PEER_AET, False)
    [(yielded, result)] = list(echo_many([target], "PACSDESK", TIMEOUT, concurrency=32))
    assert yielded is target and result.ok


def test_echo_many_with_no_target_yields_nothing():
    assert list(echo_many([], "PACSDESK", TIMEOUT, concurrency=4)) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"concurrency": 0}, "concurrency must be"),
    ({"concurrency": 2.5}, "concurrency must be"),
    ({"timeout": 0}, "timeout must be"),
    ({"calling_ae": "X" * 17}, "calling AE title"),
])
def test_bad_sweep_arguments_raise_a_clear_value_error(kwargs, message):
    args = {"calling_ae": "PACSDESK", "timeout": TIMEOUT, "concurrency": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        list(echo_many([Target("127.0.0.1", 104, PEER_AET)], **args))
