"""``kms://vault?...`` URIs: parsing into a typed :class:`VaultBackendConfig` (sans-IO).

Format (our own design; Constellation has no Vault backend)::

    kms://vault?address=<http(s)://host[:port]>&keyName=<transit key>
               [&transitMount=transit]
               [&tokenFile=<absolute path>  |  &token=<token>]
               [&kvMount=secret][&kvPrefix=starlock/dek]   (default store: KV v2)
               [&storeDir=<absolute path>]                   (directory store instead of KV)
               [&caFile=<absolute path>][&timeout=<seconds, default 10>]

Values are percent-decoded once (standard query-string rules). Every parameter may appear at
most once; unknown or empty parameters are errors. Errors are :class:`KmsConfigError` and name
the parameter, never a token.
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from starlock.kms.interface import KmsConfigError

__all__ = ["DEFAULT_KV_MOUNT", "DEFAULT_KV_PREFIX", "DEFAULT_TIMEOUT", "VaultBackendConfig", "parse_vault_uri"]

DEFAULT_TRANSIT_MOUNT = "transit"
DEFAULT_KV_MOUNT = "secret"
DEFAULT_KV_PREFIX = "starlock/dek"
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
MAX_URI_LENGTH = 8192
MAX_TOKEN_LENGTH = 4096

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no whitespace
_PARAMS = frozenset(
    {"address", "keyName", "transitMount", "token", "tokenFile", "kvMount", "kvPrefix", "storeDir", "caFile", "timeout"}
)


@dataclass(frozen=True, slots=True)
class VaultBackendConfig:
    """Typed ``kms://vault`` configuration. ``repr`` never shows the token.

    Exactly one of ``token``/``token_file`` is set. ``store_dir`` set selects the directory
    store; otherwise wrapped keys live in KV v2 at ``<kv_mount>/data/<kv_prefix>/<name>``.
    """

    address: str
    key_name: str
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    transit_mount: str = DEFAULT_TRANSIT_MOUNT
    kv_mount: str = DEFAULT_KV_MOUNT
    kv_prefix: str = DEFAULT_KV_PREFIX
    store_dir: str | None = None
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def to_uri(self) -> str:
        """The canonical ``kms://vault?...`` URI of this configuration (includes the token if set)."""
        params: list[tuple[str, str]] = [("address", self.address), ("keyName", self.key_name)]
        if self.transit_mount != DEFAULT_TRANSIT_MOUNT:
            params.append(("transitMount", self.transit_mount))
        if self.token is not None:
            params.append(("token", self.token))
        if self.token_file is not None:
            params.append(("tokenFile", self.token_file))
        if self.store_dir is not None:
            params.append(("storeDir", self.store_dir))
        else:
            if self.kv_mount != DEFAULT_KV_MOUNT:
                params.append(("kvMount", self.kv_mount))
            if self.kv_prefix != DEFAULT_KV_PREFIX:
                params.append(("kvPrefix", self.kv_prefix))
        if self.ca_file is not None:
            params.append(("caFile", self.ca_file))
        if self.timeout != DEFAULT_TIMEOUT:
            params.append(("timeout", repr(self.timeout)))
        return "kms://vault?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def parse_vault_uri(uri: str) -> VaultBackendConfig:
    """Parse a ``kms://vault?...`` URI. Raises :class:`KmsConfigError` for anything malformed."""
    params = _query_params(_split(uri))

    address = _address(_required(params, "address"))
    key_name = _names(_required(params, "keyName"), "keyName", allow_slash=False)
    transit_mount = _names(params.get("transitMount", DEFAULT_TRANSIT_MOUNT), "transitMount", allow_slash=True)

    token, token_file = params.get("token"), params.get("tokenFile")
    if (token is None) == (token_file is None):
        raise KmsConfigError("vault KMS URI: give exactly one of 'token' and 'tokenFile'")
    if token is not None and (len(token) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(token)):
        raise KmsConfigError("vault KMS URI: 'token' must be printable ASCII without spaces (value not shown)")
    if token_file is not None:
        token_file = _abs_path(token_file, "tokenFile")

    store_dir = params.get("storeDir")
    if store_dir is not None:
        if "kvMount" in params or "kvPrefix" in params:
            raise KmsConfigError("vault KMS URI: 'storeDir' excludes 'kvMount' and 'kvPrefix'")
        store_dir = _abs_path(store_dir, "storeDir")
    kv_mount = _names(params.get("kvMount", DEFAULT_KV_MOUNT), "kvMount", allow_slash=True)
    kv_prefix = _names(params.get("kvPrefix", DEFAULT_KV_PREFIX), "kvPrefix", allow_slash=True)

    ca_file = params.get("caFile")
    if ca_file is not None:
        ca_file = _abs_path(ca_file, "caFile")
        if not address.startswith("https://"):
            raise KmsConfigError("vault KMS URI: 'caFile' needs an https 'address'")

    return VaultBackendConfig(
        address=address,
        key_name=key_name,
        token=token,
        token_file=token_file,
        transit_mount=transit_mount,
        kv_mount=kv_mount,
        kv_prefix=kv_prefix,
        store_dir=store_dir,
        ca_file=ca_file,
        timeout=_timeout(params.get("timeout")),
    )


