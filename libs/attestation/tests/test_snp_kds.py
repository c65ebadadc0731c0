"""Tests for starlock.attestation.snp.kds: the AMD KDS adapter against a local HTTPS server.

The server listens on 127.0.0.1 only, with a certificate from a CA generated here; the client
trusts that CA through its ``ssl_context``. It follows the KDS URL scheme (spec-attestation §3) and
serves, read in place from the vectors: the real Milan/Genoa/Turin ``cert_chain`` bundles
(``other/amd-kds-roots/``, MANIFEST "Trust anchors (other/)") and the real VCEK of
``snp/gosevguest-milan-vcek`` (MANIFEST family ``snp``: chip_id 3ac3fe21…, reported TCB bl=2 tee=0
snp=5 ucode=68). Time is a fake clock, so back-off and pacing cost no real seconds.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import http.server
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from tls_helpers import make_test_tls

from starlock.attestation.errors import CertificateChainError, ConfigError, MalformedEvidence
from starlock.attestation.snp import Product, SigningKey, SnpPolicy, TcbParts, TcbVersion, kds, verify_report
from starlock.attestation.snp.kds import (
    CertificateCache,
    DirectoryCache,
    KdsClient,
    KdsError,
    KdsNotFound,
    KdsOfflineError,
    KdsUnavailable,
    MemoryCache,
    ProductChain,
    RetryPolicy,
    cert_chain_url,
    parse_retry_after,
    vcek_url,
)
from starlock.attestation.trust import fingerprint, load_certificates

UTC = datetime.UTC
GOSEV = ("snp", "gosevguest-milan-vcek")
# MANIFEST family snp, snp/gosevguest-milan-vcek: chip_id and reported TCB of attestation.bin.
GOSEV_CHIP_ID = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
    "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)
GOSEV_VCEK_PATH = f"/vcek/v1/Milan/{GOSEV_CHIP_ID}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"
MILAN_CHAIN_PATH = "/vcek/v1/Milan/cert_chain"
BUNDLES = {
    (Product.MILAN, SigningKey.VCEK): "ask_ark_milan.pem",
    (Product.MILAN, SigningKey.VLEK): "ask_ark_milan_vlek.pem",
    (Product.GENOA, SigningKey.VCEK): "ask_ark_genoa.pem",
    (Product.GENOA, SigningKey.VLEK): "ask_ark_genoa_vlek.pem",
    (Product.TURIN, SigningKey.VCEK): "ask_ark_turin_vcek.pem",
    (Product.TURIN, SigningKey.VLEK): "ask_ark_turin_vlek.pem",
}
POLICY = RetryPolicy(min_interval=1.0, initial_backoff=2.0, max_backoff=8.0, max_attempts=4, max_total_wait=30.0)


# --- vectors -------------------------------------------------------------------------------------


def bundle(vectors: Path, product: Product, key: SigningKey = SigningKey.VCEK) -> bytes:
    return (vectors / "other" / "amd-kds-roots" / BUNDLES[(product, key)]).read_bytes()


def gosev_report(vectors: Path) -> tuple[bytes, TcbVersion]:
    """CHIP_ID (0x1A0, 64 bytes) and REPORTED_TCB (0x180, u64 LE) read from the vector's report."""
    report = (vectors.joinpath(*GOSEV) / "attestation.bin").read_bytes()
    return report[0x1A0:0x1E0], TcbVersion(int.from_bytes(report[0x180:0x188], "little"))


def gosev_vcek(vectors: Path) -> bytes:
    return (vectors.joinpath(*GOSEV) / "vcek.testcer").read_bytes()


# --- a local KDS ---------------------------------------------------------------------------------

Reply = tuple[int, dict[str, str], bytes]


