"""JSON and YAML decoding that refuses duplicate keys instead of letting the last one win.

``json.loads`` and ``yaml.safe_load`` silently keep the last of two equal keys, so a config that
says ``"4"`` twice (one enforced, one warn-only) would mean whatever its last line says. Both
loaders here raise :class:`ConfigError` naming the duplicated key instead. Callers bound the size
of the input before decoding.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import yaml

from starlock.attestation.errors import ConfigError

__all__ = ["DuplicateKey", "load_json", "load_yaml"]


class DuplicateKey(ConfigError):
    """An object/mapping in the input has the same key twice."""


def _pairs_hook(where: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise DuplicateKey(f"{where}: key {key[:40]!r} appears twice in one object; expected unique keys")
            out[key] = value
        return out

    return hook


def load_json(data: bytes | str, where: str) -> Any:
    """``json.loads`` with duplicate keys refused; invalid JSON raises ``ValueError`` as usual."""
    return json.loads(data, object_pairs_hook=_pairs_hook(where))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings refuse a key given twice (PyYAML keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            )
        if key in out:
            raise DuplicateKey(
                f"{loader.name}: key {str(key)[:40]!r} appears twice in one mapping (line "
                f"{key_node.start_mark.line + 1}); expected unique keys"
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(data: bytes | str, where: str) -> Any:
    """``yaml.safe_load`` with duplicate mapping keys refused; bad YAML raises ``yaml.YAMLError``."""
    loader = _UniqueKeyLoader(data)
    loader.name = where
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
