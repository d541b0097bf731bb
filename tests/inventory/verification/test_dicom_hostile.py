"""C-ECHO against peers that misbehave on purpose: every check ends by its deadline, reads only
sane PDUs, says what the peer did and logs no traceback; TLS both ways, with client certificates."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from pynetdicom.dimse_messages import C_ECHO_RSP
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.pdu import A_ASSOCIATE_AC, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from inventory.verification.dicom import Outcome, Target, echo, echo_many
from tests.helpers import ANSWER_TIMEOUT, OVERRUN, free_port, require_binary
from tests.inventory.conftest import PEER_AET, stay_silent
from tests.inventory.verification.test_dicom_integration import stop, wait_for_port

TIMEOUT = 3.0  # checks facing a peer that never answers in time; the others get ANSWER_TIMEOUT
# Every check promises to end by its timeout plus one second; the tests allow a loaded machine more.
DEADLINE = TIMEOUT + 1.0 + OVERRUN

Behaviour = Callable[[socket.socket], None]


@pytest.fixture(autouse=True)
def no_traceback_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A peer's misbehaviour is a classified result, never a warning or a traceback in the log."""
    caplog.set_level(logging.WARNING)
    yield
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]


def timed_echo(port: int, timeout: float = ANSWER_TIMEOUT, **kwargs) -> tuple:
    """Echo 127.0.0.1:``port``; (result, seconds it took)."""
    started = time.monotonic()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", timeout, **kwargs)
    return result, time.monotonic() - started


# ---------------------------------------------------------------- what the peers send


