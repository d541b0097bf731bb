"""A real OpenLDAP server for the directory tests: certificates, configuration, data, process."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import free_port, require

AD_SUFFIX = "dc=hospital,dc=org"
OPENLDAP_SUFFIX = "dc=clinic,dc=org"
ROOT_PASSWORD = "root-secret-for-tests"
SERVICE_PASSWORD = "service-account-secret"
USER_PASSWORD = "Correct-Horse-7-battery"

# The Active Directory attributes PACS Desk reads, with Microsoft's own OIDs, so an
# AD-shaped directory can be served by OpenLDAP. The auxiliary class uses a 2.25 (UUID) OID.
AD_SCHEMA = """\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.159 NAME 'accountExpires'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.141 NAME 'department'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 2.25.161102379633478373625498361842163271730 NAME 'pacsdeskTestAdAccount'
  AUXILIARY MAY ( sAMAccountName $ userAccountControl $ accountExpires $ department ) )
"""


def find_slapd() -> str:
    """Path of Debian's slapd (in /usr/sbin, often not on PATH), or skip."""
    path = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    require(path is not None, "slapd is not installed", "PACSDESK_REQUIRE_INTEGRATION")
    assert path
    return path


@dataclass(frozen=True)
class Certificates:
    """A test CA and two server certificates it signed: one for 127.0.0.1, one for another name."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    wrong_host_cert: Path
    wrong_host_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key unencrypted (PKCS#8 PEM), readable by its owner only."""
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_certificates(folder: Path) -> Certificates:
    """Generate the CA, the 127.0.0.1/localhost certificate and a wrong-host certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PACS Desk test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(name: str, alt_names: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(alt_names[0].value))]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(folder / f"{name}.key", key)
        return folder / f"{name}.pem", folder / f"{name}.key"

    server = leaf("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    wrong = leaf("wrong-host", [x509.DNSName("pacs-ldap.other-hospital.example")])
    return Certificates(folder / "ca.pem", *server, *wrong)


def ldif(entries: Iterable[tuple[str, dict[str, list[str]]]]) -> str:
    """LDIF for ``(dn, attributes)`` pairs (non-ASCII values base64-encoded)."""
    blocks = []
    for dn, attributes in entries:
        lines = [f"dn: {dn}"]
        for name, values in attributes.items():
            for value in values:
                if value.isascii() and not value.startswith((" ", ":", "<")):
                    lines.append(f"{name}: {value}")
                else:
                    lines.append(f"{name}:: {base64.b64encode(value.encode()).decode()}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@dataclass
class Slapd:
    """One slapd process serving both test suffixes on loopback ``ldap://`` and ``ldaps://`` ports."""

    folder: Path
    tls: tuple[Path, Path] | None
    ca_file: Path | None
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def ldap_url(self) -> str:
        """The StartTLS (or plain) URL."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        """The LDAP-over-TLS URL."""
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _configuration(self) -> str:
        """slapd.conf: two mdb databases, memberof on the AD-shaped one only."""
        schema = self.folder / "ad-like.schema"
        schema.write_text(AD_SCHEMA)
        tls = ""
        if self.tls and self.ca_file:
            tls = (f"TLSCACertificateFile {self.ca_file}\nTLSCertificateFile {self.tls[0]}\n"
                   f"TLSCertificateKeyFile {self.tls[1]}\n")
        lines = [
            "include /etc/ldap/schema/core.schema",
            "include /etc/ldap/schema/cosine.schema",
            "include /etc/ldap/schema/inetorgperson.schema",
            f"include {schema}",
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "moduleload memberof",
            f"pidfile {self.folder / 'slapd.pid'}",
            f"argsfile {self.folder / 'slapd.args'}",
            tls,
            # Like Active Directory's MaxPageSize: 500 entries per answer, paging for more.
            "sizelimit size.soft=500 size.hard=500 size.prtotal=unlimited",
        ]
        for suffix, memberof in ((AD_SUFFIX, True), (OPENLDAP_SUFFIX, False)):
            data = self.folder / suffix.split(",")[0].split("=")[1]
            data.mkdir(exist_ok=True)
            lines += [
                "database mdb",
                f"suffix {suffix}",
                f"rootdn cn=admin,{suffix}",
                f"rootpw {ROOT_PASSWORD}",
                f"directory {data}",
                "maxsize 1073741824",
                "dbnosync",  # a throw-away test database: no fsync per entry
                "index objectClass,member,uniqueMember eq",
                "index uid,sAMAccountName,employeeType eq",
                "access to attrs=userPassword by anonymous auth by * none",
                f"access to * by dn.exact=cn=pacsdesk,ou=services,{suffix} read by * none",
            ]
            if memberof:
                lines += ["overlay memberof"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start slapd in the foreground of its own process and wait until it answers."""
        binary = find_slapd()
        conf = self.folder / "slapd.conf"
        conf.write_text(self._configuration())
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"
        self.process = subprocess.Popen([binary, "-f", str(conf), "-h", urls, "-d", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"slapd exited with {self.process.returncode}: {output[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not listen within 20 s")

    def load(self, text: str, suffix: str = AD_SUFFIX) -> None:
        """Add LDIF entries online (so overlays such as memberof see them) as the root DN."""
        self._tool("ldapadd", text, suffix)

    def modify(self, text: str, suffix: str = AD_SUFFIX) -> None:
        """Apply LDIF changes (changetype records) as the root DN."""
        self._tool("ldapmodify", text, suffix)

    def _tool(self, name: str, text: str, suffix: str) -> None:
        """Run an ldap-utils tool against this server with LDIF on standard input."""
        binary = shutil.which(name)
        require(binary is not None, f"{name} (ldap-utils) is not installed", "PACSDESK_REQUIRE_INTEGRATION")
        assert binary
        result = subprocess.run([binary, "-x", "-H", self.ldap_url, "-D", f"cn=admin,{suffix}",
                                 "-w", ROOT_PASSWORD], input=text, capture_output=True, text=True,
                                check=False, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed ({result.returncode}): {result.stderr[-2000:]}")

    def stop(self) -> None:
        """Terminate slapd, reap it and close its output pipe."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None
