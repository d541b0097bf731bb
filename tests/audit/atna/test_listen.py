"""audit.atna.listen and the receiver's start-up refusals: each bad value is named."""

from __future__ import annotations

import socket

import pytest

from audit.atna.receiver import AtnaReceiver, Listen, ReceiverSettings, TLSFiles, parse_listen


def test_parse_listen_reads_every_transport_and_ipv6():
    assert parse_listen(" udp://0.0.0.0:514, tcp://127.0.0.1:601,TLS://[::]:6514") == (
        Listen("udp", "0.0.0.0", 514), Listen("tcp", "127.0.0.1", 601), Listen("tls", "::", 6514))
    assert str(Listen("tls", "::", 6514)) == "tls://[::]:6514"


@pytest.mark.parametrize(("text", "message"), [
    ("udp://0.0.0.0:514,http://0.0.0.0:80", r"listener 2 \('http://0.0.0.0:80'\): must start with udp://"),
    ("udp://0.0.0.0", r"listener 1 .*must end with :PORT"),
    ("tcp://0.0.0.0:65536", r"listener 1 .*a port from 0 to 65535"),
    ("tcp://pacs.hospital.test:601", r"listener 1 .*must be an IP address"),
    ("tcp://:::601", r"listener 1 .*IPv6 address in brackets"),
    ("udp://0.0.0.0:514,", r"listener 2 \(''\): empty"),
    ("udp://0.0.0.0:514,udp://0.0.0.0:514", r"listener 2 .*listed twice"),
])
def test_parse_listen_names_the_bad_entry(text, message):
    with pytest.raises(ValueError, match=message):
        parse_listen(text)


@pytest.mark.parametrize(("field", "value"), [
    ("max_message_bytes", 0), ("max_connections", -1), ("idle_timeout", 0.0), ("batch_ms", 0),
    ("queue_messages", True),
])
def test_settings_name_a_value_that_is_not_positive(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be a positive number"):
        ReceiverSettings(**{field: value})


def test_per_peer_limit_cannot_exceed_the_total():
    with pytest.raises(ValueError, match="max_connections_per_peer"):
        ReceiverSettings(max_connections=10, max_connections_per_peer=11)


def test_a_tls_listener_without_certificate_is_refused():
    with pytest.raises(ValueError, match=r"tls://127.0.0.1:0: a TLS listener needs a server certificate"):
        AtnaReceiver(parse_listen("tls://127.0.0.1:0"), lambda batch: None)


def test_unreadable_tls_files_are_named(tmp_path, tls_material):
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=f"TLS certificate {missing}"):
        TLSFiles(str(missing), str(tls_material.server_key)).server_context()
    with pytest.raises(ValueError, match=f"TLS client CA file {missing}"):
        TLSFiles(str(tls_material.server_cert), str(tls_material.server_key), str(missing)).server_context()
    with pytest.raises(ValueError, match="TLS certificate"):
        TLSFiles(str(tls_material.server_cert), str(tls_material.rogue_key)).server_context()


def test_a_port_in_use_is_named_and_nothing_stays_bound():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        receiver = AtnaReceiver(parse_listen(f"udp://127.0.0.1:0,tcp://127.0.0.1:{port}"), lambda b: None)
        with pytest.raises(OSError, match=f"cannot listen on tcp://127.0.0.1:{port}"):
            receiver.start()
    udp_port = receiver.bound[0].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", udp_port))  # the UDP listener bound before the failure was closed
