"""``starlock-bootstrapper``: the process every node runs once at boot (spec §5.1).

1. The variant and CSP (``CONSTEL_ATTESTATION_VARIANT`` / ``CONSTEL_CSP``, or flags), the issuer
   for the variant on the node's TPM, the metadata provider, the state disk, the node lock.
2. PCR 15 non-zero: the node was bootstrapped and marked this boot → start the kubelet, exit 0.
3. The state disk is initialized but PCR 15 is zero: the node rebooted → the rejoin (§4.4:
   ``IssueRejoinTicket``, unlock, ``node_state.json``, re-mark PCR 15), start the kubelet, exit 0.
   This is an automatic branch at start (there is no separate disk-mapper in Starlock). A control
   plane also serves the recovery API on ``--recovery-listen`` (aTLS, port 9999) meanwhile, for
   ``starlock recover`` after a reboot of the whole cluster; the first to deliver the keys wins.
4. Otherwise the init server on ``--listen`` (aTLS, the node issues) and the join client run
   together; the node lock lets exactly one of them bootstrap the node and the cleaner stops
   the other. Exit 0 when done.
5. A fatal error after the node lock (init or join): the state disk is marked for reset and the
   node reboots (``--on-fatal reboot``, the default: an EMERG syslog message, one minute, then
   ``reboot(2)``) or the process exits with status 3 (``--on-fatal exit``, demo and tests).
   Errors before the lock exit with status 1 (systemd restarts the unit).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from starlock.atls.errors import AtlsError
from starlock.atls.signals import stop_on_signals
from starlock.bootstrapper._log import configure_logging
from starlock.bootstrapper.cleaner import Cleaner
from starlock.bootstrapper.initserver import InitServer
from starlock.bootstrapper.joinclient import JoinClient, JoinError, JoinPaths, JoinTiming
from starlock.bootstrapper.metadata import (
    JOIN_SERVICE_PORT,
    InstanceMetadata,
    MetadataError,
    MetadataProvider,
    control_plane_endpoints,
    open_metadata,
)
from starlock.bootstrapper.nodestate import NodeState, Role
from starlock.bootstrapper.recovery import RECOVERY_PORT, RecoveryServer, serve_recovery
from starlock.bootstrapper.rejoin import KeyDelivery, RejoinClient, RejoinError
from starlock.bootstrapper.statedisk import StateDisk, StateDiskError, open_state_disk

__all__ = ["EXIT_FATAL", "main", "parse_args"]

_log = logging.getLogger("starlock.bootstrapper")

EXIT_FATAL = 3
MAX_LOG_BYTES = 1024 * 1024
REBOOT_DELAY = 60.0
CSPS = ("aws", "gcp", "azure", "qemu", "openstack")


class StartupError(Exception):
    """The bootstrapper cannot start (before the node lock): a clear one-line reason."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="starlock-bootstrapper",
        description="Initialize or join this node exactly once (Constellation v2 compatible).",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('starlock-bootstrapper')}"
    )
    parser.add_argument(
        "--variant",
        default=env.get("CONSTEL_ATTESTATION_VARIANT", ""),
        help="attestation variant (env CONSTEL_ATTESTATION_VARIANT); qemu-vtpm, or dummy for tests",
    )
    parser.add_argument("--csp", default=env.get("CONSTEL_CSP", ""), choices=("", *CSPS), help="env CONSTEL_CSP")
    parser.add_argument("--tcti", default=env.get("STARLOCK_TCTI", "device:/dev/tpmrm0"), help="the node's TPM")
    parser.add_argument("--event-log", type=Path, help="TCG event log (default: the kernel's, when readable)")
    parser.add_argument(
        "--metadata", default="", help="qemu[:http://host:port] (default for CSP qemu) or local:FILE (demo, tests)"
    )
    parser.add_argument(
        "--state-disk",
        default="luks2:/dev/mapper/state",
        help="luks2:DEVICE (production, through cryptsetup) or file:DIR (demo and tests, protects nothing)",
    )
    parser.add_argument("--driver", default="kubeadm", choices=("kubeadm", "local"), help="how Kubernetes is set up")
    parser.add_argument(
        "--local-admin-kubeconfig", type=Path, help="local driver: the admin kubeconfig of the control plane to init"
    )
    parser.add_argument("--root", type=Path, default=Path("/"), help="prefix of /etc/kubernetes and /run (tests)")
    parser.add_argument("--listen", default="0.0.0.0:9000", help="the init server's address (aTLS)")
    parser.add_argument(
        "--recovery-listen",
        default=f"0.0.0.0:{RECOVERY_PORT}",
        help="control planes, while rejoining: the recovery server's address (aTLS)",
    )
    parser.add_argument("--join-service-port", type=int, default=JOIN_SERVICE_PORT)
    parser.add_argument("--join-interval", type=float, default=30.0, help="seconds between join rounds")
    parser.add_argument("--join-timeout", type=float, default=30.0, help="seconds per ticket call")
    parser.add_argument("--on-fatal", choices=("reboot", "exit"), default="reboot")
    parser.add_argument("--log-file", type=Path, help="also log here (sent back on an Init failure)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.variant:
        parser.error("no attestation variant: set CONSTEL_ATTESTATION_VARIANT or pass --variant")
    if not args.metadata:
        if args.csp != "qemu":
            parser.error(
                f"no metadata provider for CSP {args.csp or '(none)'!r}: pass --metadata qemu[:URL] or local:FILE"
            )
        args.metadata = "qemu"
    if args.join_interval < 0 or args.join_timeout <= 0:
        parser.error("--join-interval must be >= 0 and --join-timeout > 0")
    return args


def make_issuer(variant: str, tcti: str, event_log: Path | None) -> Any:
    if variant == "qemu-vtpm":
        from starlock.attestation.qemu import QemuVtpmIssuer

        return QemuVtpmIssuer(tcti, event_log_path=event_log)
    if variant == "dummy":
        from starlock.atls import DummyIssuer

        return DummyIssuer(insecure=True)
    raise StartupError(
        f"attestation variant {variant!r}: the bootstrapper issues for qemu-vtpm (and dummy, for tests) only; the "
        "cloud variants need their instance-metadata adapters, which are not implemented yet"
    )


def make_driver(args: argparse.Namespace, me: InstanceMetadata, disk: StateDisk) -> Any:
    if args.driver == "local":
        from starlock.bootstrapper.localdriver import LocalDriver

        admin = args.local_admin_kubeconfig
        return LocalDriver(me.name, me.vpc_ip, (lambda: admin) if admin else None, disk.mount_point() / "kubelet")
    from starlock.bootstrapper.kubeadm import KubeadmDriver

    return KubeadmDriver.for_node(me, root=args.root)


class Rebooter:
    """What a fatal error does after the disk is marked for reset."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, reason: str) -> int:
        _log.critical("fatal bootstrap error; the state disk is marked for reset", extra={"fields": {"error": reason}})
        if self.mode == "exit":
            return EXIT_FATAL
        import syslog

        syslog.syslog(syslog.LOG_EMERG, f"starlock-bootstrapper: fatal: {reason}; rebooting in 1 minute")
        time.sleep(REBOOT_DELAY)
        os.sync()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.reboot(0x01234567)  # LINUX_REBOOT_CMD_RESTART
        raise OSError(ctypes.get_errno(), "reboot(2) failed")


def read_logs_source(log_file: Path | None) -> Callable[[], bytes]:
    """journald for this unit's invocation when run by systemd, else the bootstrapper's log file."""
    invocation = os.environ.get("INVOCATION_ID", "")
    journalctl = shutil.which("journalctl")

    def read() -> bytes:
        if invocation and journalctl:
            try:
                out = subprocess.run(  # noqa: S603 - journalctl with our own arguments
                    [journalctl, "--no-pager", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={invocation}"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                ).stdout
                return out[-MAX_LOG_BYTES:]
            except (OSError, subprocess.SubprocessError):
                return b""
        if log_file is None:
            return b""
        try:
            with log_file.open("rb") as src:
                size = src.seek(0, os.SEEK_END)
                src.seek(max(0, size - MAX_LOG_BYTES))
                return src.read(MAX_LOG_BYTES)
        except OSError:
            return b""

    return read


def wait_for_self(metadata: MetadataProvider, stop: threading.Event, interval: float) -> InstanceMetadata | None:
    """Spec §5.5 step 2: until the metadata names this node and gives it a role."""
    while not stop.is_set():
        try:
            me = metadata.self()
            if me.name and me.role is not Role.UNKNOWN:
                return me
            _log.info("metadata: no name or role yet")
        except MetadataError as exc:
            _log.warning("metadata unavailable", extra={"fields": {"error": str(exc)}})
        stop.wait(interval)
    return None


def principals(me: InstanceMetadata) -> list[str]:
    """The SSH host certificate's principals: the VPC IP and the host name (upstream also adds
    every non-loopback interface address)."""
    return [p for p in dict.fromkeys([me.vpc_ip, me.name, socket.gethostname()]) if p]


@dataclass
class _Outcome:
    fatal: str = ""


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    from starlock.nodelock import NodeLock, NodeLockError

    issuer = make_issuer(args.variant, args.tcti, args.event_log)
    metadata = open_metadata(args.metadata, timeout=args.join_timeout)
    disk = open_state_disk(args.state_disk)
    _log.info("state disk", extra={"fields": {"uuid": disk.uuid(), "initialized": disk.is_initialized()}})
    lock = NodeLock(args.tcti, args.root / "run" / "starlock" / "nodelock")
    me = wait_for_self(metadata, stop, max(args.join_interval, 0.05))
    if me is None:
        return 0
    driver = make_driver(args, me, disk)

    def endpoints() -> list[str]:
        own = me.vpc_ip if me.role is Role.CONTROL_PLANE else ""
        return control_plane_endpoints(metadata, own_ip=own, port=args.join_service_port)

    try:
        bootstrapped = lock.is_node_bootstrapped()
    except NodeLockError as exc:
        raise StartupError(f"reading PCR 15: {exc}") from None
    if not bootstrapped and disk.is_initialized():
        _log.info("state disk initialized but PCR 15 is zero: rejoining")
        if _rejoin_or_recover(args, stop, issuer=issuer, endpoints=endpoints, disk=disk, lock=lock, me=me) is None:
            return 0
        bootstrapped = True
    if bootstrapped:
        driver.start_kubelet()
        _log.info("node already bootstrapped: kubelet started")
        return 0

    return _serve(args, stop, issuer=issuer, metadata=metadata, disk=disk, lock=lock, me=me, driver=driver,
                  endpoints=endpoints)  # fmt: skip


def _rejoin_or_recover(
    args: argparse.Namespace,
    stop: threading.Event,
    *,
    issuer: Any,
    endpoints: Callable[[], list[str]],
    disk: StateDisk,
    lock: Any,
    me: InstanceMetadata,
) -> NodeState | None:
    """Spec §4.4: a rejoin ticket or, on a control plane, the operator's recovery; None if stopped."""
    delivery = KeyDelivery(disk, lock)
    rejoin = RejoinClient(
        issuer=issuer,
        endpoints=endpoints,
        delivery=delivery,
        disk_uuid=disk.uuid(),
        interval=args.join_interval,
        timeout=args.join_timeout,
    )
    _on_stop(stop, rejoin.stop)
    recovery: RecoveryServer | None = None
    front = None
    if me.role is Role.CONTROL_PLANE:
        recovery = RecoveryServer(disk_uuid=disk.uuid(), delivery=delivery, on_done=rejoin.stop)
        try:
            front = serve_recovery(recovery, issuer, args.recovery_listen)
            _log.info("recovery server listening", extra={"fields": {"port": front.port}})
        except (OSError, AtlsError) as exc:  # the rejoin can still bring the node back
            _log.error(
                "recovery server not started; rejoining only",
                extra={"fields": {"listen": args.recovery_listen, "error": f"{type(exc).__name__}: {exc}"}},
            )
    try:
        state = rejoin.run()
    finally:
        if front is not None:
            front.stop(grace=5)  # lets the answer to a successful Recover go out
    if recovery is not None and recovery.fatal_error is not None:
        raise recovery.fatal_error
    return state or delivery.state


