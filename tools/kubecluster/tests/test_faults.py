"""Bad input and faults: one clear line naming the component and its log; no hang, no fake."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from starlock.kubecluster import Binaries, BuildError, ComponentError, ControlPlane, Ports, ensure_binaries
from starlock.kubecluster.build import _STAMP, find_go_module
from starlock.kubecluster.process import Component


@pytest.fixture(scope="module")
def binaries() -> Binaries:
    try:
        return ensure_binaries()
    except BuildError as exc:  # pragma: no cover - the plugin fixture decides skip vs fail
        pytest.fail(str(exc))


def test_no_go_on_the_machine(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as caught:
        ensure_binaries(tmp_path / "bin", go=str(tmp_path / "no-such-go"))
    message = str(caught.value)
    assert "Go toolchain" in message and "\n" not in message


def test_refused_module_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty module cache and no proxy: the download is refused, said in one line with the log
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOPROXY", "off")
    started = time.monotonic()
    with pytest.raises(BuildError) as caught:
        ensure_binaries(tmp_path / "bin")
    message = str(caught.value)
    assert "module download" in message and "GOPROXY=off" in message
    assert "full log: " in message and "\n" not in message
    assert Path(message.rsplit("full log: ", 1)[1]).is_file()
    assert time.monotonic() - started < 120
    shutil.rmtree(tmp_path / "modcache", ignore_errors=True)


def test_cached_build_is_not_rebuilt_and_a_changed_pin_is(binaries: Binaries, tmp_path: Path) -> None:
    # the cache holds binaries for these pins: nothing runs, not even Go
    assert ensure_binaries(binaries.bin_dir, go=str(tmp_path / "no-such-go")) == binaries
    copy = tmp_path / "bin"
    copy.mkdir()
    for name in (*[p.name for p in binaries.bin_dir.iterdir()],):
        (copy / name).symlink_to(binaries.bin_dir / name)
    (copy / _STAMP).unlink()
    (copy / _STAMP).write_text('{"inputs": "built from other pins"}')
    with pytest.raises(BuildError, match="Go toolchain"):
        ensure_binaries(copy, go=str(tmp_path / "no-such-go"))


def test_missing_binary_names_the_component(tmp_path: Path) -> None:
    with pytest.raises(ComponentError) as caught:
        ControlPlane(binaries=Binaries(tmp_path)).start()
    assert caught.value.component == "etcd"
    assert "scripts/build-kube.sh" in str(caught.value)


def test_port_already_taken(binaries: Binaries, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        plane = ControlPlane(binaries=binaries, root=tmp_path / "cp", ports=Ports(apiserver=port))
        with pytest.raises(ComponentError) as caught:
            plane.start()
    assert caught.value.component == "kube-apiserver"
    assert f"127.0.0.1:{port} is already in use" in str(caught.value)
    # what was started before (etcd) was stopped again
    assert all(not c.alive() for c in plane.components)


def test_component_dying_during_start_is_reported_with_its_log(binaries: Binaries, tmp_path: Path) -> None:
    """The real etcd, told to listen on a port another process holds, exits; we say so at once."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        etcd = Component(
            "etcd",
            [str(binaries.path("etcd")), f"--data-dir={tmp_path / 'data'}", f"--listen-client-urls={url}",
             f"--advertise-client-urls={url}", "--listen-peer-urls=http://127.0.0.1:0", "--listen-metrics-urls="],
            tmp_path / "etcd.log",
        ).start()  # fmt: skip
        started = time.monotonic()
        try:
            with pytest.raises(ComponentError) as caught:
                etcd.wait_until(lambda: False, timeout=60, what="healthy")
        finally:
            etcd.stop()
    assert time.monotonic() - started < 30  # noticed the exit, did not wait out the timeout
    message = str(caught.value)
    assert message.startswith("etcd: exited with status")
    assert "port already in use" in message
    assert f"(log: {tmp_path / 'etcd.log'})" in message
    assert "\n" not in message


def test_go_module_pins_kubernetes_and_etcd() -> None:
    go_mod = (find_go_module() / "go.mod").read_text()
    assert "k8s.io/kubernetes v1.37.2" in go_mod
    assert "go.etcd.io/etcd/server/v3 v3.7.0" in go_mod
    # every staging module is replaced by its published release of the same tag
    replaced = [line for line in go_mod.splitlines() if "=>" in line]
    assert replaced and all(line.strip().endswith("v0.37.2") for line in replaced)
