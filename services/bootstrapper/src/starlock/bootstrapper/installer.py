"""Installing the Kubernetes components a node is given (spec §1.1, §5.4 step 1).

Each ``components.Component``: ``url`` (``https://`` or an inline ``data:`` URL), ``hash``
(``sha256:<64 lower-case hex>`` of the downloaded bytes), ``install_path``, ``extract`` (a
tar.gz unpacked into ``install_path``). The bytes are streamed into a temporary file beside the
destination while hashed, bounded in size, compared in constant time, and only then moved into
place (files mode 0544, as upstream) or unpacked (tar members filtered: no absolute paths, no
``..``, no links out of the directory, no device files, no set-uid bits). Plain ``http://`` is
refused: the hash protects the bytes, but nothing on a node is fetched in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import ssl
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["MAX_COMPONENT_BYTES", "InstallError", "install_components"]

MAX_COMPONENT_BYTES = 1024 * 1024 * 1024
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_CHUNK = 1024 * 1024


class InstallError(Exception):
    """A component could not be fetched, did not match its hash, or could not be installed."""


def _data_url(url: str) -> bytes:
    header, sep, payload = url[len("data:") :].partition(",")
    if not sep:
        raise InstallError("a data: URL without a comma")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise InstallError("a data: URL with invalid base64") from None
    return urllib.parse.unquote_to_bytes(payload)


def _open(url: str, context: ssl.SSLContext | None, timeout: float) -> IO[bytes]:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https":
        raise InstallError(f"component URL scheme {scheme or '(none)'!r} is not allowed; use https or data")
    handler = urllib.request.HTTPSHandler(context=context or ssl.create_default_context())
    opener = urllib.request.build_opener(handler)
    try:
        response: IO[bytes] = opener.open(url, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise InstallError(f"fetching {url}: {type(exc).__name__}: {exc}") from None
    return response


def _fetch_to(url: str, out: IO[bytes], context: ssl.SSLContext | None, timeout: float, limit: int) -> str:
    digest = hashlib.sha256()
    if url.startswith("data:"):
        data = _data_url(url)
        if len(data) > limit:
            raise InstallError(f"component larger than {limit} bytes")
        digest.update(data)
        out.write(data)
        return "sha256:" + digest.hexdigest()
    total = 0
    with _open(url, context, timeout) as response:
        while chunk := response.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise InstallError(f"{url}: larger than {limit} bytes")
            digest.update(chunk)
            out.write(chunk)
    return "sha256:" + digest.hexdigest()


def _safe_extract(archive: Path, destination: Path) -> None:
    destination.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # the "data" filter refuses absolute names, "..", links leaving the directory and
            # device files, and clears set-uid/set-gid bits
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InstallError(f"unpacking into {destination}: {type(exc).__name__}: {exc}") from None


def install_components(
    components: Iterable[Any],
    *,
    root: Path = Path("/"),
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 300.0,
    limit: int = MAX_COMPONENT_BYTES,
) -> list[Path]:
    """Install every component under ``root``; returns the installed paths. All or nothing per
    component: a mismatch leaves nothing at its install path."""
    installed: list[Path] = []
    for component in components:
        expected = str(component.hash)
        if not _HASH.fullmatch(expected):
            raise InstallError(f"component hash {expected[:80]!r} is not sha256:<64 lower-case hex>")
        install_path = str(component.install_path)
        relative = Path(install_path.lstrip("/"))
        if not install_path.startswith("/") or ".." in relative.parts or not relative.parts:
            raise InstallError(f"install path {install_path!r} is not an absolute path")
        target = root / relative
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".starlock-component-", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                actual = _fetch_to(str(component.url), out, ssl_context, timeout, limit)
            if not hmac.compare_digest(actual, expected):
                raise InstallError(f"component for {install_path}: hash mismatch (got {actual})")
            if component.extract:
                _safe_extract(tmp, target)
            else:
                tmp.chmod(0o544)
                tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        installed.append(target)
    return installed
