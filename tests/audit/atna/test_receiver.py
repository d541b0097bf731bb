"""audit.atna.receiver with util-linux logger as the sender: framings, batches, stop and storage failures."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest

from audit.atna.connections import DRAIN_QUIET, Connections, StreamConnection
from audit.atna.errors import QuarantineReason
from audit.atna.handover import HandOver
from audit.atna.listen import ReceiverSettings
from tests.audit.atna.conftest import SAMPLES, compact, logger_path, send_with_logger, wait_for

LOGIN = (SAMPLES / "dicom_110114_login.xml").read_text()
ACCESS = (SAMPLES / "dicom_110103_instances_accessed.xml").read_text()


def numbered(count: int) -> bytes:
    """``count`` one-line login messages whose user ids count up, as logger's stdin."""
    line = compact(LOGIN)
    return "".join(line.replace('UserID="dr.lee"', f'UserID="user{n}"') + "\n" for n in range(count)).encode()


def user_ids(received) -> list[str]:
    """The requesting user of each received message, in order."""
    return [r.message.requestors[0].user_id for r in received]


@pytest.mark.integration
def test_logger_over_udp_and_tcp_with_both_framings(start_receiver):
    running = start_receiver()
    send_with_logger(running.port("udp"), ACCESS, transport="udp")
    running.inbox.wait(1)  # each send is a connection of its own: one at a time keeps their order
    send_with_logger(running.port("tcp"), ACCESS, transport="tcp", octet_count=True)
    running.inbox.wait(2)
    send_with_logger(running.port("tcp"), compact(ACCESS), transport="tcp", octet_count=False)
    received = running.inbox.wait(3)
    assert [r.transport for r in received] == ["udp", "tcp", "tcp"]
    for item in received:
        assert item.quarantine is None
        assert item.peer_host == "127.0.0.1"
        assert (item.syslog.format, item.syslog.app_name, item.syslog.msgid) == (
            "rfc5424", "ARCHIVE1", "IHE+RFC-3881")
        assert item.message.patients[0].name == "TEST^ALICE"
        assert item.message.accession_numbers == ("A-2025-000981",)
    assert received[1].message.xml == ACCESS  # octet counting keeps the document's newlines
    assert running.receiver.stats().received == 3


@pytest.mark.integration
def test_older_rfc3164_header_from_logger(start_receiver):
    running = start_receiver()
    subprocess.run([logger_path(), "--rfc3164", "--udp", "--server", "127.0.0.1", "--port",
                    str(running.port("udp")), "--tag", "OLDPACS", "--size", "70000", "--", compact(LOGIN)],
                   check=True, timeout=30)
    (item,) = running.inbox.wait(1)
    assert item.syslog.format == "rfc3164"
    assert item.syslog.app_name == "OLDPACS"
    assert item.syslog.timestamp is not None
    assert item.message.event_types[0].meaning == "Login"


@pytest.mark.integration
def test_many_messages_arrive_in_order_in_bounded_batches_from_one_thread(start_receiver):
    threads: set[int] = set()

    def on_batch(batch):
        threads.add(threading.get_ident())
        running.inbox(batch)

    running = start_receiver("tcp://127.0.0.1:0", on_batch=on_batch, batch_messages=25, batch_ms=50)
    send_with_logger(running.port("tcp"), stdin=numbered(300))
    received = running.inbox.wait(300)
    assert user_ids(received) == [f"user{n}" for n in range(300)]
    assert max(len(batch) for batch in running.inbox.batches) <= 25
    assert len(threads) == 1 and threading.get_ident() not in threads