def read_pdu(conn: socket.socket) -> bytes:
    """Read one whole PDU from the client."""
    data = b""
    while len(data) < 6 or len(data) < 6 + int.from_bytes(data[2:6], "big"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def association_ac() -> bytes:
    """An A-ASSOCIATE-AC accepting Verification on context 1 (pynetdicom's encoder)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.called_ae_title = PEER_AET
    primitive.calling_ae_title = "PACSDESK"
    primitive.result = 0
    context = build_context(Verification, "1.2.840.10008.1.2")
    context.context_id = 1
    context.result = 0
    primitive.presentation_context_definition_results_list = [context]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.0"
    primitive.user_information = [max_length, class_uid]
    return bytes(A_ASSOCIATE_AC(primitive).encode())


def c_echo_rsp(status: int = 0x0000) -> bytes:
    """The P-DATA-TF of a C-ECHO-RSP to message 1."""
    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = 1
    primitive.AffectedSOPClassUID = Verification
    primitive.Status = status
    message = C_ECHO_RSP()
    message.primitive_to_message(primitive)
    return b"".join(bytes(P_DATA_TF(p).encode()) for p in message.encode_msg(1, 16382))


def reject(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ with the given fields, whatever they are."""
    return bytes([0x03, 0, 0, 0, 0, 4, 0, result, source, reason])


def answering(*replies: bytes | Behaviour) -> Behaviour:
    """Read each client PDU and answer it with the next reply (bytes, or a behaviour), then stay."""

    def behaviour(conn: socket.socket) -> None:
        for reply in replies:
            read_pdu(conn)
            if callable(reply):
                reply(conn)
            else:
                conn.sendall(reply)
        stay_silent(conn)

    return behaviour


def one_byte_a_second(data: bytes) -> Behaviour:
    """Send ``data`` one byte a second."""

    def behaviour(conn: socket.socket) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(1.0)

    return behaviour


def flood(header: bytes) -> Behaviour:
    """Send ``header`` then zeros as fast as the client takes them, until it hangs up."""

    def behaviour(conn: socket.socket) -> None:
        conn.sendall(header)
        zeros = bytes(65536)
        while True:
            conn.sendall(zeros)

    return behaviour


def endless_fragments(conn: socket.socket) -> None:
    """Send command fragments of a C-ECHO response, never the last one."""
    fragment = bytes([0x04, 0]) + (16000 + 6).to_bytes(4, "big") \
        + (16000 + 2).to_bytes(4, "big") + bytes([1, 0x01]) + bytes(16000)
    while True:
        conn.sendall(fragment)


def tls_server(context: ssl.SSLContext, then: Behaviour = stay_silent) -> Behaviour:
    """Speak TLS with ``context`` (a failed handshake just ends), then behave as ``then``."""

    def behaviour(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            then(tls)

    return behaviour


# ---------------------------------------------------------------- oversized and endless PDUs


@pytest.mark.parametrize(("behaviour", "announced"), [
    (answering(flood(b"\x02\x00\xff\xff\xff\xff")), "A-ASSOCIATE-AC PDU announcing 4,294,967,295 bytes"),
    (answering(association_ac(), flood(b"\x04\x00\x80\x00\x00\x00")),
     "P-DATA-TF PDU announcing 2,147,483,648 bytes"),
    (answering(flood(b"\x03\x00\x00\x10\x00\x00")), "A-ASSOCIATE-RJ PDU announcing 1,048,576 bytes"),
], ids=["association-answer-4gb", "echo-response-2gb", "reject-1mb"])
def test_pdu_announcing_a_huge_length_is_invalid_pdu_refused_unread(raw_peer, behaviour, announced):
    port = raw_peer(behaviour)
    tracemalloc.start()
    try:
        result, seconds = timed_echo(port)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome is Outcome.INVALID_PDU, result
    assert announced in result.detail
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"
    assert peak < 1024 * 1024, f"the check allocated {peak:,} bytes for a PDU it should not read"


def test_endless_stream_of_response_fragments_is_invalid_pdu_not_a_memory_sink(raw_peer):
    port = raw_peer(answering(association_ac(), endless_fragments))
    tracemalloc.start()
    try:
        result, seconds = timed_echo(port)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome is Outcome.INVALID_PDU, result
    assert "C-ECHO response passed 65,536 bytes" in result.detail
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"
    assert peak < 1024 * 1024


def header_then_one_byte_a_second(data: bytes) -> Behaviour:
    """Send ``data``'s PDU header at once, then its body one byte a second."""

    def behaviour(conn: socket.socket) -> None:
        conn.sendall(data[:6])
        one_byte_a_second(data[6:])(conn)

    return behaviour


@pytest.mark.parametrize(("behaviour", "received"), [
    (one_byte_a_second(association_ac()), "bytes received"),
    (header_then_one_byte_a_second(association_ac()), f"of {len(association_ac())} bytes received"),
], ids=["from-the-first-byte", "header-at-once"])
def test_association_answer_at_one_byte_a_second_is_too_slow_by_the_deadline(raw_peer, behaviour,
                                                                             received):
    port = raw_peer(answering(behaviour))
    result, seconds = timed_echo(port, TIMEOUT)
    assert result.outcome is Outcome.TOO_SLOW, result
    assert "still sending its association answer" in result.detail and received in result.detail
    assert seconds < DEADLINE


def test_c_echo_response_at_one_byte_a_second_is_too_slow_by_the_deadline(raw_peer):
    port = raw_peer(answering(association_ac(), one_byte_a_second(c_echo_rsp())))
    result, seconds = timed_echo(port, TIMEOUT)
    assert result.outcome is Outcome.TOO_SLOW, result
    assert "still sending its C-ECHO response" in result.detail
    assert seconds < DEADLINE


def test_tls_hello_at_one_byte_a_second_is_too_slow_by_the_deadline(raw_peer, mini_pki):
    port = raw_peer(one_byte_a_second(b"\x16\x03\x03\x00\x40" + bytes(0x40)))
    result, seconds = timed_echo(port, TIMEOUT, tls=True, ca_file=str(mini_pki.ca_cert))
    assert result.outcome is Outcome.TOO_SLOW, result
    assert "TLS handshake" in result.detail
    assert seconds < DEADLINE


def test_silent_tls_peer_is_tls_error_by_the_deadline(raw_peer, mini_pki):
    port = raw_peer(stay_silent)
    result, seconds = timed_echo(port, TIMEOUT, tls=True, ca_file=str(mini_pki.ca_cert))
    assert result.outcome is Outcome.TLS_ERROR
    assert "no TLS answer within" in result.detail
    assert seconds < DEADLINE


def test_well_behaved_raw_peer_is_ok(raw_peer):
    """The hand-built PDUs above are valid DICOM: a peer sending them in time passes."""
    port = raw_peer(answering(association_ac(), c_echo_rsp(), b"\x06\x00\x00\x00\x00\x04" + bytes(4)))
    result, _ = timed_echo(port)
    assert result.outcome is Outcome.OK, result


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(("fields", "raw"), [
    ((9, 5, 200), "result 9, source 5, reason 200"),
    ((1, 1, 5), "result 1, source 1, reason 5"),
    ((2, 3, 9), "result 2, source 3, reason 9"),
    ((0, 1, 1), "result 0, source 1, reason 1"),
])
def test_reject_with_out_of_range_fields_is_invalid_pdu_with_the_raw_values(raw_peer, fields, raw):
    port = raw_peer(answering(reject(*fields)))
    result, seconds = timed_echo(port)
    assert result.outcome is Outcome.INVALID_PDU, result
    assert f"A-ASSOCIATE-RJ with out-of-range fields: {raw}" in result.detail
    assert seconds < ANSWER_TIMEOUT, "answered at once: the verdict must not wait for the timeout"


@pytest.mark.parametrize(("fields", "words"), [
    ((2, 3, 2), "(transient, service provider, presentation): local limit exceeded"),
    ((2, 3, 1), "(transient, service provider, presentation): temporary congestion"),
    ((2, 1, 1), "(transient, service user): no reason given"),
])
def test_transient_rejection_is_busy_naming_source_and_reason(raw_peer, fields, words):
    port = raw_peer(answering(reject(*fields)))
    result, _ = timed_echo(port)
    assert result.outcome is Outcome.BUSY, result
    assert (result.result, result.source, result.reason) == fields
    assert result.detail == f"Association rejected {words}"


def test_permanent_rejection_stays_rejected(raw_peer):
    port = raw_peer(answering(reject(1, 1, 3)))
    result, _ = timed_echo(port)
    assert result.outcome is Outcome.REJECTED
    assert result.detail == "Association rejected (permanent, service user): calling AE title not recognised"


def test_peer_sending_an_unexpected_pdu_instead_of_an_answer_is_invalid_pdu(raw_peer):
    port = raw_peer(answering(c_echo_rsp()))
    result, _ = timed_echo(port)
    assert result.outcome is Outcome.INVALID_PDU
    assert "answered the association request with an P-DATA-TF PDU" in result.detail


def pdu(pdu_type: int, body: bytes) -> bytes:
    """A PDU of ``pdu_type`` around ``body``, its length field telling the truth."""
    return bytes([pdu_type, 0]) + len(body).to_bytes(4, "big") + body


AC_BODY = association_ac()[6:]


@pytest.mark.parametrize(("answer", "problem"), [
    (pdu(2, AC_BODY[:16]), "16 bytes, shorter than its fixed fields"),
    (pdu(2, AC_BODY[:70]), "an item is cut short"),
    (pdu(2, AC_BODY[:80]), "an item runs past the end of the PDU"),
    (pdu(2, AC_BODY[:68] + b"\x99\x00\x00\x00"), "unknown item type 0x99"),
], ids=["too-short", "item-cut-short", "item-overruns", "unknown-item"])
def test_malformed_association_answer_is_invalid_pdu(raw_peer, answer, problem):
    port = raw_peer(answering(answer))
    result, _ = timed_echo(port)
    assert result.outcome is Outcome.INVALID_PDU, result
    assert result.detail == f"The peer's A-ASSOCIATE-AC could not be decoded ({problem})"


# ---------------------------------------------------------------- TLS both ways


def test_tls_node_facing_a_plain_dicom_peer_says_it_does_not_speak_tls(verification_scp, mini_pki):
    port = verification_scp()
    result, seconds = timed_echo(port, tls=True, ca_file=str(mini_pki.ca_cert))
    assert result.outcome is Outcome.TLS_ERROR
    assert "the peer does not speak TLS" in result.detail
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"


def test_tls_node_facing_a_peer_that_hangs_up_on_the_hello_says_it_does_not_speak_tls(raw_peer):
    port = raw_peer(lambda conn: (conn.recv(65536), conn.close()))
    result, _ = timed_echo(port, tls=True)
    assert result.outcome is Outcome.TLS_ERROR
    assert "the peer does not speak TLS" in result.detail


def test_plain_node_facing_a_tls_peer_is_aborted_with_a_tls_hint(verification_scp, mini_pki):
    port = verification_scp(ssl_context=mini_pki.server_context())
    result, seconds = timed_echo(port)
    assert result.outcome is Outcome.ABORTED
    assert "the peer may require TLS" in result.detail
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"


def test_plain_node_answered_by_a_tls_alert_is_aborted_with_a_tls_hint(raw_peer):
    port = raw_peer(answering(b"\x15\x03\x03\x00\x02\x02\x46"))
    result, _ = timed_echo(port)
    assert result.outcome is Outcome.ABORTED
    assert "TLS record" in result.detail and "the peer may require TLS" in result.detail


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_peer_requiring_a_client_certificate_without_one_is_tls_error(verification_scp, mini_pki,
                                                                     version):
    context = mini_pki.server_context(require_client_cert=True, maximum_version=version)
    port = verification_scp(ssl_context=context)
    result, seconds = timed_echo(port, tls=True, ca_file=str(mini_pki.ca_cert))
    assert result.outcome is Outcome.TLS_ERROR, result
    assert result.detail == "TLS handshake failed: the peer requires a client certificate"
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_peer_requiring_a_client_certificate_accepts_ours(verification_scp, mini_pki, version):
    context = mini_pki.server_context(require_client_cert=True, maximum_version=version)
    port = verification_scp(ssl_context=context)
    result, _ = timed_echo(port, tls=True, ca_file=str(mini_pki.ca_cert),
                           client_cert=str(mini_pki.client_cert), client_key=str(mini_pki.client_key))
    assert result.outcome is Outcome.OK, result


def test_peer_refuses_a_client_certificate_from_a_ca_it_does_not_trust(verification_scp, mini_pki):
    port = verification_scp(ssl_context=mini_pki.server_context(require_client_cert=True))
    result, _ = timed_echo(port, tls=True, ca_file=str(mini_pki.ca_cert),
                           client_cert=str(mini_pki.stranger_cert),
                           client_key=str(mini_pki.stranger_key))
    assert result.outcome is Outcome.TLS_ERROR
    assert "did not accept the client certificate" in result.detail and "unknown ca" in result.detail


def test_peer_not_asking_for_a_certificate_is_ok_with_one_configured(verification_scp, mini_pki):
    port = verification_scp(ssl_context=mini_pki.server_context())
    result, _ = timed_echo(port, tls=True, ca_file=str(mini_pki.ca_cert),
                           client_cert=str(mini_pki.client_cert), client_key=str(mini_pki.client_key))
    assert result.outcome is Outcome.OK


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"client_cert": "/nonexistent/client.crt"}, "client_cert '/nonexistent/client.crt' cannot be read"),
    ({"client_key": "key.pem"}, "client_key needs the client_cert"),
    ({"ca_file": "/nonexistent/ca.crt"}, "ca_file '/nonexistent/ca.crt' cannot be read"),
])
def test_unusable_tls_files_are_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        echo("127.0.0.1", 104, PEER_AET, "PACSDESK", TIMEOUT, tls=True, **kwargs)


