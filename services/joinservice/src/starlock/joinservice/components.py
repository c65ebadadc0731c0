"""Kubernetes components lists (spec §1.1): the JSON in ``k8s-components-*`` ConfigMaps."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlock.joinproto import components_pb2
from starlock.joinservice.errors import JoinServiceError

__all__ = ["components_hash", "parse_components", "to_json"]

MAX_COMPONENTS_BYTES = 1024 * 1024
_FIELDS = (
    ("url", "URL", str),
    ("hash", "Hash", str),
    ("install_path", "InstallPath", str),
    ("extract", "Extract", bool),
)


def parse_components(text: str) -> list[components_pb2.Component]:
    """The JSON list (new keys, or the legacy ``URL``/``Hash``/... keys filling empty new ones)."""
    if len(text) > MAX_COMPONENTS_BYTES:
        raise JoinServiceError(f"components list is larger than {MAX_COMPONENTS_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError:
        raise JoinServiceError("components ConfigMap: 'components' is not JSON") from None
    if not isinstance(data, list):
        raise JoinServiceError("components ConfigMap: 'components' is not a JSON list")
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise JoinServiceError("components ConfigMap: a component is not a JSON object")
        values: dict[str, Any] = {}
        for new, legacy, kind in _FIELDS:
            value = item.get(new) or item.get(legacy)
            if value is None:
                continue
            if not isinstance(value, kind):
                raise JoinServiceError(f"components ConfigMap: field {new!r} has the wrong type")
            values[new] = value
        out.append(components_pb2.Component(**values))
    return out


def to_json(components: list[components_pb2.Component]) -> str:
    """Go ``encoding/json`` of the list: empty fields omitted, keys in proto order."""
    items = []
    for c in components:
        item: dict[str, Any] = {}
        for name, _, _ in _FIELDS:
            value = getattr(c, name)
            if value:
                item[name] = value
        items.append(item)
    return json.dumps(items, separators=(",", ":"))


def components_hash(components: list[components_pb2.Component]) -> str:
    """``sha256:`` + hex of SHA-256 over the concatenated component hash strings."""
    return "sha256:" + hashlib.sha256("".join(c.hash for c in components).encode()).hexdigest()