class FakeKds:
    """Routes ``path?query`` to a list of replies (the last one repeats); records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.url = ""

    def reset(self) -> None:
        with self.lock:
            self.routes, self.requests, self.delay = {}, [], 0.0

    def serve(self, path: str, *replies: Reply | bytes) -> None:
        self.routes[path] = [(200, {}, r) if isinstance(r, bytes) else r for r in replies]

    def reply(self, path: str) -> Reply:
        with self.lock:
            self.requests.append(path)
            queue = self.routes.get(path)
            if not queue:
                return 404, {}, b"Not Found"
            return queue.pop(0) if len(queue) > 1 else queue[0]


def _make_tls(tmp: Path) -> tuple[ssl.SSLContext, str]:
    """A CA and a 127.0.0.1 server certificate: (server context, CA PEM); see tls_helpers."""
    tls = make_test_tls(tmp)
    return tls.server_context, tls.ca_pem


@pytest.fixture(scope="module")
def kds_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKds, str]]:
    fake = FakeKds()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = fake.reply(self.path)
            if fake.delay:
                time.sleep(fake.delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server_context, ca_pem = _make_tls(tmp_path_factory.mktemp("kds-tls"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    fake.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, ca_pem
    server.shutdown()
    server.server_close()


class FakeTime:
    """Monotonic clock, sleep and wall clock that move only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()
        self.epoch = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def wall(self) -> datetime.datetime:
        return self.epoch + datetime.timedelta(seconds=self.clock() - 1000.0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def kds_fake(kds_server: tuple[FakeKds, str]) -> FakeKds:
    kds_server[0].reset()
    return kds_server[0]


@pytest.fixture
def client_context(kds_server: tuple[FakeKds, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=kds_server[1])


@pytest.fixture
def make_client(kds_fake: FakeKds, client_context: ssl.SSLContext, fake_time: FakeTime) -> Callable[..., KdsClient]:
    def make(cache: CertificateCache | None = None, **kwargs: Any) -> KdsClient:
        kwargs.setdefault("base_url", kds_fake.url)
        kwargs.setdefault("ssl_context", client_context)
        kwargs.setdefault("proxies", {})
        kwargs.setdefault("retry", POLICY)
        kwargs.setdefault("timeout", 5.0)
        return KdsClient(cache, clock=fake_time.clock, sleep=fake_time.sleep, wall_clock=fake_time.wall, **kwargs)

    return make


def serve_gosev(fake: FakeKds, vectors: Path) -> None:
    fake.serve(MILAN_CHAIN_PATH, bundle(vectors, Product.MILAN))
    fake.serve(GOSEV_VCEK_PATH, gosev_vcek(vectors))


# --- URLs and TCB (pure) -------------------------------------------------------------------------


def test_vcek_url_from_the_vector_report(vectors: Path) -> None:
    """snp/gosevguest-milan-vcek: URL built from the report's CHIP_ID and REPORTED_TCB (§3)."""
    chip_id, tcb = gosev_report(vectors)
    expected = json.loads((vectors / "EXPECTED.json").read_text())["results"]["snp/gosevguest-milan-vcek"]
    assert chip_id.hex() == expected["fields"]["chip_id"] == GOSEV_CHIP_ID
    assert tcb.raw == expected["fields"]["reported_tcb"]
    assert tcb.parts() == TcbParts(bootloader=2, tee=0, snp=5, microcode=68)
    assert expected["tcb"]["reported_tcb"] == {"bl": 2, "tee": 0, "snp": 5, "ucode": 68}
    assert vcek_url(Product.MILAN, chip_id, tcb) == "https://kdsintf.amd.com" + GOSEV_VCEK_PATH
    assert vcek_url("Milan-B0", chip_id, tcb.parts()) == "https://kdsintf.amd.com" + GOSEV_VCEK_PATH
    assert cert_chain_url("milan") == "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
    assert cert_chain_url(Product.GENOA, SigningKey.VLEK, base_url="https://kds.test/") == (
        "https://kds.test/vlek/v1/Genoa/cert_chain"
    )


def test_turin_url_uses_8_byte_hwid_and_fmc() -> None:
    chip_id = bytes(range(1, 9)) + bytes(56)
    tcb = TcbVersion(int.from_bytes(bytes([7, 1, 2, 3, 0, 0, 0, 0x50]), "little"))  # Turin layout, spec §1.3
    url = vcek_url(Product.TURIN, chip_id, tcb)
    assert (
        url == "https://kdsintf.amd.com/vcek/v1/Turin/0102030405060708?blSPL=1&teeSPL=2&snpSPL=3&ucodeSPL=80&fmcSPL=7"
    )
    assert vcek_url("Turin", chip_id[:8], TcbParts(bootloader=1, tee=2, snp=3, microcode=0x50, fmc=7)) == url
    with pytest.raises(MalformedEvidence, match=r"bytes 8\.\.63 zero"):
        vcek_url(Product.TURIN, bytes(range(1, 65)), tcb)


def test_url_inputs_are_checked() -> None:
    tcb = TcbParts(bootloader=2, tee=0, snp=5, microcode=68)
    with pytest.raises(MalformedEvidence, match="all zero"):
        vcek_url(Product.MILAN, bytes(64), tcb)
    with pytest.raises(MalformedEvidence, match="expected 64 bytes, got 8"):
        vcek_url(Product.GENOA, bytes(range(8)), tcb)
    with pytest.raises(ConfigError, match="fmcSPL is required"):
        vcek_url(Product.TURIN, bytes(range(1, 9)), tcb)
    with pytest.raises(ConfigError, match="fmcSPL is not used"):
        vcek_url(Product.MILAN, bytes(range(64)), TcbParts(bootloader=2, tee=0, snp=5, microcode=68, fmc=1))
    with pytest.raises(ConfigError, match="https"):
        cert_chain_url(Product.MILAN, base_url="http://kdsintf.amd.com")
    with pytest.raises(ConfigError, match="AMD product"):
        cert_chain_url("Naples")
    with pytest.raises(MalformedEvidence, match="microcode"):
        vcek_url(Product.MILAN, bytes(range(64)), TcbParts(bootloader=2, tee=0, snp=5, microcode=256))
    with pytest.raises(ConfigError, match="VCEK or VLEK"):
        cert_chain_url(Product.MILAN, SigningKey.NONE)
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="min_interval"):
        RetryPolicy(min_interval=float("nan"))


@given(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from(list(Product)))
def test_vcek_url_query_follows_the_tcb_layout(value: int, product: Product) -> None:
    """spec §1.3 / §3: SPLs as decimal integers taken from REPORTED_TCB with the product's layout."""
    b = value.to_bytes(8, "little")
    url = vcek_url(product, bytes(range(1, 9)) + bytes(56), TcbVersion(value))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, strict_parsing=True))
    if product is Product.TURIN:
        assert query == {
            "fmcSPL": str(b[0]),
            "blSPL": str(b[1]),
            "teeSPL": str(b[2]),
            "snpSPL": str(b[3]),
            "ucodeSPL": str(b[7]),
        }
    else:
        assert query == {"blSPL": str(b[0]), "teeSPL": str(b[1]), "snpSPL": str(b[6]), "ucodeSPL": str(b[7])}


