"""The receiver in a hostile world: connection floods, trickling senders, floods, bad TLS clients."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time

import pytest

from audit.atna.receiver import TLSFiles
from tests.audit.atna.conftest import SAMPLES, compact, send_with_logger, wait_for
from tests.helpers import OVERRUN

LOGIN = (SAMPLES / "dicom_110114_login.xml").read_text()


def lines(count: int) -> bytes:
    """``count`` one-line login messages whose user ids count up, as logger's stdin."""
    line = compact(LOGIN)
    return "".join(line.replace('UserID="dr.lee"', f'UserID="user{n}"') + "\n" for n in range(count)).encode()


def closed_by_peer(sock: socket.socket, seconds: float) -> bool:
    """Whether the receiver closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@contextlib.contextmanager
def connections(port: int, count: int, source: str = "127.0.0.1"):
    """Open ``count`` TCP connections to the receiver from ``source``; close them afterwards."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                   source_address=(source, 0)))
        yield opened
    finally:
        for sock in opened:
            sock.close()


@pytest.mark.integration
def test_a_thousand_connections_from_one_host_leave_room_for_other_senders(start_receiver, caplog):
    running = start_receiver("tcp://127.0.0.1:0", max_connections=100, max_connections_per_peer=20)
    port = running.port("tcp")
    with caplog.at_level(logging.WARNING, logger="audit.atna"), \
            connections(port, 1000, source="127.0.0.2") as flood:
        wait_for(lambda: running.receiver.stats().refused_connections == 980, what="980 refusals")
        assert caplog.text.count("connection limit reached") == 1  # the log is not flooded
        assert running.receiver.stats().open_connections == 20
        assert closed_by_peer(flood[-1], 2.0)
        send_with_logger(port, LOGIN)  # from 127.0.0.1, while the 20 admitted ones stay open
        (item,) = running.inbox.wait(1)
        assert item.message.event_types[0].meaning == "Login"
        assert not closed_by_peer(flood[0], 0.1)


@pytest.mark.integration
def test_connections_over_the_total_limit_are_closed_at_once(start_receiver):
    running = start_receiver("tcp://127.0.0.1:0", max_connections=30, max_connections_per_peer=30)
    port = running.port("tcp")
    with connections(port, 40) as opened:
        wait_for(lambda: running.receiver.stats().refused_connections == 10, what="10 refusals")
        assert sum(closed_by_peer(sock, 0.5) for sock in opened[30:]) == 10
        assert running.receiver.stats().open_connections == 30
    wait_for(lambda: running.receiver.stats().open_connections == 0, what="the slots freed")
    send_with_logger(port, LOGIN)
    assert len(running.inbox.wait(1)) == 1
    assert running.receiver.stats().accepted_connections == 30 + 1


@pytest.mark.integration
def test_a_sender_trickling_one_byte_a_second_is_cut_off_without_stalling_others(start_receiver):
    timeout = 4.0
    running = start_receiver("tcp://127.0.0.1:0", message_timeout=timeout)
    port = running.port("tcp")
    frame = f"<13>1 - slowloris X - - - {compact(LOGIN)}".encode()
    cut_after: list[float] = []

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            started = time.monotonic()
            sock.sendall(b"%d " % len(frame))
            for byte in frame:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                if closed_by_peer(sock, 1.0):  # one byte a second, watching for the receiver's close
                    break
            cut_after.append(time.monotonic() - started)

    slow = threading.Thread(target=trickle)
    slow.start()
    wait_for(lambda: running.receiver.stats().open_connections == 1, what="the slow sender connected")
    send_with_logger(port, LOGIN)
    (item,) = running.inbox.wait(1, seconds=timeout)
    assert item.peer_host == "127.0.0.1" and item.message is not None
    assert not cut_after, "the good message should arrive while the slow sender is still connected"
    slow.join(timeout + 1 + OVERRUN + 5)
    assert cut_after and cut_after[0] <= timeout + 1 + OVERRUN
    stats = running.receiver.stats()
    assert (stats.timed_out_connections, stats.incomplete_frames) == (1, 1)
    assert len(running.inbox.messages) == 1


def test_a_silent_connection_is_closed_after_the_idle_timeout(start_receiver):
    running = start_receiver("tcp://127.0.0.1:0", idle_timeout=1.0)
    with connections(running.port("tcp"), 1) as (sock,):
        assert closed_by_peer(sock, 1.0 + OVERRUN)
    assert running.receiver.stats().timed_out_connections == 1


