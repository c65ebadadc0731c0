"""The master secret: key + salt, its JSON file and the key service's raw secret files.

``constellation-mastersecret.json`` is Go's JSON of ``uri.MasterSecret``:
``{"key": "<base64>", "salt": "<base64>"}`` (standard alphabet, padded), written with tab
indentation, mode 0600, never over an existing file unless asked.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from starlock.kms.derive import MASTER_SECRET_LENGTH_DEFAULT, MASTER_SECRET_LENGTH_MIN, RNG_LENGTH_DEFAULT
from starlock.kms.interface import KmsConfigError

__all__ = [
    "MAX_SECRET_FILE_SIZE",
    "MIN_SALT_LENGTH",
    "MasterSecret",
    "read_master_secret_file",
    "read_secret_files",
    "write_master_secret_file",
]

#: Largest master secret file (JSON or raw) we read; real ones are under 200 bytes.
MAX_SECRET_FILE_SIZE = 64 * 1024
#: Minimum salt length (upstream ``RNGLengthDefault``) enforced by the key service and the CLI.
MIN_SALT_LENGTH = RNG_LENGTH_DEFAULT

_B64STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class MasterSecret:
    """Master key and salt. ``repr`` hides both; equality is constant-time."""

    __slots__ = ("key", "salt")
    key: bytes
    salt: bytes

    def __init__(self, key: bytes, salt: bytes) -> None:
        self.key = bytes(key)
        self.salt = bytes(salt)

    def __repr__(self) -> str:
        return f"MasterSecret(key=<{len(self.key)} bytes>, salt=<{len(self.salt)} bytes>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MasterSecret):
            return NotImplemented
        same_key = hmac.compare_digest(self.key, other.key)
        same_salt = hmac.compare_digest(self.salt, other.salt)
        return same_key and same_salt

    __hash__ = None  # type: ignore[assignment]  # mutable-by-intent secret holder, never a dict key

    @classmethod
    def generate(cls) -> MasterSecret:
        """32 random bytes of key and 32 of salt from the OS CSPRNG (as the upstream CLI)."""
        return cls(secrets.token_bytes(MASTER_SECRET_LENGTH_DEFAULT), secrets.token_bytes(RNG_LENGTH_DEFAULT))

    def check_lengths(self) -> None:
        """Raise :class:`KmsConfigError` if key < 16 bytes or salt < 32 bytes (the key service's rule)."""
        if len(self.key) < MASTER_SECRET_LENGTH_MIN:
            raise KmsConfigError(f"master secret is {len(self.key)} bytes, need at least {MASTER_SECRET_LENGTH_MIN}")
        if len(self.salt) < MIN_SALT_LENGTH:
            raise KmsConfigError(f"salt is {len(self.salt)} bytes, need at least {MIN_SALT_LENGTH}")

    def to_uri(self) -> str:
        """``kms://cluster-kms?key=<b64url>&salt=<b64url>`` (upstream ``EncodeToURI``).

        b64url characters and ``=`` need no escaping, so the URI equals upstream's byte for byte.
        """
        key = base64.urlsafe_b64encode(self.key).decode()
        salt = base64.urlsafe_b64encode(self.salt).decode()
        return f"kms://cluster-kms?key={key}&salt={salt}"

    def to_json(self) -> bytes:
        """The JSON file content, byte-identical to Go's ``file.WriteJSON`` (tab indentation)."""
        doc = {"key": base64.b64encode(self.key).decode(), "salt": base64.b64encode(self.salt).decode()}
        return json.dumps(doc, indent="\t").encode()

    @classmethod
    def from_json(cls, data: bytes | str, *, check_lengths: bool = True) -> MasterSecret:
        """Parse the master secret JSON. Raises only :class:`KmsConfigError`.

        Rejects: more than :data:`MAX_SECRET_FILE_SIZE` bytes, invalid UTF-8/JSON, a non-object,
        duplicate members, a missing/non-string/empty ``key`` or ``salt``, bad base64 and (unless
        ``check_lengths=False``) a key < 16 or salt < 32 bytes. Other members are ignored.
        """
        if len(data) > MAX_SECRET_FILE_SIZE:
            raise KmsConfigError(f"master secret JSON is larger than {MAX_SECRET_FILE_SIZE} bytes")
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            doc = json.loads(text, object_pairs_hook=_unique_members)
        except json.JSONDecodeError as e:
            raise KmsConfigError(f"master secret is not valid JSON (line {e.lineno}, column {e.colno})") from None
        except (ValueError, RecursionError):
            raise KmsConfigError("master secret is not valid UTF-8 JSON") from None
        if not isinstance(doc, dict):
            raise KmsConfigError("master secret JSON must be an object with members key and salt")
        secret = cls(_b64_member(doc, "key"), _b64_member(doc, "salt"))
        if check_lengths:
            secret.check_lengths()
        return secret


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            # Go keeps the last duplicate; an ambiguous secret file is refused instead.
            raise KmsConfigError("master secret JSON has a duplicate member")
        out[name] = value
    return out


def _b64_member(doc: dict[str, Any], name: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise KmsConfigError(f"master secret JSON: member {name!r} is missing, empty or not a string")
    if len(value) % 4 or not _B64STD.fullmatch(value):
        raise KmsConfigError(f"master secret JSON: member {name!r} is not padded standard base64")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise KmsConfigError(f"master secret JSON: member {name!r} is not padded standard base64") from None


def _read_bounded(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_FILE_SIZE + 1)
    except OSError as e:
        raise KmsConfigError(f"cannot read {what} file {os.fspath(path)!r}: {e.strerror}") from None
    if len(data) > MAX_SECRET_FILE_SIZE:
        raise KmsConfigError(f"{what} file {os.fspath(path)!r} is larger than {MAX_SECRET_FILE_SIZE} bytes")
    return data


def read_master_secret_file(path: str | os.PathLike[str], *, check_lengths: bool = True) -> MasterSecret:
    """Read ``constellation-mastersecret.json``; see :meth:`MasterSecret.from_json`."""
    return MasterSecret.from_json(_read_bounded(path, "master secret"), check_lengths=check_lengths)


def read_secret_files(master_secret_path: str | os.PathLike[str], salt_path: str | os.PathLike[str]) -> MasterSecret:
    """Read the key service's two raw files (the mounted Secret); enforce 16/32-byte minimums."""
    secret = MasterSecret(_read_bounded(master_secret_path, "master secret"), _read_bounded(salt_path, "salt"))
    secret.check_lengths()
    return secret


def write_master_secret_file(path: str | os.PathLike[str], secret: MasterSecret, *, overwrite: bool = False) -> None:
    """Write the JSON file with mode 0600; refuse an existing file unless ``overwrite``.

    The secret goes to a private (0600) temporary file beside ``path`` first, which then replaces
    ``path`` atomically: an existing file's looser mode never applies to the secret, a symlink at
    ``path`` is replaced rather than followed, and a crash leaves the old file or the new one.
    """
    target = Path(path)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise KmsConfigError(f"cannot create master secret file {os.fspath(path)!r}: File exists")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise KmsConfigError(f"cannot create master secret file {os.fspath(path)!r}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(secret.to_json())
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if someone created the file meanwhile
            os.unlink(tmp)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KmsConfigError(f"cannot write master secret file {os.fspath(path)!r}: {e.strerror}") from None
