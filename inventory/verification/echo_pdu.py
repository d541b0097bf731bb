"""The C-ECHO's wire format: outcomes, PDUs, the limits on what a peer may send, TLS reasons.

No Flask, no database, no sockets. PDUs are built and decoded with pynetdicom's PDU classes;
a PDU is read only when its announced length is within the limits below (``length_problem``).
"""

from __future__ import annotations

import functools
import ssl
import struct
import time
from dataclasses import dataclass
from enum import StrEnum

from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_messages import C_ECHO_RQ
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


class Outcome(StrEnum):
    """How a verification ended."""

    OK = "ok"
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    DNS_ERROR = "dns_error"
    NOT_ALLOWED = "not_allowed"
    NO_RESPONSE = "no_response"
    TOO_SLOW = "too_slow"
    REJECTED = "rejected"
    BUSY = "busy"
    ABORTED = "aborted"
    INVALID_PDU = "invalid_pdu"
    NO_VERIFICATION_CONTEXT = "no_verification_context"
    ECHO_FAILED = "echo_failed"
    TLS_ERROR = "tls_error"


REJECT_RESULTS = {1: "permanent", 2: "transient"}
REJECT_SOURCES = {1: "service user", 2: "service provider, ACSE", 3: "service provider, presentation"}
REJECT_REASONS = {  # the (source, reason) pairs PS3.8 table 9-21 defines
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
ABORT_REASONS = {0: "reason not specified", 1: "unrecognised PDU", 2: "unexpected PDU",
                 4: "unrecognised PDU parameter", 5: "unexpected PDU parameter",
                 6: "invalid PDU parameter value"}
PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
             5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}

# Limits on what a peer may make a check read (each check holds at most one PDU).
MAX_PDU_RECEIVE = 16384          # announced to the peer: the largest P-DATA-TF it may send
ASSOCIATE_PDU_MAX = 64 * 1024    # an A-ASSOCIATE-AC for one context takes a few hundred bytes
FIXED_PDU_LENGTH = 4             # A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT bodies (PS3.8 9.3)
RESPONSE_MAX = 64 * 1024         # the C-ECHO response's PDV bytes (its command set takes ~100)
RECV_CHUNK = 65536
HELLO_KEPT = 65536               # of the server's TLS hello, to see whether it asks for a certificate
CONTEXT_ID = 1
A_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
A_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
TLS_RECORD_TYPES = range(0x14, 0x18)  # change cipher spec, alert, handshake, application data
C_ECHO_RSP_FIELD = 0x8030
AC_ITEMS_OFFSET = 74             # PDU header and the A-ASSOCIATE-AC's fixed fields
AC_ITEM_TYPES = (0x10, 0x21, 0x50)  # application context, presentation context, user information


@dataclass(frozen=True)
class EchoResult:
    """What one C-ECHO check found; ``result``/``source``/``reason`` only for rejections."""

    outcome: Outcome
    detail: str
    latency_ms: float
    result: int | None = None
    source: int | None = None
    reason: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the node answered the C-ECHO with success."""
        return self.outcome is Outcome.OK



def asks_for_certificate(hello: bytes) -> bool:
    """Whether the server's plaintext handshake (TLS 1.2 and older) includes a CertificateRequest."""
    messages = bytearray()
    offset = 0
    while offset + 5 <= len(hello) and hello[offset] == 0x16:  # handshake records only
        length = struct.unpack_from(">H", hello, offset + 3)[0]
        messages += hello[offset + 5:offset + 5 + length]
        offset += 5 + length
    offset = 0
    while offset + 4 <= len(messages):
        if messages[offset] == 13:  # certificate_request
            return True
        offset += 4 + int.from_bytes(messages[offset + 1:offset + 4], "big")
    return False


def tls_reason(exc: ssl.SSLError, client_cert: bool | None, received: int,
                asked_for_certificate: bool = False) -> str:
    """Say in words why a TLS handshake (or the first read after it) failed.

    ``client_cert``: whether a client certificate was presented (None: unknown, the caller's
    own ssl_context); ``asked_for_certificate``: the server's TLS 1.2 hello asked for one.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the node's certificate is not trusted ({exc.verify_message})"
    reason = (exc.reason or "").upper()
    if reason in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                  "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}:
        return "the peer does not speak TLS"
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the peer requires a client certificate"
    certificate_alerts = {"SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                          "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                          "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV1_ALERT_ACCESS_DENIED"}
    text = (exc.reason or str(exc)).replace("_", " ").lower()
    if reason in certificate_alerts:
        if client_cert:
            return f"the peer did not accept the client certificate ({text})"
        if client_cert is None:
            return f"the peer refused the client certificate or requires one ({text})"
        return "the peer requires a client certificate"
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and asked_for_certificate and client_cert is False:
        return "the peer requires a client certificate"
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
        if not received:
            return "the peer does not speak TLS (it closed the connection at the TLS hello)"
        return "the peer closed the connection during the TLS handshake"
    return text


# ---------------------------------------------------------------- PDUs


@functools.lru_cache(maxsize=4096)
def associate_rq(calling_ae: str, called_ae: str) -> bytes:
    """The A-ASSOCIATE-RQ proposing Verification, as bytes."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID("1.2.840.10008.3.1.1.1")
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    context = build_context(Verification)
    context.context_id = CONTEXT_ID
    primitive.presentation_context_definition_list = [context]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = MAX_PDU_RECEIVE
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    primitive.user_information = [max_length, class_uid, version]
    return bytes(A_ASSOCIATE_RQ(primitive).encode())


@functools.cache
def c_echo_rq() -> bytes:
    """The P-DATA-TF carrying a C-ECHO-RQ (message 1) on the Verification context."""
    primitive = C_ECHO()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    return b"".join(bytes(P_DATA_TF(p).encode()) for p in message.encode_msg(CONTEXT_ID, MAX_PDU_RECEIVE))


def length_problem(pdu_type: int, length: int) -> str | None:
    """Why a PDU announcing ``length`` bytes must not be read, or None."""
    name = PDU_NAMES[pdu_type]
    if pdu_type in (3, 5, 6, 7) and length != FIXED_PDU_LENGTH:
        return (f"The peer sent an {name} PDU announcing {length:,} bytes "
                f"(the standard fixes it at {FIXED_PDU_LENGTH})")
    limit = MAX_PDU_RECEIVE if pdu_type == 4 else ASSOCIATE_PDU_MAX
    if length > limit:
        return (f"The peer sent an {name} PDU announcing {length:,} bytes (at most {limit:,} "
                f"accepted); refused without reading it")
    return None


def ac_problem(pdu: bytes) -> str | None:
    """What makes an A-ASSOCIATE-AC malformed: fixed fields cut short, items not filling it exactly."""
    if len(pdu) < AC_ITEMS_OFFSET:
        return f"{len(pdu) - 6} bytes, shorter than its fixed fields"
    offset = AC_ITEMS_OFFSET
    while offset < len(pdu):
        if offset + 4 > len(pdu):
            return "an item is cut short"
        if pdu[offset] not in AC_ITEM_TYPES:
            return f"unknown item type 0x{pdu[offset]:02X}"
        offset += 4 + struct.unpack_from(">H", pdu, offset + 2)[0]
    if offset != len(pdu):
        return "an item runs past the end of the PDU"
    return None


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter value)."""
    return round((time.perf_counter() - start) * 1000, 1)

