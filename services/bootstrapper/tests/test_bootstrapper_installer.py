"""Installing components: https (a real TLS server) and data: URLs, sha256 checked, tar members filtered."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import ssl
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from starlock.bootstrapper.installer import InstallError, install_components
from starlock.joinproto import components_pb2

BINARY = b"\x7fELF not really a kubelet\n" * 100


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _component(url: str, data: bytes, path: str, *, extract: bool = False) -> components_pb2.Component:
    return components_pb2.Component(url=url, hash=_sha(data), install_path=path, extract=extract)


def _tar(members: dict[str, bytes], *, link: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o4755
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext, dict[str, bytes]]]:
    """A real HTTPS server (its own CA-less self-signed certificate) serving ``files``."""
    work = tmp_path_factory.mktemp("https")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    (work / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(work / "cert.pem", work / "key.pem")
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(work / "cert.pem"))
    yield f"https://127.0.0.1:{server.server_address[1]}", client_ctx, files
    server.shutdown()
    server.server_close()


def test_https_and_data_components_are_installed(
    https: tuple[str, ssl.SSLContext, dict[str, bytes]], tmp_path: Path
) -> None:
    base, ctx, files = https
    files["/kubelet"] = BINARY
    archive = _tar({"bin/bridge": b"cni bridge", "bin/loopback": b"cni loopback"})
    files["/cni.tgz"] = archive
    inline = b'{"apiVersion": "v1"}'
    components = [
        _component(f"{base}/kubelet", BINARY, "/run/state/bin/kubelet"),
        _component(f"{base}/cni.tgz", archive, "/opt/cni", extract=True),
        _component("data:application/json;base64," + base64.b64encode(inline).decode(), inline, "/opt/patch.json"),
        _component("data:,plain%20text", b"plain text", "/opt/plain.txt"),
    ]
    installed = install_components(components, root=tmp_path, ssl_context=ctx)
    assert installed == [tmp_path / "run/state/bin/kubelet", tmp_path / "opt/cni", tmp_path / "opt/patch.json",
                         tmp_path / "opt/plain.txt"]  # fmt: skip
    assert (tmp_path / "run/state/bin/kubelet").read_bytes() == BINARY
    assert (tmp_path / "run/state/bin/kubelet").stat().st_mode & 0o7777 == 0o544
    assert (tmp_path / "opt/cni/bin/bridge").read_bytes() == b"cni bridge"
    assert (tmp_path / "opt/cni/bin/bridge").stat().st_mode & 0o4000 == 0  # set-uid cleared
    assert (tmp_path / "opt/plain.txt").read_bytes() == b"plain text"


def test_a_server_certificate_not_trusted_is_refused(
    https: tuple[str, ssl.SSLContext, dict[str, bytes]], tmp_path: Path
) -> None:
    base, _, files = https
    files["/kubelet"] = BINARY
    with pytest.raises(InstallError, match=r"CERTIFICATE_VERIFY_FAILED|SSLCertVerificationError"):
        install_components([_component(f"{base}/kubelet", BINARY, "/k")], root=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: setattr(c, "hash", "sha256:" + "00" * 32), "hash mismatch"),
        (lambda c: setattr(c, "hash", c.hash[:-1]), "is not sha256"),  # truncated
        (lambda c: setattr(c, "hash", c.hash.upper().replace("SHA256", "sha256")), "is not sha256"),
        (lambda c: setattr(c, "hash", "sha512:" + "00" * 64), "is not sha256"),
        (lambda c: setattr(c, "hash", ""), "is not sha256"),
        (lambda c: setattr(c, "url", c.url.replace("https://", "http://")), "'http' is not allowed"),
        (lambda c: setattr(c, "url", "file:///etc/passwd"), "'file' is not allowed"),
        (lambda c: setattr(c, "install_path", "relative/k"), "not an absolute path"),
        (lambda c: setattr(c, "install_path", "/opt/../../etc/k"), "not an absolute path"),
        (lambda c: setattr(c, "install_path", "/"), "not an absolute path"),
    ],
)
def test_bad_components_install_nothing(
    https: tuple[str, ssl.SSLContext, dict[str, bytes]], tmp_path: Path, mutate: object, message: str
) -> None:
    base, ctx, files = https
    files["/kubelet"] = BINARY
    component = _component(f"{base}/kubelet", BINARY, "/opt/k")
    mutate(component)  # type: ignore[operator]
    with pytest.raises(InstallError, match=message):
        install_components([component], root=tmp_path, ssl_context=ctx)
    assert not (tmp_path / "opt" / "k").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_size_bound_and_hostile_archives(https: tuple[str, ssl.SSLContext, dict[str, bytes]], tmp_path: Path) -> None:
    base, ctx, files = https
    files["/big"] = BINARY
    with pytest.raises(InstallError, match="larger than 100 bytes"):
        install_components([_component(f"{base}/big", BINARY, "/big")], root=tmp_path, ssl_context=ctx, limit=100)
    for hostile in (_tar({"../escape": b"x"}), _tar({}, link=("evil", "/etc/passwd"))):
        url = "data:;base64," + base64.b64encode(hostile).decode()
        with pytest.raises(InstallError, match="unpacking"):
            install_components([_component(url, hostile, "/opt/x", extract=True)], root=tmp_path)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "opt" / "evil").exists()
    absolute = _tar({"/abs": b"x"})  # a leading slash is stripped: the member lands inside
    url = "data:;base64," + base64.b64encode(absolute).decode()
    install_components([_component(url, absolute, "/opt/z", extract=True)], root=tmp_path)
    assert (tmp_path / "opt" / "z" / "abs").read_bytes() == b"x"
    with pytest.raises(InstallError, match="invalid base64"):
        install_components([_component("data:;base64,!!!", b"", "/opt/y")], root=tmp_path)
