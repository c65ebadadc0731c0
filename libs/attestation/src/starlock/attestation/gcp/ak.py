"""Trust in a GCE vTPM attestation key (reference: spec-attestation §5d).

Two ways, either or both:

* **GCE API** (what Constellation does): ``instances.getShieldedInstanceIdentity(project, zone,
  instance)`` returns ``signingKey.ekPub``, a PEM ``PUBLIC KEY``: the AK Google provisioned for
  that instance. :class:`ShieldedInstanceIdentityClient` is the adapter;
  :class:`GceComputeApiClient` is its HTTP implementation (a bearer-token source is injected).
* **AK certificate, offline** (beyond upstream; what go-tpm-tools offers): the document's
  ``ak_cert`` must chain through trusted intermediates to a Google EK/AK root, its key must be the
  AK, and the GCE extension 1.3.6.1.4.1.11129.2.1.21 gives the instance identity, returned only
  when ``isProduction`` is true.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from starlock.attestation._certpath import VerifiedPath, verify_path
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import AttestationDocument, GceInstanceInfo
from starlock.attestation.errors import MalformedEvidence, UntrustedKey
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.tpm import AkPublicKey, TpmPublic, parse_tpmt_public, public_keys_equal
from starlock.attestation.trust import Role, TrustStore, load_certificates
from starlock.attestation.vtpm import CheckRecorder

__all__ = [
    "GCE_INSTANCE_EXTENSION_OID",
    "CertifiedAk",
    "GceAkCertificateInfo",
    "GceComputeApiClient",
    "ShieldedInstanceIdentityClient",
    "gce_trusted_ak",
    "parse_ek_pub_pem",
    "parse_gce_instance_extension",
    "parse_gce_instance_info",
    "verify_gce_ak_certificate",
]

GCE_INSTANCE_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.21")
MAX_API_RESPONSE = 64 * 1024


@runtime_checkable
class ShieldedInstanceIdentityClient(Protocol):
    """``getShieldedInstanceIdentity``: the instance's AK public key (``signingKey.ekPub``).

    Implementations raise :class:`UntrustedKey` when the API cannot vouch for a key.
    """

    def signing_key(self, project_id: str, zone: str, instance_name: str) -> AkPublicKey: ...


def parse_ek_pub_pem(pem: str) -> AkPublicKey:
    """The ``ekPub`` field: one PEM block of type ``PUBLIC KEY`` (PKIX), RSA or EC."""
    text = pem.strip()
    if not text.startswith("-----BEGIN PUBLIC KEY-----"):
        raise UntrustedKey("getShieldedInstanceIdentity: signingKey.ekPub is not a PEM 'PUBLIC KEY' block")
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        raise UntrustedKey(f"getShieldedInstanceIdentity: signingKey.ekPub does not parse: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise UntrustedKey(f"getShieldedInstanceIdentity: signingKey.ekPub is a {type(key).__name__}")
    return key


class GceComputeApiClient:
    """HTTP adapter for the GCE Compute API (``compute.googleapis.com``).

    ``token``: returns an OAuth2 access token (e.g. from the metadata server or google-auth);
    None sends no Authorization header (tests, proxies that authenticate themselves).
    """

    def __init__(
        self,
        token: Callable[[], str] | None = None,
        *,
        endpoint: str = "https://compute.googleapis.com/compute/v1",
        timeout: float = 10.0,
    ) -> None:
        self._token = token
        self._endpoint = endpoint.rstrip("/")
        self._timeout = timeout

    def url(self, project_id: str, zone: str, instance_name: str) -> str:
        parts = [urllib.parse.quote(p, safe="") for p in (project_id, zone, instance_name)]
        return f"{self._endpoint}/projects/{parts[0]}/zones/{parts[1]}/instances/{parts[2]}/getShieldedInstanceIdentity"

    def signing_key(self, project_id: str, zone: str, instance_name: str) -> AkPublicKey:
        request = urllib.request.Request(self.url(project_id, zone, instance_name))  # noqa: S310 - https endpoint
        if self._token is not None:
            request.add_header("Authorization", f"Bearer {self._token()}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read(MAX_API_RESPONSE + 1)
        except urllib.error.HTTPError as exc:
            raise UntrustedKey(
                f"getShieldedInstanceIdentity({project_id}/{zone}/{instance_name}): HTTP {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise UntrustedKey(f"getShieldedInstanceIdentity: GCE API unreachable: {exc}") from None
        if len(body) > MAX_API_RESPONSE:
            raise UntrustedKey(f"getShieldedInstanceIdentity: response larger than {MAX_API_RESPONSE} bytes")
        try:
            obj = json.loads(body)
        except ValueError:
            raise UntrustedKey("getShieldedInstanceIdentity: response is not JSON") from None
        signing = obj.get("signingKey") if isinstance(obj, dict) else None
        ek_pub = signing.get("ekPub") if isinstance(signing, dict) else None
        if not isinstance(ek_pub, str) or not ek_pub:
            raise UntrustedKey("getShieldedInstanceIdentity: response has no signingKey.ekPub")
        return parse_ek_pub_pem(ek_pub)


# --- AK certificate ---------------------------------------------------------------------------------


@attrs.frozen
class GceAkCertificateInfo:
    """The GCE extension of an AK certificate."""

    zone: str
    project_number: int
    project_id: str
    instance_id: int
    instance_name: str
    security_version: int | None
    is_production: bool

    def instance_info(self) -> GceInstanceInfo:
        return GceInstanceInfo(
            zone=self.zone,
            project_id=self.project_id,
            project_number=self.project_number,
            instance_name=self.instance_name,
            instance_id=self.instance_id,
        )


@attrs.frozen
class CertifiedAk:
    """A verified AK certificate: its key, path and (production instances only) the instance."""

    public_key: AkPublicKey
    path: VerifiedPath
    instance: GceInstanceInfo | None
    extension: GceAkCertificateInfo | None


class _Der:
    """Just enough DER to read the GCE extension; every problem is MalformedEvidence."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, start, len(data) if end is None else end

    def done(self) -> bool:
        return self.pos >= self.end

    def peek_tag(self) -> int:
        return self.data[self.pos] if self.pos < self.end else -1

    def read(self, tag: int, what: str) -> tuple[int, int]:
        data, pos = self.data, self.pos
        if pos + 2 > self.end or data[pos] != tag:
            got = f"0x{data[pos]:02x}" if pos < self.end else "end of data"
            raise MalformedEvidence(f"GCE AK certificate extension: {what}: expected tag 0x{tag:02x}, got {got}")
        length, pos = data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 3 or pos + count > self.end:
                raise MalformedEvidence(f"GCE AK certificate extension: {what}: bad length")
            length, pos = int.from_bytes(data[pos : pos + count], "big"), pos + count
        if pos + length > self.end:
            raise MalformedEvidence(f"GCE AK certificate extension: {what}: truncated")
        self.pos = pos + length
        return pos, pos + length

    def utf8(self, what: str) -> str:
        start, end = self.read(0x0C, what)
        try:
            return self.data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEvidence(f"GCE AK certificate extension: {what}: not UTF-8") from None

    def integer(self, what: str) -> int:
        start, end = self.read(0x02, what)
        if start == end or end - start > 9:
            raise MalformedEvidence(f"GCE AK certificate extension: {what}: bad INTEGER")
        value = int.from_bytes(self.data[start:end], "big", signed=True)
        if value < 0:
            raise MalformedEvidence(f"GCE AK certificate extension: {what}: negative ({value})")
        return value

    def boolean(self, what: str) -> bool:
        start, end = self.read(0x01, what)
        if end - start != 1:
            raise MalformedEvidence(f"GCE AK certificate extension: {what}: bad BOOLEAN")
        return self.data[start] != 0


