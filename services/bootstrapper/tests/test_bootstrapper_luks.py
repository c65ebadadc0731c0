"""The LUKS2 state disk with the real cryptsetup, on a LUKS2 image file (no device mapper needed)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import skip_or_fail

from starlock.bootstrapper.statedisk import Luks2StateDisk, StateDiskError, open_state_disk

FAST = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")


def _cryptsetup() -> str:
    found = shutil.which("cryptsetup") or shutil.which("cryptsetup", path="/usr/sbin:/sbin")
    if found is None:
        skip_or_fail("cryptsetup is not installed (Debian package cryptsetup-bin)")
        raise AssertionError
    return found


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh LUKS2 volume formatted with a random initial passphrase, as the first boot does."""
    binary = _cryptsetup()
    img, initial = tmp_path / "state.img", tmp_path / "state.key"
    with img.open("wb") as out:
        out.truncate(32 * 1024 * 1024)
    initial.write_bytes(secrets.token_bytes(32))
    initial.chmod(0o400)
    subprocess.run(
        [binary, "luksFormat", "--type", "luks2", "--batch-mode", *FAST, "--key-file", str(initial), str(img)],
        check=True,
        capture_output=True,
    )
    return img, initial


def _disk(image: tuple[Path, Path], **kw: object) -> Luks2StateDisk:
    return Luks2StateDisk(str(image[0]), initial_key_file=image[1], pbkdf_args=FAST, **kw)  # type: ignore[arg-type]


def test_rekey_unlock_and_reset_on_a_real_luks2_header(image: tuple[Path, Path]) -> None:
    disk = _disk(image)
    uuid = subprocess.run(
        [_cryptsetup(), "luksUUID", str(image[0])], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert disk.uuid() == uuid.lower() and len(uuid) == 36
    assert not disk.is_initialized()
    with pytest.raises(StateDiskError, match="not initialized"):
        disk.unlock(secrets.token_bytes(32))

    key = secrets.token_bytes(32)
    disk.update_passphrase(key)
    assert disk.is_initialized()
    token = json.loads(
        subprocess.run(
            [_cryptsetup(), "token", "export", "--token-id", "0", str(image[0])], capture_output=True, check=True
        ).stdout
    )
    assert token == {"type": "constellation-state-disk", "keyslots": [], "diskIsInitialized": True}
    disk.unlock(key)  # the KMS key now opens keyslot 0 ...
    for wrong in (image[1].read_bytes(), key[:31], key[:-1] + bytes([key[-1] ^ 1]), b""):
        with pytest.raises(StateDiskError, match="does not open"):
            disk.unlock(wrong)  # ... and the initial passphrase, a prefix or a flipped key do not

    disk.mark_for_reset()
    assert not disk.is_initialized()
    with pytest.raises(StateDiskError, match="not initialized"):
        disk.unlock(key)


def test_keys_never_reach_the_command_line(image: tuple[Path, Path], tmp_path: Path) -> None:
    """Keys go through pipes: a cryptsetup wrapper records every argv and what it was given."""
    record = tmp_path / "argv.log"
    wrapper = tmp_path / "cryptsetup"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {record}\nexec {_cryptsetup()} "$@"\n')
    wrapper.chmod(0o755)
    disk = _disk(image, cryptsetup=str(wrapper))
    key = secrets.token_bytes(32)
    disk.update_passphrase(key)
    disk.unlock(key)
    logged = record.read_bytes()
    assert b"luksChangeKey" in logged and b"--test-passphrase" in logged
    for secret in (key, image[1].read_bytes()):
        for form in (secret, secret.hex().encode()):
            assert form not in logged
    assert not [p for p in tmp_path.iterdir() if p.name not in {"state.img", "state.key", "argv.log", "cryptsetup"}]


def test_update_refuses_a_short_key_and_a_missing_initial_passphrase(image: tuple[Path, Path]) -> None:
    with pytest.raises(StateDiskError, match="32 bytes"):
        _disk(image).update_passphrase(secrets.token_bytes(31))
    os.chmod(image[1], 0o600)
    image[1].unlink()
    with pytest.raises(StateDiskError, match="initial passphrase"):
        _disk(image).update_passphrase(secrets.token_bytes(32))
    assert not _disk(image).is_initialized()


def test_not_a_luks_device_and_missing_cryptsetup_are_clear(tmp_path: Path) -> None:
    plain = tmp_path / "plain.img"
    plain.write_bytes(bytes(1024 * 1024))
    _cryptsetup()
    with pytest.raises(StateDiskError, match="luksUUID failed"):
        Luks2StateDisk(str(plain)).uuid()
    assert not Luks2StateDisk(str(plain)).is_initialized()
    with pytest.raises(StateDiskError, match="cryptsetup-bin"):
        Luks2StateDisk(str(plain), cryptsetup=str(tmp_path / "no-cryptsetup"))
    with pytest.raises(StateDiskError, match="unknown state disk"):
        open_state_disk("tmpfs:/x")