# --- untrusted-input parsers (hypothesis) --------------------------------------------------------

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@given(st.text(max_size=80))
def test_retry_after_never_raises(text: str) -> None:
    result = parse_retry_after(text, NOW)
    assert result is None or 0.0 <= result <= 86400.0 * 365


@given(st.integers(min_value=0, max_value=10**15))
def test_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(f" {seconds} ", NOW) == min(float(seconds), 86400.0 * 365)


@given(st.integers(min_value=-(10**6), max_value=10**7))
def test_retry_after_http_date(offset: int) -> None:
    header = email.utils.format_datetime(NOW + datetime.timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(header, NOW) == float(max(offset, 0))


def test_retry_after_rejects_junk() -> None:
    for junk in ("", "-5", "1.5", "soon", "٣", "Mon, 99 Foo 2026 12:00:00 GMT", "1" * 100):
        assert parse_retry_after(junk, NOW) is None, junk


# --- cert_chain ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("product", "key"), list(BUNDLES))
def test_cert_chain_per_product(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], product: Product, key: SigningKey
) -> None:
    """other/amd-kds-roots bundles: fetched, checked against the pins, cached (one request)."""
    kds_fake.serve(f"/{key.name.lower()}/v1/{product}/cert_chain", bundle(vectors, product, key))
    client = make_client()
    chain = client.cert_chain(product, key)
    assert [c.fingerprint(hashes.SHA256()).hex() for c in (chain.intermediate, chain.ark)] == [
        fingerprint(c) for c in load_certificates(bundle(vectors, product, key))
    ]
    assert client.cert_chain(product.value.lower(), key).intermediate == chain.intermediate
    assert kds_fake.requests == [f"/{key.name.lower()}/v1/{product}/cert_chain"]