def parse_gce_instance_extension(value: bytes) -> GceAkCertificateInfo:
    """Parse the DER of extension 1.3.6.1.4.1.11129.2.1.21 (spec-attestation §5d)."""
    outer = _Der(value)
    start, end = outer.read(0x30, "SEQUENCE")
    if not outer.done():
        raise MalformedEvidence("GCE AK certificate extension: trailing data")
    r = _Der(value, start, end)
    zone = r.utf8("zone")
    project_number = r.integer("projectNumber")
    project_id = r.utf8("projectId")
    instance_id = r.integer("instanceId")
    instance_name = r.utf8("instanceName")
    security_version: int | None = None
    is_production = False
    if r.peek_tag() == 0xA0:
        s, e = r.read(0xA0, "securityProperties")
        w = _Der(value, s, e)
        ps, pe = w.read(0x30, "securityProperties SEQUENCE")
        props = _Der(value, ps, pe)
        if props.peek_tag() == 0xA0:
            a, b = props.read(0xA0, "securityVersion")
            security_version = _Der(value, a, b).integer("securityVersion")
        if props.peek_tag() == 0xA1:
            a, b = props.read(0xA1, "isProduction")
            is_production = _Der(value, a, b).boolean("isProduction")
        # Later fields of securityProperties are not interpreted.
    return GceAkCertificateInfo(
        zone, project_number, project_id, instance_id, instance_name, security_version, is_production
    )


