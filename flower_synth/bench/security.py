"""TLS certificates and SuperNode keys for a local federation.

Made with ``cryptography`` (the library Flower itself uses for SuperNode
authentication), so a secure federation needs no ``openssl`` binary: a private CA, a
server certificate for the loopback addresses signed by it (``--ssl-certfile``,
``--ssl-keyfile``, ``--ssl-ca-certfile`` of the SuperLink; ``--root-certificates`` of
the SuperNodes and of ``flwr``), and per-SuperNode EC key pairs in OpenSSH format
(``--auth-supernode-private-key``; the public key goes to ``flwr supernode register``).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")
VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a private CA and of a server certificate it signed."""

    ca_certificate: Path
    server_certificate: Path
    server_key: Path


@dataclass(frozen=True)
class NodeKey:
    """A SuperNode's EC key pair (NIST P-384) in OpenSSH format."""

    private_key: Path
    public_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(
    path: Path, key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat
) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    path.chmod(0o600)


def make_tls_files(directory: str | Path) -> TLSFiles:
    """A fresh CA and a server certificate for ``localhost``, ``127.0.0.1`` and ``::1``
    (valid for two days), written to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("flower-synth local CA"))
        .issuer_name(_name("flower-synth local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    alternative_names = [x509.DNSName(name) for name in LOOPBACK_NAMES] + [
        x509.IPAddress(ipaddress.ip_address(address)) for address in LOOPBACK_ADDRESSES
    ]
    server_certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_certificate.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(directory / "ca.crt", directory / "server.pem", directory / "server.key")
    files.ca_certificate.write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    files.server_certificate.write_bytes(
        server_certificate.public_bytes(serialization.Encoding.PEM)
    )
    _write_key(files.server_key, server_key, serialization.PrivateFormat.TraditionalOpenSSL)
    return files


def make_node_key(directory: str | Path, name: str) -> NodeKey:
    """A fresh SuperNode key pair ``<name>`` and ``<name>.pub`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    pair = NodeKey(directory / name, directory / f"{name}.pub")
    _write_key(pair.private_key, key, serialization.PrivateFormat.OpenSSH)
    pair.public_key.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return pair
