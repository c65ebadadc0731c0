"""The join service's validator: built from ``attestationConfig`` and swapped when it changes.

:class:`UpdatableValidator` is what the aTLS server holds (its ``variant`` decides the extension
OID); ``validate`` runs under a read of the current validator, so a reload never fails a
handshake in flight. :class:`ConfigWatcher` polls the file's content (a kubelet ``..data``
symlink swap, a rewrite and a rename all change it) and calls :meth:`UpdatableValidator.reload`;
a config that fails to parse or build keeps the old validator, is logged and counted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import attrs

from starlock.attestation import AttestationError, ValidationResult, Validator, Variant, load_attestation_config
from starlock.attestation.validators import validator_for

__all__ = ["ConfigWatcher", "UpdatableValidator", "build_validator"]

_log = logging.getLogger("starlock.joinservice")
MAX_CONFIG_BYTES = 1024 * 1024
SNP_VARIANTS = (Variant.AZURE_SEV_SNP, Variant.AWS_SEV_SNP)


class ConfigLoadError(Exception):
    """The attestation config could not be read, parsed or turned into a validator."""


def read_config(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigLoadError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigLoadError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    return data


def build_validator(data: bytes, variant: Variant, *, ask_pem: str = "", insecure_dummy: bool = False) -> Validator:
    """The validator for ``variant`` from the config bytes; ``ask_pem`` is injected for SNP variants."""
    if variant is Variant.DUMMY:
        if not insecure_dummy:
            raise ConfigLoadError("the dummy variant accepts any peer: it needs --insecure-dummy")
        from starlock.atls import DummyValidator

        return DummyValidator(insecure=True)
    try:
        config = load_attestation_config(data, variant)
        if variant in SNP_VARIANTS:
            if not ask_pem:
                raise ConfigLoadError(f"{variant.value}: no ASK/ASVK cached to inject as amdSigningKey")
            config = attrs.evolve(config, amd_signing_key_pem=ask_pem)
        return validator_for(config)
    except AttestationError as exc:
        raise ConfigLoadError(str(exc)) from None


class UpdatableValidator:
    """A :class:`~starlock.attestation.Validator` whose inner validator can be replaced."""

    def __init__(
        self,
        path: Path,
        variant: Variant,
        *,
        ask_pem: str = "",
        insecure_dummy: bool = False,
        on_failure: Callable[[AttestationError], None] | None = None,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self._path = path
        self._variant = variant
        self._ask_pem = ask_pem
        self._insecure_dummy = insecure_dummy
        self._on_failure = on_failure
        self._on_reload = on_reload
        self._lock = threading.Lock()
        data = read_config(path)
        self._inner = build_validator(data, variant, ask_pem=ask_pem, insecure_dummy=insecure_dummy)
        self._digest = hashlib.sha256(data).digest()
        self._failed_digest = b""

    @property
    def variant(self) -> Variant:
        return self._variant

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        with self._lock:
            inner = self._inner
        try:
            return inner.validate(document, nonce)
        except AttestationError as exc:
            if self._on_failure is not None:
                self._on_failure(exc)
            raise

    def reload(self) -> bool:
        """Re-read the config; True if a new validator is in place. Failures keep the old one."""
        digest = b""
        try:
            data = read_config(self._path)
            digest = hashlib.sha256(data).digest()
            if digest in (self._digest, self._failed_digest):
                return False  # unchanged, or a broken version already reported once
            inner = build_validator(data, self._variant, ask_pem=self._ask_pem, insecure_dummy=self._insecure_dummy)
        except ConfigLoadError as exc:
            if not digest and self._failed_digest == b"unreadable":
                return False
            self._failed_digest = digest or b"unreadable"
            _log.warning(
                "attestation config not reloaded; keeping the previous validator",
                extra={"fields": {"path": str(self._path), "error": str(exc)}},
            )
            if self._on_reload is not None:
                self._on_reload(False)
            return False
        with self._lock:
            self._inner = inner
            self._digest = digest
            self._failed_digest = b""
        _log.info("attestation config reloaded", extra={"fields": {"path": str(self._path), "sha256": digest.hex()}})
        if self._on_reload is not None:
            self._on_reload(True)
        return True


class ConfigWatcher:
    """Polls the config path (content, not events: symlink swaps, rewrites and renames alike)."""

    def __init__(self, validator: UpdatableValidator, interval: float = 0.5) -> None:
        self._validator = validator
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def start(self) -> ConfigWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._validator.reload()
            except Exception:  # a watcher must never die silently
                _log.exception("attestation config watcher failed once; retrying")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