def test_unpinned_chain_refused_and_not_cached(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]
) -> None:
    cache = MemoryCache()
    client = make_client(cache)
    ark_key, ask_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ark_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ARK-Milan")])
    ask_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SEV-Milan")])

    def cert(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, signer: Any) -> bytes:
        built = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime.datetime(2045, 1, 1, tzinfo=UTC))
            .sign(signer, hashes.SHA384())
        )
        return built.public_bytes(serialization.Encoding.PEM)

    forged = cert(ask_name, ark_name, ask_key, ark_key) + cert(ark_name, ark_name, ark_key, ark_key)
    kds_fake.serve(MILAN_CHAIN_PATH, forged)
    with pytest.raises(CertificateChainError, match="not pinned"):
        client.cert_chain(Product.MILAN)
    assert cache.get("cert_chain-vcek-Milan") is None
    # Real but wrong: the Genoa chain, the VLEK chain, ARK before ASK, the ARK alone.
    milan = load_certificates(bundle(vectors, Product.MILAN))
    wrong = {
        "pinned as ASK-Genoa": bundle(vectors, Product.GENOA),
        "pinned as ASVK-Milan": bundle(vectors, Product.MILAN, SigningKey.VLEK),
        "pinned as ARK-Milan": b"".join(c.public_bytes(serialization.Encoding.PEM) for c in reversed(milan)),
        "expected 2 certificates": milan[1].public_bytes(serialization.Encoding.PEM),
    }
    for message, body in wrong.items():
        kds_fake.serve(MILAN_CHAIN_PATH, body)
        with pytest.raises(CertificateChainError, match=message):
            client.cert_chain(Product.MILAN)
        assert cache.get("cert_chain-vcek-Milan") is None


# --- VCEK ----------------------------------------------------------------------------------------


def test_vcek_of_the_vector(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], tmp_path: Path
) -> None:
    """snp/gosevguest-milan-vcek: the server receives the exact KDS URL; the VCEK is verified and cached."""
    serve_gosev(kds_fake, vectors)
    chip_id, tcb = gosev_report(vectors)
    client = make_client(DirectoryCache(tmp_path / "cache"))
    cert = client.vcek(Product.MILAN, chip_id, tcb)
    assert fingerprint(cert) == hashlib.sha256(gosev_vcek(vectors)).hexdigest()
    assert kds_fake.requests == [MILAN_CHAIN_PATH, GOSEV_VCEK_PATH]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(kds_fake.requests[1]).query)
    assert query == {"blSPL": ["2"], "teeSPL": ["0"], "snpSPL": ["5"], "ucodeSPL": ["68"]}
    # A second client on the same directory, offline, gets both from the cache.
    again = make_client(DirectoryCache(tmp_path / "cache"), offline=True)
    assert again.vcek(Product.MILAN, chip_id, tcb) == cert
    assert len(kds_fake.requests) == 2
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        ["cert_chain-vcek-Milan", f"vcek-Milan-{GOSEV_CHIP_ID}-blSPL2-teeSPL0-snpSPL5-ucodeSPL68"]
    )


def test_vcek_that_does_not_chain_is_refused(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]
) -> None:
    """snp/trustee-milan-vcek synthetic extras are not signed by the Milan ASK (MANIFEST); a real
    VCEK of another chip chains but names another hwID; the Genoa ASK does not sign a Milan VCEK."""
    chip_id, tcb = gosev_report(vectors)
    trustee = vectors / "snp" / "trustee-milan-vcek"
    cache = MemoryCache()
    client = make_client(cache)
    kds_fake.serve(MILAN_CHAIN_PATH, bundle(vectors, Product.MILAN))
    cases = {
        "test-vcek-invalid-legacy.der": "not accepted with the Milan ASK and ARK",
        "test-vcek-invalid-new.der": "not accepted with the Milan ASK and ARK",
        "test-vcek.der": f"hwID c38427a3[0-9a-f]+, expected {GOSEV_CHIP_ID}",
    }
    for name, message in cases.items():
        kds_fake.serve(GOSEV_VCEK_PATH, (trustee / name).read_bytes())
        with pytest.raises(CertificateChainError, match=message):
            client.vcek(Product.MILAN, chip_id, tcb)
    genoa_ask = load_certificates(bundle(vectors, Product.GENOA))[0]
    milan_ark = load_certificates(bundle(vectors, Product.MILAN))[1]
    kds_fake.serve(GOSEV_VCEK_PATH, gosev_vcek(vectors))
    with pytest.raises(CertificateChainError, match="expected the pinned ASK-Milan"):
        client.vcek(
            Product.MILAN, chip_id, tcb, chain=ProductChain(Product.MILAN, SigningKey.VCEK, genoa_ask, milan_ark)
        )
    # Asking for another TCB than the certificate's: the server answers with this VCEK anyway.
    other = TcbParts(bootloader=2, tee=0, snp=5, microcode=69)
    kds_fake.serve(GOSEV_VCEK_PATH.replace("ucodeSPL=68", "ucodeSPL=69"), gosev_vcek(vectors))
    with pytest.raises(
        CertificateChainError, match="TCB bl=2 tee=0 snp=5 ucode=68, expected bl=2 tee=0 snp=5 ucode=69"
    ):
        client.vcek(Product.MILAN, chip_id, other)
    assert [k for k in cache._data if k.startswith("vcek")] == []


