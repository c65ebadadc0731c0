"""Wrapped-key records and the directory store on their own (no server needed)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlock.kms.interface import MAX_DEK_LENGTH, KmsError, KmsInvalidArgument
from starlock.kms.vault import DirectoryWrappedKeyStore, WrappedKey, WrappedKeyError
from starlock.kms.vault._store import entry_name


def _key(dek_id: str = "key-a", n: int = 1) -> WrappedKey:
    return WrappedKey(dek_id=dek_id, length=32, transit_key="kek", ciphertext=f"vault:v1:{n}")


def test_entry_names() -> None:
    assert entry_name("key-measurementSecret") == "key-measurementSecret"
    assert entry_name("key-0f6a.disk_1") == "key-0f6a.disk_1"
    for odd in (".hidden", "..", "a/b", "a b", "ä", "x" * 201, "~sha256-00"):
        assert entry_name(odd).startswith("~sha256-")
        assert len(entry_name(odd)) == 8 + 64
    assert entry_name("a/b") != entry_name("a/c")
    for bad in ("", "\ud800", "x" * 1025):
        with pytest.raises(KmsInvalidArgument):
            entry_name(bad)


def test_put_if_absent_first_writer_wins(tmp_path: Path) -> None:
    store = DirectoryWrappedKeyStore(tmp_path / "s")
    assert store.get("key-a") is None
    assert store.put_if_absent(_key(n=1)) == _key(n=1)
    assert store.put_if_absent(_key(n=2)) == _key(n=1)
    assert store.get("key-a") == _key(n=1)
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["key-a.json"]
    assert (tmp_path / "s" / "key-a.json").stat().st_mode & 0o777 == 0o600


def test_threads_agree(tmp_path: Path) -> None:
    store = DirectoryWrappedKeyStore(tmp_path / "s")
    results: list[WrappedKey] = []
    barrier = threading.Barrier(16)

    def worker(n: int) -> None:
        barrier.wait()
        results.append(store.put_if_absent(_key(n=n)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16
    assert len(set(results)) == 1
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["key-a.json"]


_CHILD = """
import os, sys, time
from starlock.kms.vault import DirectoryWrappedKeyStore, WrappedKey
directory, n, go = sys.argv[1:4]
store = DirectoryWrappedKeyStore(directory)
while not os.path.exists(go):
    time.sleep(0.0005)