def verify_gce_ak_certificate(
    ak_cert: bytes,
    intermediates: Sequence[bytes],
    trust: TrustStore,
    at: datetime.datetime,
) -> CertifiedAk:
    """Verify ``ak_cert`` (DER) to a root of ``trust``; intermediates from the document and the store."""
    leaf = load_certificates(ak_cert, max_certs=1)[0]
    carried = [load_certificates(c, max_certs=1)[0] for c in intermediates]
    roots = [e.certificate for e in trust if e.role is Role.ROOT]
    names = [e.name for e in trust if e.role is Role.ROOT]
    known = [e.certificate for e in trust if e.role is Role.INTERMEDIATE]
    path = verify_path(leaf, [*known, *carried], roots, at, root_names=names)
    try:
        key = leaf.public_key()
    except ValueError as exc:
        raise MalformedEvidence(f"AK certificate: public key does not parse: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise UntrustedKey(f"AK certificate: {type(key).__name__} is not an AK key type")
    extension: GceAkCertificateInfo | None = None
    try:
        ext = leaf.extensions.get_extension_for_oid(GCE_INSTANCE_EXTENSION_OID)
    except x509.ExtensionNotFound:
        ext = None
    if ext is not None and isinstance(ext.value, x509.UnrecognizedExtension):
        extension = parse_gce_instance_extension(ext.value.value)
    instance = extension.instance_info() if extension is not None and extension.is_production else None
    return CertifiedAk(key, path, instance, extension)


# --- the validators' AK decision ------------------------------------------------------------------------


def parse_gce_instance_info(data: bytes | object) -> GceInstanceInfo:
    """The GCE instance JSON (``attest.GCEInstanceInfo`` via encoding/json: snake_case keys)."""
    if isinstance(data, bytes):
        if len(data) > MAX_API_RESPONSE:
            raise MalformedEvidence(f"InstanceInfo: {len(data)} bytes, at most {MAX_API_RESPONSE}")
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise MalformedEvidence(f"InstanceInfo: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedEvidence("InstanceInfo: expected a JSON object with zone, project_id, instance_name")

    def text(key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str) or len(value) > 256:
            raise MalformedEvidence(f"InstanceInfo.{key}: expected a string")
        return value

    def number(key: str) -> int:
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise MalformedEvidence(f"InstanceInfo.{key}: expected an unsigned integer")
        return value

    return GceInstanceInfo(
        zone=text("zone"),
        project_id=text("project_id"),
        project_number=number("project_number"),
        instance_name=text("instance_name"),
        instance_id=number("instance_id"),
    )


def gce_trusted_ak(
    document: AttestationDocument,
    config: AttestationConfig,
    rec: CheckRecorder,
    *,
    instance: GceInstanceInfo | None,
    trust: TrustStore | None,
    identity: ShieldedInstanceIdentityClient | None,
    at: datetime.datetime,
) -> TpmPublic:
    """The AK, trusted through its certificate (offline) or the GCE API, then AK pins if any."""
    ak = rec.run("ak-parse", lambda: parse_tpmt_public(document.attestation.ak_pub), lambda k: f"AK {k.name().hex()}")
    att = document.attestation
    if trust is not None and att.ak_cert:
        _trust_by_certificate(
            ak,
            ak_cert=att.ak_cert,
            intermediates=att.intermediate_certs,
            trust=trust,
            instance=instance,
            rec=rec,
            at=at,
        )
    elif identity is not None:
        _trust_by_api(ak, identity, instance, rec)
    else:
        why = "the document carries no ak_cert" if trust is not None else "no Google EK/AK roots configured"
        rec.fail(
            "attestation-key",
            UntrustedKey(
                f"cannot establish trust in the AK: {why} and no GCE API client (getShieldedInstanceIdentity) "
                "is configured"
            ),
        )
    if config.accepted_ak_names:
        if ak.name() not in config.accepted_ak_names:
            rec.fail("attestation-key-pin", UntrustedKey(f"AK {ak.name().hex()} is not among the accepted AKs"))
        rec.add("attestation-key-pin", CheckStatus.PASS, f"AK {ak.name().hex()} is pinned")
    return ak


def _trust_by_certificate(
    ak: TpmPublic,
    *,
    ak_cert: bytes,
    intermediates: Sequence[bytes],
    trust: TrustStore,
    instance: GceInstanceInfo | None,
    rec: CheckRecorder,
    at: datetime.datetime,
) -> None:
    certified = rec.run(
        "ak-certificate",
        lambda: verify_gce_ak_certificate(ak_cert, intermediates, trust, at),
        lambda c: f"chain {c.path.describe()} valid at {at.isoformat()}",
    )
    if not public_keys_equal(ak, certified.public_key):
        rec.fail("attestation-key", UntrustedKey("ak_pub is not the key of the AK certificate"))
    rec.add("attestation-key", CheckStatus.PASS, "ak_pub is the certified AK")
    if certified.instance is None:
        rec.add("ak-instance", CheckStatus.WARN, "AK certificate has no production instance identity (isProduction)")
        return
    cert_info = certified.instance
    if instance is not None:
        for field in ("project_id", "zone", "instance_name"):
            claimed, certified_value = getattr(instance, field), getattr(cert_info, field)
            if claimed and claimed != certified_value:
                rec.fail(
                    "ak-instance",
                    UntrustedKey(
                        f"InstanceInfo.{field} {claimed!r} differs from the AK certificate's {certified_value!r}"
                    ),
                )
    rec.add(
        "ak-instance",
        CheckStatus.PASS,
        f"{cert_info.project_id}/{cert_info.zone}/{cert_info.instance_name} (id {cert_info.instance_id})",
    )


def _trust_by_api(
    ak: TpmPublic, identity: ShieldedInstanceIdentityClient, instance: GceInstanceInfo | None, rec: CheckRecorder
) -> None:
    if instance is None or not (instance.project_id and instance.zone and instance.instance_name):
        rec.fail("attestation-key", MalformedEvidence("InstanceInfo lacks project_id, zone or instance_name"))
    info = instance
    key = rec.run(
        "ak-gce-api",
        lambda: identity.signing_key(info.project_id, info.zone, info.instance_name),
        lambda _: f"getShieldedInstanceIdentity({info.project_id}/{info.zone}/{info.instance_name})",
    )
    if not public_keys_equal(ak, key):
        rec.fail("attestation-key", UntrustedKey("ak_pub is not the instance's signingKey from the GCE API"))
    rec.add("attestation-key", CheckStatus.PASS, "ak_pub is the GCE API's signing key for the instance")
