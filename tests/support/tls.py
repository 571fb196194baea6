"""A throw-away PKI for the TLS tests, made at run time with `cryptography`:
two CAs (one for servers, one for clients) and certificates they issued,
written as PEM files. Nothing here is a real secret; every test session
makes its own.

The server certificate names every address a test reaches a server on
(127.0.0.1, 127.0.0.2, ::1, localhost) and may serve as a client certificate
too (`up` with mutual TLS presents it as its own clients' identity).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "127.0.0.2", "::1")


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """PEM files of a test PKI.

    - `ca`: issued `server` and `client_ca`'s certificates are not from it.
    - `server`: for every test address; usable as a client certificate of
      `ca` as well (both extended key usages).
    - `client_ca`: the CA a server with mutual TLS trusts for clients.
    - `client`: issued by `client_ca`.
    - `stranger`: a client certificate of another CA that nobody trusts.
    """

    ca: Path
    server: Pair
    client_ca: Path
    client: Pair
    stranger: Pair


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: quick to make, and every TLS stack here (grpc's BoringSSL,
    # Envoy's, Python's OpenSSL) accepts it.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return _validity(builder).sign(key, hashes.SHA256()), key


def _leaf(
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = issuer
    key = _key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _validity(builder).sign(ca_key, hashes.SHA256()), key


def _pair(directory: Path, stem: str, made: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> Pair:
    cert, key = made
    return Pair(_write_cert(cert, directory / f"{stem}.pem"), _write_key(key, directory / f"{stem}-key.pem"))


def make_pki(directory: Path) -> Pki:
    """Write a fresh test PKI into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("chronosched test CA")
    client_ca = _ca("chronosched test client CA")
    other_ca = _ca("chronosched test stranger CA")
    return Pki(
        ca=_write_cert(ca[0], directory / "ca.pem"),
        server=_pair(directory, "server", _leaf("chronosched test server", ca, server=True)),
        client_ca=_write_cert(client_ca[0], directory / "client-ca.pem"),
        client=_pair(directory, "client", _leaf("chronosched test client", client_ca, server=False)),
        stranger=_pair(directory, "stranger", _leaf("chronosched stranger", other_ca, server=False)),
    )