def test_vcek_404_is_not_found_without_retries(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    kds_fake.serve(MILAN_CHAIN_PATH, bundle(vectors, Product.MILAN))
    chip_id, tcb = gosev_report(vectors)
    with pytest.raises(
        KdsNotFound,
        match=rf"KDS has no VCEK for Milan hwID {GOSEV_CHIP_ID} at TCB "
        r"blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68 \(HTTP 404 ",
    ):
        make_client().vcek(Product.MILAN, chip_id, tcb)
    assert kds_fake.requests == [MILAN_CHAIN_PATH, GOSEV_VCEK_PATH]
    assert fake_time.sleeps == [POLICY.min_interval]  # only the pacing between the two requests


def test_turin_vcek_request_url(vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]) -> None:
    """Turin (spec §8): 8-byte hwID in the path and fmcSPL in the query, checked at the server."""
    kds_fake.serve("/vcek/v1/Turin/cert_chain", bundle(vectors, Product.TURIN))
    tcb = TcbParts(bootloader=3, tee=0, snp=9, microcode=200, fmc=1)
    with pytest.raises(KdsNotFound):
        make_client().vcek(Product.TURIN, bytes.fromhex("a1b2c3d4e5f60718") + bytes(56), tcb)
    assert kds_fake.requests[-1] == "/vcek/v1/Turin/a1b2c3d4e5f60718?blSPL=3&teeSPL=0&snpSPL=9&ucodeSPL=200&fmcSPL=1"


# --- throttling and retries ----------------------------------------------------------------------


