"""The lab's two certificate authorities.

- The lab CA (``ca.crt``) signs the private registry: a site's own CA, which nodes
  trust only where the plan says (hosts.toml `ca = "ca.crt"`), as on a real site.
- The "public" CA (``public-ca.crt``) signs the simulated upstream and stands in for
  the web PKI: every lab instance trusts it system-wide, as real machines trust the CAs
  behind ghcr.io. Keeping them apart means the e2e proof of the mirror's CA handling
  cannot pass by accident through system trust.

Made with `cryptography` (no openssl processes), kept in the lab's state directory so
that re-running up reuses them and the plan can point mirror.ca_file at ca.crt.
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

from airgap.fileio import write_atomic

VALID_DAYS = 30


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class LabCA:
    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert_file.read_bytes()

    @classmethod
    def load_or_create(cls, directory: Path, name: str, *, stem: str = "ca",
                       title: str = "CA") -> LabCA:
        """The CA in directory/STEM.crt and STEM.key, created on first use."""
        cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
        if cert_file.is_file() and key_file.is_file():
            return cls(cert_file, key_file)
        key = ec.generate_private_key(ec.SECP256R1())
        cn = f"k8s-airgap lab {name} {title}"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        write_atomic(key_file, _key_pem(key), 0o600)
        write_atomic(cert_file, cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert_file, key_file)

    def issue(self, names: list[str], ips: list[str]) -> tuple[bytes, bytes]:
        """A server certificate for names and IP addresses: (cert PEM, key PEM)."""
        ca_key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cn = names[0] if names else ips[0]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