def _split(uri: str) -> str:
    """Check everything but the query; return the raw query string."""
    if not isinstance(uri, str):
        raise KmsConfigError("vault KMS URI must be a string")
    if len(uri) > MAX_URI_LENGTH:
        raise KmsConfigError(f"vault KMS URI is longer than {MAX_URI_LENGTH} characters")
    if not all(c.isprintable() and not c.isspace() for c in uri):
        raise KmsConfigError("vault KMS URI: must not contain spaces or control characters (percent-encode them)")
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        raise KmsConfigError("vault KMS URI is not a valid URI") from None
    if parts.scheme != "kms":
        raise KmsConfigError("vault KMS URI: scheme must be 'kms'")
    if parts.netloc != "vault":
        raise KmsConfigError("vault KMS URI: host must be 'vault' (kms://vault?...)")
    if parts.path not in ("", "/"):
        raise KmsConfigError("vault KMS URI: must not have a path")
    if parts.fragment:
        raise KmsConfigError("vault KMS URI: must not have a fragment")
    return parts.query


def _query_params(query: str) -> dict[str, str]:
    if not query:
        raise KmsConfigError("vault KMS URI: missing query parameters (need at least 'address' and 'keyName')")
    params: dict[str, str] = {}
    for item in query.split("&"):
        name_raw, sep, value_raw = item.partition("=")
        try:
            name = urllib.parse.unquote_plus(name_raw, errors="strict")
            value = urllib.parse.unquote_plus(value_raw, errors="strict")
        except UnicodeDecodeError:
            raise KmsConfigError("vault KMS URI: a query parameter is not valid percent-encoded UTF-8") from None
        if name not in _PARAMS:
            # Show a known-safe rendering only: a mistyped name could be a pasted secret.
            shown = name if re.fullmatch(r"[A-Za-z]{1,32}", name) else "<not shown>"
            raise KmsConfigError(f"vault KMS URI: unknown parameter {shown!r}")
        if not sep or not value:
            raise KmsConfigError(f"vault KMS URI: parameter {name!r} is empty")
        if name in params:
            raise KmsConfigError(f"vault KMS URI: parameter {name!r} given more than once")
        params[name] = value
    return params


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise KmsConfigError(f"vault KMS URI: missing required parameter {name!r}")
    return value


def _address(value: str) -> str:
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        raise KmsConfigError("vault KMS URI: 'address' is not a valid http(s) URL") from None
    if parts.scheme not in ("http", "https"):
        raise KmsConfigError("vault KMS URI: 'address' must start with http:// or https://")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise KmsConfigError("vault KMS URI: 'address' must be http(s)://host[:port] without credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise KmsConfigError("vault KMS URI: 'address' must not have a path, query or fragment")
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in parts.netloc):
        raise KmsConfigError("vault KMS URI: 'address' host must be printable ASCII")
    if port == 0:
        raise KmsConfigError("vault KMS URI: 'address' port must be 1..65535")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # Over http the token and every data key (Transit encrypt/decrypt carry it) cross the
        # network in the clear: only a server on this machine (e.g. a dev server) may use it.
        raise KmsConfigError("vault KMS URI: 'address' must use https:// unless the server is on loopback")
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(value: str, param: str, *, allow_slash: bool) -> str:
    segments = value.split("/") if allow_slash else [value]
    if len(value) > 256 or not all(_SEGMENT.fullmatch(s) for s in segments):
        what = "'/'-separated names" if allow_slash else "a name"
        raise KmsConfigError(
            f"vault KMS URI: {param!r} must be {what} of letters, digits, '_', '-', '.' (not starting with '.')"
        )
    return value


def _abs_path(value: str, param: str) -> str:
    if len(value) > 4096 or "\x00" in value or not PurePosixPath(value).is_absolute():
        raise KmsConfigError(f"vault KMS URI: {param!r} must be an absolute file system path")
    return value


def _timeout(value: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise KmsConfigError("vault KMS URI: 'timeout' must be a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise KmsConfigError(f"vault KMS URI: 'timeout' must be > 0 and <= {MAX_TIMEOUT:g} seconds")
    return seconds
