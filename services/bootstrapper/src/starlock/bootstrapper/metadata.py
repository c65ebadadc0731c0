"""Instance metadata: who this node is, where the control planes are, the init secret's hash.

:class:`MetadataProvider` is what the init server, the join client and the rejoin use (upstream's
``metadataAPI``). Two providers:

* :class:`QemuMetadata` speaks upstream's QEMU metadata HTTP API (``hack/qemu-metadata-api``,
  default ``http://10.42.0.1:8080``): ``GET /self`` and ``GET /peers`` return ``InstanceMetadata``
  JSON (``Name, ProviderID, Role, VPCIP, SecondaryIPRange, AliasIPRanges``), ``GET /endpoint`` the
  load balancer host as a JSON string, ``GET /initsecrethash`` the bcrypt hash as the raw body.
* :class:`LocalMetadata` reads one JSON file (re-read on every call, so a demo can add peers):
  ``{"self": {...InstanceMetadata...}, "peers": [...], "endpoint": "host[:port]",
  "initSecretHash": "<bcrypt hash>"}``.

Every response is bounded (64 KiB) and every field is type-checked; a malformed answer is a
:class:`MetadataError` naming the field, never a crash.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from starlock.bootstrapper.nodestate import Role

__all__ = [
    "InstanceMetadata",
    "LocalMetadata",
    "MetadataError",
    "MetadataProvider",
    "QemuMetadata",
    "control_plane_endpoints",
    "open_metadata",
]

MAX_RESPONSE = 64 * 1024
DEFAULT_QEMU_URL = "http://10.42.0.1:8080"
JOIN_SERVICE_PORT = 30090


class MetadataError(Exception):
    """The metadata source is unreachable or answered something malformed."""


@dataclass(frozen=True)
class InstanceMetadata:
    name: str
    provider_id: str
    role: Role
    vpc_ip: str
    secondary_ip_range: str = ""
    alias_ip_ranges: tuple[str, ...] = field(default=())

    @classmethod
    def from_json(cls, data: object, what: str) -> InstanceMetadata:
        if not isinstance(data, dict):
            raise MetadataError(f"{what}: expected a JSON object")

        def text(key: str) -> str:
            value = data.get(key, "")
            if not isinstance(value, str):
                raise MetadataError(f"{what}: {key} is not a string")
            return value

        aliases = data.get("AliasIPRanges") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise MetadataError(f"{what}: AliasIPRanges is not a list of strings")
        return cls(
            name=text("Name"),
            provider_id=text("ProviderID"),
            role=_role(data.get("Role", "")),
            vpc_ip=text("VPCIP"),
            secondary_ip_range=text("SecondaryIPRange"),
            alias_ip_ranges=tuple(aliases),
        )


def _role(value: object) -> Role:
    """Go's ``role.Role`` marshals as its name; numbers are accepted as upstream's enum order."""
    if isinstance(value, str):
        return Role.parse(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return {1: Role.CONTROL_PLANE, 2: Role.WORKER}.get(value, Role.UNKNOWN)
    raise MetadataError("Role is neither a name nor a number")


class MetadataProvider(Protocol):
    def self(self) -> InstanceMetadata: ...

    def list(self) -> list[InstanceMetadata]: ...

    def load_balancer_host(self) -> str: ...

    def init_secret_hash(self) -> bytes: ...


def control_plane_endpoints(
    provider: MetadataProvider, *, own_ip: str = "", port: int = JOIN_SERVICE_PORT
) -> list[str]:
    """The join service endpoints (spec §5.5 step 3): the load balancer, then every control
    plane's VPC IP (minus ``own_ip``, as the rejoin on a control plane does). A failed load
    balancer lookup is skipped (upstream dialled an empty host); a failed List fails the round."""
    hosts: list[str] = []
    try:
        lb = provider.load_balancer_host()
    except MetadataError:
        lb = ""
    if lb:
        hosts.append(lb)
    for peer in provider.list():
        if peer.role is Role.CONTROL_PLANE and peer.vpc_ip and peer.vpc_ip != own_ip and peer.vpc_ip not in hosts:
            hosts.append(peer.vpc_ip)
    return [_with_port(h, port) for h in hosts]


def _with_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"  # a bare IPv6 address
    return f"{host}:{port}"


def _lb_host(value: object) -> str:
    """The endpoint's host: ``host``, ``host:port`` or ``[v6]:port``; the port is the API server's."""
    if not isinstance(value, str):
        raise MetadataError("endpoint is not a string")
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class QemuMetadata:
    """Upstream's QEMU metadata HTTP API (plain HTTP on the host-only bridge, as upstream)."""

    def __init__(self, url: str = DEFAULT_QEMU_URL, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise MetadataError(f"the QEMU metadata URL must be http://host[:port], got {url!r}")
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._timeout = timeout

    def _get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read(MAX_RESPONSE + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise MetadataError(f"metadata GET {path}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if response.status != 200:
            raise MetadataError(f"metadata GET {path}: HTTP {response.status}")
        if len(body) > MAX_RESPONSE:
            raise MetadataError(f"metadata GET {path}: response larger than {MAX_RESPONSE} bytes")
        return body

    def _json(self, path: str) -> object:
        try:
            return json.loads(self._get(path))
        except ValueError as exc:
            raise MetadataError(f"metadata GET {path}: not JSON ({exc})") from None

    def self(self) -> InstanceMetadata:
        return InstanceMetadata.from_json(self._json("/self"), "/self")

    def list(self) -> list[InstanceMetadata]:
        peers = self._json("/peers")
        if not isinstance(peers, list):
            raise MetadataError("/peers: expected a JSON list")
        return [InstanceMetadata.from_json(p, "/peers") for p in peers]

    def load_balancer_host(self) -> str:
        return _lb_host(self._json("/endpoint"))

    def init_secret_hash(self) -> bytes:
        return self._get("/initsecrethash").strip()


class LocalMetadata:
    """A JSON file standing in for the cloud's metadata (demo and tests)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, object]:
        try:
            with self.path.open("rb") as src:
                raw = src.read(MAX_RESPONSE + 1)
        except OSError as exc:
            raise MetadataError(f"metadata file {self.path}: {exc.strerror or exc}") from None
        if len(raw) > MAX_RESPONSE:
            raise MetadataError(f"metadata file {self.path}: larger than {MAX_RESPONSE} bytes")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise MetadataError(f"metadata file {self.path}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise MetadataError(f"metadata file {self.path}: expected a JSON object")
        return data

    def self(self) -> InstanceMetadata:
        return InstanceMetadata.from_json(self._read().get("self"), f"{self.path}: self")

    def list(self) -> list[InstanceMetadata]:
        peers = self._read().get("peers", [])
        if not isinstance(peers, list):
            raise MetadataError(f"{self.path}: peers is not a list")
        return [InstanceMetadata.from_json(p, f"{self.path}: peers") for p in peers]

    def load_balancer_host(self) -> str:
        return _lb_host(self._read().get("endpoint", ""))

    def init_secret_hash(self) -> bytes:
        value = self._read().get("initSecretHash", "")
        if not isinstance(value, str):
            raise MetadataError(f"{self.path}: initSecretHash is not a string")
        return value.encode()


def open_metadata(spec: str, *, timeout: float = 30.0) -> MetadataProvider:
    """``qemu`` (default URL), ``qemu:http://host:port`` or ``local:/path/to/metadata.json``."""
    kind, _, arg = spec.partition(":")
    if kind == "qemu":
        return QemuMetadata(arg or DEFAULT_QEMU_URL, timeout=timeout)
    if kind == "local" and arg:
        return LocalMetadata(Path(arg))
    raise MetadataError(f"unknown metadata provider {spec!r}; expected qemu[:URL] or local:FILE")