@pytest.mark.integration
@pytest.mark.parametrize("octet_count", [True, False])
def test_a_10_megabyte_message_closes_only_its_connection(start_receiver, octet_count):
    running = start_receiver("tcp://127.0.0.1:0")
    huge = b"<AuditMessage>" + b"A" * (10 * 1024 * 1024) + b"</AuditMessage>\n"
    subprocess.run([logger_path(), "--rfc5424", "--tcp", "--server", "127.0.0.1", "--port",
                    str(running.port("tcp")), "--size", str(12 * 1024 * 1024)]
                   + (["--octet-count"] if octet_count else []), input=huge, capture_output=True, timeout=60)
    wait_for(lambda: running.receiver.stats().oversized == 1, what="the oversized message refused")
    send_with_logger(running.port("tcp"), LOGIN)
    (item,) = running.inbox.wait(1)
    assert item.message.event_id.meaning == "User Authentication"
    stats = running.receiver.stats()
    assert (stats.received, stats.oversized, stats.open_connections) == (1, 1, 0)


BOMB = compact("""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]><AuditMessage><EventIdentification EventDateTime="&lol4;"/></AuditMessage>""")


@pytest.mark.integration
def test_hostile_payloads_are_quarantined_and_the_good_one_after_them_still_arrives(start_receiver):
    running = start_receiver()
    tcp = running.port("tcp")
    send_with_logger(tcp, BOMB)
    send_with_logger(tcp, "this is not XML: patient MRN-000417 TEST^ALICE")
    send_with_logger(tcp, b"<AuditMessage>\xc3\x28 TEST^ALICE</AuditMessage>")
    send_with_logger(running.port("udp"), BOMB, transport="udp")
    send_with_logger(tcp, LOGIN)
    received = running.inbox.wait(5)  # each send is a connection of its own: they may arrive in any order
    assert Counter((r.transport, r.quarantine) for r in received) == {
        ("tcp", QuarantineReason.FORBIDDEN_XML): 1, ("tcp", QuarantineReason.NOT_XML): 1,
        ("tcp", QuarantineReason.BAD_ENCODING): 1, ("udp", QuarantineReason.FORBIDDEN_XML): 1,
        ("tcp", None): 1}
    assert all(r.syslog is not None and r.raw for r in received)
    assert all("TEST^ALICE" not in (r.quarantine_detail or "") for r in received)
    (good,) = [r for r in received if r.quarantine is None]
    assert good.message.event_types[0].meaning == "Login"


