"""``node_state.json`` in Go's format (spec §4.5): ``{"Role": ..., "MeasurementSalt": <b64>}``.

Go's ``json.MarshalIndent(state, "", "\\t")``: tab-indented, keys in struct order, the role as
its name, the salt as standard base64. Written create-exclusive (it never overwrites).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NodeState", "NodeStateError", "Role", "read_node_state", "write_node_state"]

MAX_NODE_STATE_BYTES = 64 * 1024


class NodeStateError(Exception):
    """node_state.json is missing, malformed, or exists already when writing."""


class Role(enum.Enum):
    CONTROL_PLANE = "ControlPlane"
    WORKER = "Worker"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str) -> Role:
        """Go ``role.FromString``: ``controlplane``/``control-plane``/``worker``, any case."""
        lowered = text.lower()
        if lowered in ("controlplane", "control-plane"):
            return cls.CONTROL_PLANE
        if lowered == "worker":
            return cls.WORKER
        return cls.UNKNOWN


@dataclass(frozen=True)
class NodeState:
    role: Role
    measurement_salt: bytes

    def to_json(self) -> bytes:
        doc = {"Role": self.role.value, "MeasurementSalt": base64.b64encode(self.measurement_salt).decode()}
        return json.dumps(doc, indent="\t").encode()


def write_node_state(path: Path, state: NodeState) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise NodeStateError(f"{path} exists already; node state is written once") from None
    with os.fdopen(fd, "wb") as out:
        out.write(state.to_json())
        out.flush()
        os.fsync(out.fileno())


def read_node_state(path: Path) -> NodeState:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_NODE_STATE_BYTES + 1)
    except OSError as exc:
        raise NodeStateError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_NODE_STATE_BYTES:
        raise NodeStateError(f"{path} is larger than {MAX_NODE_STATE_BYTES} bytes")
    try:
        doc = json.loads(raw)
        salt = base64.b64decode(doc["MeasurementSalt"], validate=True)
        role = Role.parse(doc["Role"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise NodeStateError(f"{path} is not a node state document") from None
    return NodeState(role, salt)