won = store.put_if_absent(WrappedKey("key-a", 32, "kek", "vault:v1:" + n))
print(won.ciphertext)
"""


def test_processes_agree(tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path / "s"), str(n), str(go)], stdout=subprocess.PIPE, text=True
        )
        for n in range(6)
    ]
    go.touch()
    outputs = {child.communicate(timeout=60)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    assert len(outputs) == 1
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["key-a.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[]", "not a starlock-wrapped-dek-v1 record"),
        (b'{"format": "other"}', "not a starlock-wrapped-dek-v1 record"),
        # a format that is a prefix or an extension of ours, or empty, is another format
        *(
            (json.dumps(_key().to_dict() | {"format": fmt}).encode(), "not a starlock-wrapped-dek-v1 record")
            for fmt in ("", "starlock-wrapped-dek-v", "starlock-wrapped-dek-v10")
        ),
        (json.dumps(_key().to_dict() | {"length": 0}).encode(), "malformed fields"),
        (json.dumps(_key().to_dict() | {"length": True}).encode(), "malformed fields"),
        (json.dumps(_key().to_dict() | {"length": MAX_DEK_LENGTH + 1}).encode(), "malformed fields"),
        (json.dumps(_key().to_dict() | {"ciphertext": "plain"}).encode(), "malformed fields"),
        (json.dumps(_key().to_dict() | {"dek_id": "key-b"}).encode(), "records the id 'key-b'"),
        # a record moved from an id that is a prefix or an extension of this one, or from the empty id
        (json.dumps(_key().to_dict() | {"dek_id": "key-"}).encode(), "records the id 'key-'"),
        (json.dumps(_key().to_dict() | {"dek_id": "key-ab"}).encode(), "records the id 'key-ab'"),
        (json.dumps(_key().to_dict() | {"dek_id": ""}).encode(), "records the id ''"),
        (b" " * (64 * 1024 + 1), "larger than"),
    ],
)
def test_bad_records(tmp_path: Path, content: bytes, message: str) -> None:
    store = DirectoryWrappedKeyStore(tmp_path)
    (tmp_path / "key-a.json").write_bytes(content)
    with pytest.raises(WrappedKeyError, match=message):
        store.get("key-a")


@pytest.mark.parametrize("length", [1, MAX_DEK_LENGTH])
def test_record_lengths_at_the_bounds(length: int) -> None:
    record = _key().to_dict() | {"length": length}
    assert WrappedKey.from_dict(record, "key-a") == WrappedKey("key-a", length, "kek", "vault:v1:1")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=6),
        max_leaves=12,
    )
)
def test_record_parser_raises_only_wrapped_key_error(data: object) -> None:
    with contextlib.suppress(WrappedKeyError):
        WrappedKey.from_dict(data, "key-a")


_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)


@given(
    st.fixed_dictionaries(
        {"format": st.just("starlock-wrapped-dek-v1")},
        optional={
            "dek_id": st.sampled_from(["key-a", "key-b"]) | _scalars,
            "length": st.integers(-2, 9000) | _scalars,
            "transit_key": st.just("kek") | _scalars,
            "ciphertext": st.just("vault:v1:abc") | _scalars,
        },
    )
)
def test_near_valid_records(data: dict[str, object]) -> None:
    try:
        key = WrappedKey.from_dict(data, "key-a")
    except WrappedKeyError:
        return
    assert key.dek_id == "key-a"
    assert 1 <= key.length <= 255 * 32


def test_record_size_bound(tmp_path: Path) -> None:
    """A record of exactly 64 KiB is read (JSON padded with spaces); one byte more is refused."""
    store = DirectoryWrappedKeyStore(tmp_path)
    record = json.dumps(_key().to_dict()).encode()
    (tmp_path / "key-a.json").write_bytes(record.ljust(64 * 1024, b" "))
    assert store.get("key-a") == _key()
    (tmp_path / "key-a.json").write_bytes(record.ljust(64 * 1024 + 1, b" "))
    with pytest.raises(WrappedKeyError, match="larger than 65536 bytes"):
        store.get("key-a")


def test_unreadable_entry_is_a_store_error(tmp_path: Path) -> None:
    store = DirectoryWrappedKeyStore(tmp_path)
    (tmp_path / "key-a.json").mkdir()  # exists, but cannot be read as a file
    with pytest.raises(KmsError, match=r"cannot read entry for DEK 'key-a' \(Is a directory\)"):
        store.get("key-a")


def test_marker_first_writer_wins(tmp_path: Path) -> None:
    store = DirectoryWrappedKeyStore(tmp_path / "s")
    assert store.get_marker() is None
    assert store.put_marker_if_absent({"n": 1}) == {"n": 1}
    assert store.put_marker_if_absent({"n": 2}) == {"n": 1}
    assert store.get_marker() == {"n": 1}


def test_name_taken_by_a_dangling_link_is_not_created(tmp_path: Path) -> None:
    """The name exists (so the atomic create fails) but reads as absent: an error, never a success."""
    store = DirectoryWrappedKeyStore(tmp_path)
    (tmp_path / ".starlock-store.json").symlink_to(tmp_path / "gone")
    (tmp_path / "key-a.json").symlink_to(tmp_path / "gone")
    with pytest.raises(KmsError, match="the store marker vanished while being created"):
        store.put_marker_if_absent({"n": 1})
    with pytest.raises(KmsError, match="entry for DEK 'key-a' vanished while being created"):
        store.put_if_absent(_key())
    assert not (tmp_path / "gone").exists()
