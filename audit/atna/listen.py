"""What the ATNA receiver listens on and its limits: listener specs, TLS files, settings."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, fields

from audit.atna.syslog import MAX_MESSAGE_BYTES

TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class Listen:
    """One listener: transport (udp, tcp or tls), IP address and port (0: any free port)."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_listen(text: str) -> tuple[Listen, ...]:
    """Parse ``udp://0.0.0.0:514,tcp://0.0.0.0:601,tls://[::]:6514``; ValueError names the bad entry."""
    listeners: list[Listen] = []
    for number, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        problem = _listen_problem(entry)
        if problem:
            raise ValueError(f"listener {number} ({entry!r}): {problem}")
        scheme, _, rest = entry.partition("://")
        host, _, port = rest.rpartition(":")
        listen = Listen(scheme.lower(), host.strip("[]"), int(port))
        if listen in listeners:
            raise ValueError(f"listener {number} ({entry!r}): listed twice")
        listeners.append(listen)
    return tuple(listeners)


def _listen_problem(entry: str) -> str | None:
    """Why one listener spec is invalid, or None."""
    if not entry:
        return "empty (two commas in a row, or a trailing comma)"
    scheme, separator, rest = entry.partition("://")
    if not separator or scheme.lower() not in TRANSPORTS:
        return "must start with udp://, tcp:// or tls://"
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must end with :PORT, a port from 0 to 65535"
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return "the host must be an IP address to listen on, such as 0.0.0.0 or [::]"
    if address.version == 6 and not bracketed:
        return "write an IPv6 address in brackets, such as [::]:6514"
    return None


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a TLS listener; with ``client_ca`` every client must show a certificate it signed."""

    certificate: str
    key: str
    client_ca: str | None = None

    def server_context(self) -> ssl.SSLContext:
        """A TLS 1.2+ server context (RFC 5425); ValueError names the file that cannot be used."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.certificate, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TLS certificate {self.certificate} or key {self.key} cannot be used: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"TLS client CA file {self.client_ca} cannot be used: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass(frozen=True)
class ReceiverSettings:
    """Limits of the receiver; every count and duration must be positive.

    ``reuse_port`` lets several receiver processes bind the same listeners (SO_REUSEPORT): the
    kernel spreads TCP connections and UDP datagrams over them, one CPU core each.
    """

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_connections: int = 256
    max_connections_per_peer: int = 32
    idle_timeout: float = 300.0
    message_timeout: float = 30.0
    handshake_timeout: float = 10.0
    batch_messages: int = 500
    batch_ms: int = 200
    queue_messages: int = 20_000
    tls: TLSFiles | None = None
    reuse_port: bool = False

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name not in ("tls", "reuse_port") and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{field.name} must be a positive number, not {value!r}")
        if self.max_connections_per_peer > self.max_connections:
            raise ValueError("max_connections_per_peer cannot be above max_connections")