@pytest.mark.integration
def test_a_udp_flood_beyond_the_queue_is_counted_as_dropped(start_receiver):
    release = threading.Event()

    def slow_storage(batch):
        release.wait(30)
        running.inbox(batch)

    running = start_receiver("udp://127.0.0.1:0", on_batch=slow_storage, queue_messages=20,
                             batch_messages=5, batch_ms=10)
    send_with_logger(running.port("udp"), stdin=lines(200), transport="udp")
    stats = running.receiver.stats
    wait_for(lambda: stats().received + stats().dropped_udp == 200, what="every datagram counted")
    assert stats().dropped_udp >= 200 - 20 - 5
    assert stats().received <= 25
    release.set()
    wait_for(lambda: stats().delivered == stats().received, what="the queue handed over")
    assert len(running.inbox.messages) == stats().received


@pytest.mark.integration
def test_a_tcp_sender_gets_back_pressure_instead_of_losses(start_receiver):
    release = threading.Event()

    def slow_storage(batch):
        release.wait(30)
        running.inbox(batch)

    running = start_receiver("tcp://127.0.0.1:0", on_batch=slow_storage, queue_messages=50,
                             batch_messages=10, batch_ms=10)
    count = 5000
    sender = threading.Thread(target=send_with_logger, args=(running.port("tcp"),),
                              kwargs={"stdin": lines(count)})
    sender.start()
    stats = running.receiver.stats
    wait_for(lambda: stats().backpressure_pauses >= 1, what="reading paused")
    read_while_paused = stats().received
    time.sleep(0.5)
    assert stats().received == read_while_paused < count  # the receiver stopped reading
    release.set()
    received = running.inbox.wait(count, seconds=60)
    sender.join(30)
    assert [r.message.requestors[0].user_id for r in received] == [f"user{n}" for n in range(count)]
    assert stats().dropped_udp == 0


@pytest.fixture
def tls_receiver(start_receiver, tls_material):
    """A TLS listener that requires client certificates from the test CA."""
    files = TLSFiles(str(tls_material.server_cert), str(tls_material.server_key), str(tls_material.ca))
    return start_receiver("tls://127.0.0.1:0", tls=files, handshake_timeout=1.0)


def tls_client(material, cert=None, key=None) -> ssl.SSLContext:
    """A client context trusting the test CA, presenting ``cert`` when given."""
    context = ssl.create_default_context(cafile=str(material.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def refused_over_tls(port: int, context: ssl.SSLContext, payload: bytes) -> bool:
    """Whether the receiver ends the connection instead of taking ``payload`` over TLS."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="atna.test") as sock:
            sock.sendall(payload)
            return sock.recv(1) == b""  # TLS 1.3 reports a refused client certificate on the first read
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


@pytest.mark.parametrize("credentials", ["rogue", "none"])
def test_a_tls_client_without_a_trusted_certificate_is_refused(tls_receiver, tls_material, credentials):
    context = (tls_client(tls_material, tls_material.rogue_cert, tls_material.rogue_key)
               if credentials == "rogue" else tls_client(tls_material))
    frame = f"<13>1 - intruder X - - - {compact(LOGIN)}".encode()
    assert refused_over_tls(tls_receiver.port("tls"), context, b"%d %s" % (len(frame), frame))
    wait_for(lambda: tls_receiver.receiver.stats().tls_failures == 1, what="the refusal counted")
    assert tls_receiver.receiver.stats().received == 0
    assert tls_receiver.inbox.messages == []


def test_a_trusted_tls_client_is_received_with_its_certificate_subject(tls_receiver, tls_material):
    context = tls_client(tls_material, tls_material.client_cert, tls_material.client_key)
    frame = f"<13>1 - viewer07 X - - - {compact(LOGIN)}".encode()
    with socket.create_connection(("127.0.0.1", tls_receiver.port("tls"))) as raw, \
            context.wrap_socket(raw, server_hostname="atna.test") as sock:
        sock.sendall(b"%d %s" % (len(frame), frame))
        (item,) = tls_receiver.inbox.wait(1)
    assert item.peer_certificate == "CN=rsyslog-client,O=PACS Desk tests"
    assert item.syslog.hostname == "viewer07"


def test_a_connection_that_never_starts_its_tls_handshake_is_closed(tls_receiver):
    with connections(tls_receiver.port("tls"), 1) as (sock,):
        assert closed_by_peer(sock, 1.0 + OVERRUN)
    wait_for(lambda: tls_receiver.receiver.stats().tls_failures == 1, what="the timeout counted")