def test_429_retry_after_seconds_then_success(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    kds_fake.serve(MILAN_CHAIN_PATH, (429, {"Retry-After": "7"}, b""), bundle(vectors, Product.MILAN))
    make_client().cert_chain(Product.MILAN)
    assert kds_fake.requests == [MILAN_CHAIN_PATH] * 2
    assert fake_time.sleeps == [7.0]


def test_429_retry_after_http_date_then_success(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    when = email.utils.format_datetime(fake_time.wall() + datetime.timedelta(seconds=12), usegmt=True)
    kds_fake.serve(MILAN_CHAIN_PATH, (429, {"Retry-After": when}, b""), bundle(vectors, Product.MILAN))
    make_client().cert_chain(Product.MILAN)
    assert kds_fake.requests == [MILAN_CHAIN_PATH] * 2
    assert fake_time.sleeps == [12.0]


def test_500_then_success_with_backoff(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    error: Reply = (500, {}, b"oops")
    kds_fake.serve(MILAN_CHAIN_PATH, error, error, (429, {}, b""), bundle(vectors, Product.MILAN))
    make_client().cert_chain(Product.MILAN)
    assert len(kds_fake.requests) == 4
    assert fake_time.sleeps == [2.0, 4.0, 8.0]  # initial_backoff doubling, capped at max_backoff


def test_retries_are_bounded(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    kds_fake.serve(MILAN_CHAIN_PATH, (503, {}, b""))
    with pytest.raises(KdsUnavailable, match="failed 4 times; last: HTTP 503"):
        make_client().cert_chain(Product.MILAN)
    assert len(kds_fake.requests) == POLICY.max_attempts
    assert sum(fake_time.sleeps) <= POLICY.max_total_wait

    kds_fake.reset()
    kds_fake.serve(MILAN_CHAIN_PATH, (429, {"Retry-After": "3600"}, b""))
    start = fake_time.clock()
    with pytest.raises(KdsUnavailable, match=r"waiting 3600.0s more would exceed the bound of 30.0s"):
        make_client().cert_chain(Product.MILAN)
    assert kds_fake.requests == [MILAN_CHAIN_PATH]
    assert fake_time.clock() == start


def test_requests_are_paced(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    for product in (Product.MILAN, Product.GENOA, Product.TURIN):
        kds_fake.serve(f"/vcek/v1/{product}/cert_chain", bundle(vectors, product))
    client = make_client()
    for product in (Product.MILAN, Product.GENOA, Product.TURIN):
        client.cert_chain(product)
    assert fake_time.sleeps == [1.0, 1.0]


def test_other_http_errors(vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]) -> None:
    client = make_client()
    for reply, message in [
        ((403, {}, b""), "HTTP 403"),
        ((302, {"Location": "http://127.0.0.1:1/"}, b""), "HTTP 302"),
        ((200, {}, b"x" * (kds.MAX_RESPONSE_SIZE + 1)), "more than 65536"),
    ]:
        kds_fake.reset()
        kds_fake.serve(MILAN_CHAIN_PATH, reply)
        with pytest.raises(KdsError, match=message):
            client.cert_chain(Product.MILAN)
        assert kds_fake.requests == [MILAN_CHAIN_PATH]
    kds_fake.serve(MILAN_CHAIN_PATH, b"<html>maintenance</html>")
    with pytest.raises(MalformedEvidence, match=r"KDS response from https://127\.0\.0\.1"):
        client.cert_chain(Product.MILAN)


def test_tls_is_verified(vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]) -> None:
    kds_fake.serve(MILAN_CHAIN_PATH, bundle(vectors, Product.MILAN))
    with pytest.raises(KdsError, match="TLS certificate verification failed"):
        make_client(ssl_context=ssl.create_default_context()).cert_chain(Product.MILAN)
    assert kds_fake.requests == []  # refused in the handshake, never retried
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigError, match="verification must be on"):
        make_client(ssl_context=unverified)


# --- caching -------------------------------------------------------------------------------------


def test_concurrent_callers_share_one_fetch(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], tmp_path: Path
) -> None:
    serve_gosev(kds_fake, vectors)
    kds_fake.delay = 0.2
    chip_id, tcb = gosev_report(vectors)
    client = make_client(DirectoryCache(tmp_path))
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(fingerprint(client.vcek(Product.MILAN, chip_id, tcb)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []
    assert results == [hashlib.sha256(gosev_vcek(vectors)).hexdigest()] * 8
    assert kds_fake.requests == [MILAN_CHAIN_PATH, GOSEV_VCEK_PATH]


def test_corrupt_cache_entry_is_refetched(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], tmp_path: Path
) -> None:
    serve_gosev(kds_fake, vectors)
    chip_id, tcb = gosev_report(vectors)
    make_client(DirectoryCache(tmp_path)).vcek(Product.MILAN, chip_id, tcb)
    vcek_file = tmp_path / f"vcek-Milan-{GOSEV_CHIP_ID}-blSPL2-teeSPL0-snpSPL5-ucodeSPL68"
    chain_file = tmp_path / "cert_chain-vcek-Milan"
    vcek_file.write_bytes(gosev_vcek(vectors)[:-10])  # truncated DER
    chain_file.write_bytes(bundle(vectors, Product.GENOA))  # parses, but the wrong pins
    kds_fake.requests.clear()
    cert = make_client(DirectoryCache(tmp_path)).vcek(Product.MILAN, chip_id, tcb)
    assert kds_fake.requests == [MILAN_CHAIN_PATH, GOSEV_VCEK_PATH]
    assert vcek_file.read_bytes() == gosev_vcek(vectors) == cert.public_bytes(serialization.Encoding.DER)
    assert chain_file.read_bytes() == bundle(vectors, Product.MILAN)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_directory_cache(tmp_path: Path) -> None:
    cache = DirectoryCache(tmp_path / "d")
    assert isinstance(cache, CertificateCache)
    assert cache.get("missing") is None
    cache.put("a.b-c_d", b"one")
    cache.put("a.b-c_d", b"two")
    assert cache.get("a.b-c_d") == b"two"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["a.b-c_d"]
    for bad in ("../x", ".hidden", "a/b", "", "x" * 254):
        with pytest.raises(ConfigError, match="cache key"):
            cache.get(bad)
    (tmp_path / "d" / "big").write_bytes(b"x" * (kds.MAX_RESPONSE_SIZE + 1))
    assert cache.get("big") is None


# --- offline and evidence-supplied certificates --------------------------------------------------


def test_offline_never_fetches(vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]) -> None:
    serve_gosev(kds_fake, vectors)
    client = make_client(offline=True)
    chip_id, tcb = gosev_report(vectors)
    with pytest.raises(
        KdsOfflineError, match=r"offline: vcek cert_chain for Milan is not cached.*/vcek/v1/Milan/cert_chain"
    ):
        client.vcek(Product.MILAN, chip_id, tcb)
    with pytest.raises(KdsOfflineError):
        client.certificates(Product.MILAN, signer=gosev_vcek(vectors))
    assert kds_fake.requests == []


def test_certificates_from_evidence_fetch_only_what_is_missing(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]
) -> None:
    """snp/gosevguest-milan-vcek carries vcek.testcer and milan.testcer (= ASK+ARK, MANIFEST)."""
    ask, ark = load_certificates((vectors.joinpath(*GOSEV) / "milan.testcer").read_bytes())
    chip_id, tcb = gosev_report(vectors)
    offline = make_client(offline=True)
    full = offline.certificates(Product.MILAN, signer=gosev_vcek(vectors), intermediate=ask, ark=ark)
    assert full.certificates == (load_certificates(gosev_vcek(vectors))[0], ask, ark)
    serve_gosev(kds_fake, vectors)
    online = make_client()
    fetched = online.certificates(Product.MILAN, intermediate=ask, ark=ark, chip_id=chip_id, tcb=tcb)
    assert fetched.signer == full.signer
    assert kds_fake.requests == [GOSEV_VCEK_PATH]  # ASK and ARK came from the evidence
    assert online.certificates(Product.MILAN, signer=gosev_vcek(vectors)).chain.ark == ark
    assert kds_fake.requests == [GOSEV_VCEK_PATH, MILAN_CHAIN_PATH]

    asvk = load_certificates(bundle(vectors, Product.MILAN, SigningKey.VLEK))[0]
    with pytest.raises(CertificateChainError, match="expected the pinned ASK-Milan"):
        offline.certificates(Product.MILAN, signer=gosev_vcek(vectors), intermediate=asvk, ark=ark)
    with pytest.raises(KdsError, match="VLEK for Milan: not in the evidence"):
        offline.certificates(Product.MILAN, signing_key=SigningKey.VLEK, intermediate=asvk, ark=ark)
    with pytest.raises(ConfigError, match="needs chip_id and tcb"):
        offline.certificates(Product.MILAN, intermediate=ask, ark=ark)