def test_certificate_file_that_is_not_a_certificate_is_a_clear_value_error(tmp_path):
    junk = tmp_path / "client.crt"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match="are not a certificate and its private key"):
        echo("127.0.0.1", 104, PEER_AET, "PACSDESK", TIMEOUT, tls=True, client_cert=str(junk))


def test_encrypted_client_key_is_refused_not_prompted_for(tmp_path, mini_pki):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(mini_pki.client_key.read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ValueError, match="encrypted"):
        echo("127.0.0.1", 104, PEER_AET, "PACSDESK", TIMEOUT, tls=True,
             client_cert=str(mini_pki.client_cert), client_key=str(locked))


# ---------------------------------------------------------------- dcmtk storescp over TLS


def start_storescp(folder, *args: str) -> tuple[int, subprocess.Popen]:
    """Start dcmtk's storescp with extra ``args`` on a free port."""
    binary = require_binary("storescp")
    port = free_port()
    process = subprocess.Popen([binary, "-aet", "STORESCP", *args, str(port)], cwd=folder,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, process)
    return port, process


@pytest.fixture(scope="module")
def tls_storescp(tmp_path_factory, mini_pki) -> Iterator[int]:
    """dcmtk storescp over TLS, requiring a client certificate from the test CA (its default)."""
    port, process = start_storescp(tmp_path_factory.mktemp("storescp-tls"), "+tls",
                                   str(mini_pki.server_key), str(mini_pki.server_cert),
                                   "+cf", str(mini_pki.ca_cert))
    yield port
    stop(process)