def test_a_frame_that_is_not_syslog_is_quarantined_with_its_bytes_kept(start_receiver):
    running = start_receiver("udp://127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"no priority here", ("127.0.0.1", running.port("udp")))
    (item,) = running.inbox.wait(1)
    assert (item.quarantine, item.syslog, item.message) == (QuarantineReason.NOT_SYSLOG, None, None)
    assert item.raw == b"no priority here"


@pytest.mark.integration
def test_stop_hands_over_every_message_already_read(start_receiver):
    running = start_receiver("tcp://127.0.0.1:0", batch_messages=1000, batch_ms=60_000)
    send_with_logger(running.port("tcp"), stdin=numbered(50))
    with socket.create_connection(("127.0.0.1", running.port("tcp"))) as partial:
        partial.sendall(b"500 <13>1 - half-sent")
        wait_for(lambda: running.receiver.stats().received == 50, what="50 messages read")
        wait_for(lambda: running.receiver.stats().partial_messages == 1, what="the half-sent message read")
        assert running.inbox.messages == []  # still waiting for the batch to fill or its minute to pass
        assert running.receiver.stop(timeout=5) == 0
    assert user_ids(running.inbox.messages) == [f"user{n}" for n in range(50)]
    stats = running.receiver.stats()
    assert (stats.lost_at_stop, stats.incomplete_frames, stats.open_connections) == (0, 1, 0)


@pytest.mark.integration
def test_a_failing_storage_is_retried_until_it_takes_the_batch(start_receiver, caplog):
    failures = []

    def flaky(batch):
        if len(failures) < 2:
            failures.append(len(batch))
            raise ConnectionError("database down: TEST^ALICE MRN-000417")
        running.inbox(batch)

    running = start_receiver("udp://127.0.0.1:0", on_batch=flaky)
    with caplog.at_level(logging.WARNING, logger="audit.atna"):
        send_with_logger(running.port("udp"), ACCESS, transport="udp")
        (item,) = running.inbox.wait(1)
    assert item.message.patients[0].object_id == "MRN-000417^^^HOSP"
    assert failures == [1, 1]
    assert running.receiver.stats().callback_failures == 2
    assert "ConnectionError" in caplog.text
    assert "TEST^ALICE" not in caplog.text and "MRN-000417" not in caplog.text


@pytest.mark.integration
def test_stop_while_the_storage_is_down_reports_what_is_lost(start_receiver):
    def down(batch):
        raise OSError("no database")

    running = start_receiver("udp://127.0.0.1:0", on_batch=down)
    send_with_logger(running.port("udp"), stdin=numbered(3), transport="udp")
    wait_for(lambda: running.receiver.stats().callback_failures >= 1, what="a failed hand-over")
    wait_for(lambda: running.receiver.stats().received == 3, what="3 datagrams read")
    assert running.receiver.stop(timeout=1) == 3
    assert running.receiver.stats().lost_at_stop == 3


@pytest.mark.integration
def test_receivers_sharing_a_port_split_the_senders_between_them(start_receiver):
    first = start_receiver("udp://127.0.0.1:0,tcp://127.0.0.1:0", reuse_port=True)
    udp, tcp = first.port("udp"), first.port("tcp")
    second = start_receiver(f"udp://127.0.0.1:{udp},tcp://127.0.0.1:{tcp}", reuse_port=True)
    for _ in range(20):  # each logger run is a new socket, so a new pick by the kernel
        send_with_logger(udp, LOGIN, transport="udp")
        send_with_logger(tcp, LOGIN)
    wait_for(lambda: len(first.inbox.messages) + len(second.inbox.messages) == 40, what="40 messages")
    for running in (first, second):
        assert {r.transport for r in running.inbox.messages} == {"udp", "tcp"}


@pytest.mark.integration
def test_stop_right_after_a_burst_reads_what_the_sender_already_sent(start_receiver):
    def slow_storage(batch):
        time.sleep(0.005)
        running.inbox(batch)

    running = start_receiver("tcp://127.0.0.1:0", on_batch=slow_storage, queue_messages=100,
                             batch_messages=100)
    send_with_logger(running.port("tcp"), stdin=numbered(10_000))  # returns once the kernel has it all
    assert running.receiver.stats().received < 10_000  # the rest waits in the socket (back-pressure)
    assert running.receiver.stop(timeout=60) == 0
    assert user_ids(running.inbox.messages) == [f"user{n}" for n in range(10_000)]



def test_a_sender_whose_bytes_wait_unread_is_not_quiet_however_long_ago_it_was_read():
    frame = f"<13>1 - viewer07 X - - - {compact(LOGIN)}".encode()
    framed = b"%d %s" % (len(frame), frame)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        settings = ReceiverSettings()
        handover = HandOver(lambda batch: None, capacity=100, batch_messages=10, batch_ms=20,
                            max_bytes=settings.max_message_bytes, on_room=lambda: None)
        hub = Connections(settings, handover, loop)
        server = await loop.create_server(lambda: StreamConnection(hub, "tcp", None), "127.0.0.1", 0)
        with socket.create_connection(server.sockets[0].getsockname()) as sender:
            sender.sendall(framed)
            while handover.queued < 1:
                await asyncio.sleep(0.01)
            time.sleep(DRAIN_QUIET * 1.5)  # the loop thread gets no CPU: it reads nothing meanwhile
            quiet_when_all_was_read = not hub.busy()
            sender.sendall(framed)  # arrives while the loop is still not reading
            time.sleep(DRAIN_QUIET * 1.5)
            busy_with_bytes_unread = hub.busy()
            hub.close_all()
        server.close()
        return quiet_when_all_was_read, busy_with_bytes_unread

    assert asyncio.run(scenario()) == (True, True)