def test_pacing_and_network_errors_are_bounded(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient], fake_time: FakeTime
) -> None:
    for product in (Product.MILAN, Product.GENOA):
        kds_fake.serve(f"/vcek/v1/{product}/cert_chain", bundle(vectors, product))
    slow = make_client(retry=RetryPolicy(min_interval=100.0, max_total_wait=30.0))
    slow.cert_chain(Product.MILAN)
    with pytest.raises(KdsUnavailable, match=r"next request slot is 100\.0s away, beyond the bound of 30\.0s"):
        slow.cert_chain(Product.GENOA)
    assert len(kds_fake.requests) == 1
    # Nothing listens on port 1 of 127.0.0.1: connection refused, retried with back-off, then given up.
    unreachable = make_client(base_url="https://127.0.0.1:1")
    with pytest.raises(KdsUnavailable, match="failed 4 times; last: network error"):
        unreachable.cert_chain(Product.MILAN)


def test_fetched_certificates_verify_the_vector_report(
    vectors: Path, kds_fake: FakeKds, make_client: Callable[..., KdsClient]
) -> None:
    """snp/gosevguest-milan-vcek, Expected ACCEPT (DEBUG policy allowed here): the report alone plus
    what the KDS serves is enough for the report verification."""
    serve_gosev(kds_fake, vectors)
    report = (vectors.joinpath(*GOSEV) / "attestation.bin").read_bytes()
    chip_id, tcb = gosev_report(vectors)
    certs = make_client().certificates(Product.MILAN, chip_id=chip_id, tcb=tcb)
    result = verify_report(
        report,
        certs.signer,
        [certs.chain.intermediate, certs.chain.ark],
        SnpPolicy(allow_debug=True),
        at=datetime.datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert (result.product, result.signing_key) == (Product.MILAN, SigningKey.VCEK)
    assert kds_fake.requests == [MILAN_CHAIN_PATH, GOSEV_VCEK_PATH]