@pytest.fixture(scope="module")
def plain_storescp(tmp_path_factory) -> Iterator[int]:
    """dcmtk storescp without TLS."""
    port, process = start_storescp(tmp_path_factory.mktemp("storescp-plain"))
    yield port
    stop(process)


@pytest.mark.integration
def test_dcmtk_tls_storescp_answers_with_our_client_certificate(tls_storescp, mini_pki):
    result, _ = timed_echo(tls_storescp, tls=True, ca_file=str(mini_pki.ca_cert),
                           client_cert=str(mini_pki.client_cert), client_key=str(mini_pki.client_key))
    assert result.outcome is Outcome.OK, result


@pytest.mark.integration
def test_dcmtk_tls_storescp_requires_a_client_certificate(tls_storescp, mini_pki):
    result, seconds = timed_echo(tls_storescp, tls=True, ca_file=str(mini_pki.ca_cert))
    assert result.outcome is Outcome.TLS_ERROR, result
    assert result.detail == "TLS handshake failed: the peer requires a client certificate"
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"


@pytest.mark.integration
def test_dcmtk_tls_storescp_checked_without_tls_is_aborted_with_a_tls_hint(tls_storescp):
    result, seconds = timed_echo(tls_storescp)
    assert result.outcome is Outcome.ABORTED, result
    assert "the peer may require TLS" in result.detail
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"


