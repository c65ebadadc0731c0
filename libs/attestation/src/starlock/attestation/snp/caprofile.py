"""AMD's certificate profile for the CAs of an SEV-SNP chain: the ARK and the ASK or ASVK (spec §2.1).

Every real ARK, ASK and ASVK (Milan, Genoa, Turin; KDS, Azure THIM, AWS) is an X.509 v3
certificate with an RSA key, signed with RSASSA-PSS over SHA-384 (MGF1-SHA-384, salt 48: the
parameters themselves are checked when the signature is verified), whose subject CN names its role
and product line, with a critical basicConstraints that says CA and a keyUsage with keyCertSign.
:func:`check_amd_ca_profile` refuses anything else, naming the rule, the expected and the actual
value (:class:`CertificateChainError`, check ``certificate-chain``).

Stricter than go-sev-guest, which leaves these to Go's path validation when the root is given
(it accepts any signature algorithm Go knows, and an intermediate without keyUsage).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from starlock.attestation.errors import CertificateChainError
from starlock.attestation.trust import describe, subject_cn

__all__ = ["check_amd_ca_profile"]


def _error(cert: x509.Certificate, rule: str, expected: str, actual: str) -> CertificateChainError:
    return CertificateChainError(
        f"certificate {describe(cert)}: {rule}: expected {expected}, got {actual} (AMD CA certificate profile)",
        check="certificate-chain",
    )


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def check_amd_ca_profile(cert: x509.Certificate, expected_cn: str) -> None:
    """``cert`` (an ARK, ASK or ASVK named ``expected_cn``) must follow AMD's CA profile."""
    if cert.version is not x509.Version.v3:
        raise _error(cert, "X.509 version", "v3", cert.version.name)
    oid = cert.signature_algorithm_oid
    if oid != x509.SignatureAlgorithmOID.RSASSA_PSS:
        raise _error(cert, "signature algorithm", "RSASSA-PSS", f"{getattr(oid, '_name', '?')} ({oid.dotted_string})")
    try:
        digest = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        digest = None
    if digest is None or digest.name != "sha384":
        raise _error(cert, "signature hash", "sha384", digest.name if digest is not None else "unsupported")
    cn = subject_cn(cert)
    if cn != expected_cn:
        raise _error(cert, "subject CN", repr(expected_cn), repr(cn))
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _error(cert, "public key", "RSA", f"unparsable ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise _error(cert, "public key", "RSA", type(key).__name__)
    basic = _extension(cert, x509.BasicConstraints)
    if basic is None or not isinstance(basic.value, x509.BasicConstraints) or not basic.value.ca:
        actual = "no basicConstraints" if basic is None else "basicConstraints without CA"
        raise _error(cert, "basicConstraints", "CA (it signs certificates)", actual)
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or not isinstance(usage.value, x509.KeyUsage) or not usage.value.key_cert_sign:
        actual = "no keyUsage" if usage is None else "keyUsage without keyCertSign"
        raise _error(cert, "keyUsage", "keyCertSign (it signs certificates)", actual)