def _on_stop(stop: threading.Event, action: Callable[[], None]) -> None:
    def wait_then_act() -> None:
        stop.wait()
        action()

    threading.Thread(target=wait_then_act, name="on-stop", daemon=True).start()


def _serve(
    args: argparse.Namespace,
    stop: threading.Event,
    *,
    issuer: Any,
    metadata: MetadataProvider,
    disk: StateDisk,
    lock: Any,
    me: InstanceMetadata,
    driver: Any,
    endpoints: Callable[[], list[str]],
) -> int:
    """Spec §5.1 run steps 3-5: the init server and the join client; one of them wins the lock."""
    try:
        init_hash = metadata.init_secret_hash()
    except MetadataError as exc:
        raise StartupError(f"the init secret hash: {exc}") from None
    if not init_hash:
        raise StartupError("the metadata holds no init secret hash")
    cleaner = Cleaner()
    init = InitServer(
        init_secret_hash=init_hash,
        node_lock=lock,
        disk=disk,
        driver=driver,
        cleaner=cleaner,
        ssh_dir=disk.mount_point() / "ssh",
        principals=lambda: principals(me),
        read_logs=read_logs_source(args.log_file),
    )
    from starlock.atls import ServerConfig
    from starlock.atls.rpc import AttestedServer
    from starlock.joinproto import init_pb2_grpc

    grpc_server = grpc.server(
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="init"),
        options=[("grpc.keepalive_time_ms", 15_000)],
    )
    init_pb2_grpc.add_APIServicer_to_server(init, grpc_server)  # type: ignore[no-untyped-call]  # generated, untyped
    front = AttestedServer(grpc_server, ServerConfig(issuer=issuer), args.listen).start()
    _log.info("init server listening", extra={"fields": {"port": front.port, "role": me.role.value}})
    join = JoinClient(
        issuer=issuer,
        endpoints=endpoints,
        disk=disk,
        node_lock=lock,
        driver=driver,
        on_locked=cleaner.clean,
        role=me.role,
        node_name=me.name,
        node_ip=me.vpc_ip,
        principals=lambda: principals(me),
        paths=JoinPaths(
            ssh_dir=disk.mount_point() / "ssh",
            pki_dir=args.root / "etc" / "kubernetes" / "pki",
            kubelet_pki_dir=disk.mount_point() / "kubelet" / "pki",
        ),
        timing=JoinTiming(interval=args.join_interval, timeout=args.join_timeout),
    )

    def stop_init() -> None:
        init.stop()
        front.stop(grace=5)

    cleaner.register(stop_init)
    cleaner.register(join.stop)
    cleaner.start()
    outcome = _Outcome()

    def join_loop() -> None:
        try:
            join.start()
        except JoinError as exc:
            outcome.fatal = str(exc)
            cleaner.clean()

    joiner = threading.Thread(target=join_loop, name="join-client", daemon=True)
    joiner.start()
    _on_stop(stop, cleaner.clean)
    cleaner.wait()
    joiner.join()
    return _finish(args, disk, init, join, outcome)


def _finish(args: argparse.Namespace, disk: StateDisk, init: InitServer, join: JoinClient, outcome: _Outcome) -> int:
    if init.fatal_error is not None and not outcome.fatal:
        outcome.fatal = f"Init failed after the node lock: {type(init.fatal_error).__name__}"
    if outcome.fatal:
        try:
            disk.mark_for_reset()
        except StateDiskError as exc:
            _log.error("marking the state disk for reset failed", extra={"fields": {"error": str(exc)}})
        return Rebooter(args.on_fatal)(outcome.fatal)
    _log.info("bootstrapper done", extra={"fields": {"joined": join.joined}})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose, args.log_file)
    stop = stop_on_signals()
    try:
        return run(args, stop)
    except (StartupError, MetadataError, StateDiskError, RejoinError) as exc:
        _log.error("bootstrapper cannot continue", extra={"fields": {"error": str(exc)}})
        print(f"starlock-bootstrapper: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