@pytest.mark.integration
def test_tls_node_facing_plain_dcmtk_storescp_says_it_does_not_speak_tls(plain_storescp, mini_pki):
    result, seconds = timed_echo(plain_storescp, tls=True, ca_file=str(mini_pki.ca_cert))
    assert result.outcome is Outcome.TLS_ERROR, result
    assert "the peer does not speak TLS" in result.detail
    assert seconds < ANSWER_TIMEOUT, "the peer's answer decided, not the timeout"


# ---------------------------------------------------------------- sweeps with hostile nodes


def test_sweep_with_hostile_nodes_ends_by_the_slowest_deadline_not_their_sum(raw_peer,
                                                                           verification_scp):
    hostile = {
        "silent": (stay_silent, Outcome.NO_RESPONSE),
        "byte-a-second": (answering(one_byte_a_second(association_ac())), Outcome.TOO_SLOW),
        "huge-pdu": (answering(flood(b"\x02\x00\xff\xff\xff\xff")), Outcome.INVALID_PDU),
        "out-of-range-reject": (answering(reject(9, 5, 200)), Outcome.INVALID_PDU),
        "busy": (answering(reject(2, 3, 2)), Outcome.BUSY),
    }
    expected = {}
    for kind, (behaviour, outcome) in hostile.items():
        for _ in range(4):
            expected[Target("127.0.0.1", raw_peer(behaviour), PEER_AET)] = (kind, outcome)
    for i in range(12):  # one SCP each: a pynetdicom SCP is busy beyond 10 associations
        expected[Target("127.0.0.1", verification_scp(), f"NODE{i}")] = ("answering", Outcome.OK)
    expected[Target("127.0.0.1", free_port(), PEER_AET)] = ("closed", Outcome.REFUSED)

    started = time.monotonic()
    results = list(echo_many(list(expected), "PACSDESK", TIMEOUT, concurrency=len(expected)))
    seconds = time.monotonic() - started

    assert seconds < DEADLINE, f"{len(expected)} checks took {seconds:.1f} s"
    assert sorted(target.ae_title for target, _ in results) == sorted(t.ae_title for t in expected)
    wrong = [(expected[target][0], result) for target, result in results
             if result.outcome is not expected[target][1]]
    assert wrong == []
