"""A throwaway certificate authority for the test cluster: serving certs, client certs, SA keys."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = datetime.timedelta(days=2)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


class Authority:
    """One CA in ``folder``; every certificate it issues lands beside it."""

    def __init__(self, folder: Path, *, name: str = "planetgen-test-ca") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "ca.crt", folder / "ca.key"
        if cert.exists() and key.exists():
            # A restarted stack keeps its CA: kubeconfigs, webhook bundles and pods' ca.crt stay valid.
            loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            self._key = loaded
            self._cert = x509.load_pem_x509_certificate(cert.read_bytes())
            self.pair = Pair(cert=cert, key=key)
            return
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.pair = self._write("ca", self._cert, self._key)

    @property
    def pem(self) -> bytes:
        """The CA certificate, for kubeconfigs and webhook caBundles."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def serving(self, name: str, *, hosts: list[str], mutual: bool = False) -> Pair:
        """A server certificate for DNS names and IP addresses in ``hosts``.

        ``mutual`` makes it a client certificate too: KEDA's operator and metrics server present the
        same one to each other over mTLS.
        """
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if mutual else [])
        return self._issue(name, common_name=hosts[0], sans=names, usage=usages)

    def client(self, name: str, *, user: str, groups: tuple[str, ...] = ()) -> Pair:
        """A client certificate: the API server reads the user from CN and groups from O."""
        return self._issue(
            name, common_name=user, organizations=groups, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
        )

    def _issue(
        self,
        name: str,
        *,
        common_name: str,
        usage: list[x509.ObjectIdentifier],
        sans: list[x509.GeneralName] | None = None,
        organizations: tuple[str, ...] = (),
    ) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return self._write(name, builder.sign(self._key, hashes.SHA256()), key)

    def _write(self, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
        pair = Pair(cert=self.folder / f"{name}.crt", key=self.folder / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pair.key.chmod(0o600)
        return pair


def service_account_keys(folder: Path) -> Pair:
    """The key pair the API server signs ServiceAccount tokens with (``cert`` is the public key)."""
    pair = Pair(cert=folder / "sa.pub", key=folder / "sa.key")
    if pair.cert.exists() and pair.key.exists():
        return pair  # tokens already issued (and stored in etcd) stay valid across restarts
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pair.key.chmod(0o600)
    pair.cert.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pair
