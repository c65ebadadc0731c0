"""``starlock init`` (spec §1.3, §5.3).

1. The attestation config → the validator the node must satisfy (aTLS; the node attests).
2. The master secret: ``--master-secret`` or a new one written (0600) to ``--out`` **before**
   anything is sent, so a successful Init can never lose it. A fresh 32-byte measurement salt.
3. ``/init.API/Init``, retried every ``--retry-interval`` only while the status is UNAVAILABLE and
   only until a connection has been established once (no resumption, as upstream).
4. Success: the admin kubeconfig (0600) with its server's host rewritten to the endpoint's host
   (port kept), ``starlock-state.json`` (endpoint, cluster ID, measurement salt), the cluster ID
   printed. Failure: the node's streamed log saved to a file whose path is printed; exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import grpc
import yaml

from starlock.cli._common import (
    EXIT_OK,
    EXIT_REFUSED,
    CliError,
    load_validator,
    raise_if_refused,
    read_file,
    split_endpoint,
    write_private,
)

__all__ = ["run_init"]

MASTER_SECRET_FILE = "constellation-mastersecret.json"  # noqa: S105 - a file name
ADMIN_KUBECONFIG = "starlock-admin.conf"
STATE_FILE = "starlock-state.json"
MAX_INIT_SECRET = 1024


def rewrite_kubeconfig(kubeconfig: bytes, host: str) -> bytes:
    """The single cluster's server host becomes ``host``; its scheme and port stay."""
    try:
        doc = yaml.safe_load(kubeconfig)
        clusters = doc["clusters"]
        if len(clusters) != 1:
            raise CliError(f"the node's admin kubeconfig has {len(clusters)} clusters; expected one", EXIT_REFUSED)
        server = urllib.parse.urlsplit(clusters[0]["cluster"]["server"])
    except (yaml.YAMLError, KeyError, TypeError, IndexError):
        raise CliError("the node returned a malformed admin kubeconfig", EXIT_REFUSED) from None
    netloc = f"[{host}]" if ":" in host else host
    if server.port:
        netloc += f":{server.port}"
    clusters[0]["cluster"]["server"] = urllib.parse.urlunsplit(server._replace(netloc=netloc))
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _master_secret(args: argparse.Namespace, out: Path) -> Any:
    from starlock.kms import KmsError
    from starlock.kms.mastersecret import MasterSecret, read_master_secret_file, write_master_secret_file

    try:
        if args.master_secret:
            return read_master_secret_file(args.master_secret)
        secret = MasterSecret.generate()
        write_master_secret_file(out / MASTER_SECRET_FILE, secret)
        return secret
    except KmsError as exc:
        raise CliError(str(exc)) from None


def _components(path: str | None) -> list[Any]:
    from starlock.joinproto import components_pb2

    if not path:
        return []
    try:
        items = json.loads(read_file(path, "components"))
        return [components_pb2.Component(**item) for item in items]
    except (ValueError, TypeError, AttributeError) as exc:
        raise CliError(f"--components {path}: not a JSON list of components ({type(exc).__name__})") from None


def _call(endpoint: str, validator: Any, request: Any, timeout: float) -> tuple[list[Any], bool, grpc.RpcError | None]:
    """One attempt: the responses, whether the connection ever got READY, the error if any."""
    from starlock.atls import ClientConfig
    from starlock.atls.rpc import attested_channel
    from starlock.joinproto import init_pb2_grpc

    ready = threading.Event()
    responses: list[Any] = []

    def on_state(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            ready.set()

    with attested_channel(endpoint, ClientConfig(validators=[validator])) as channel:
        channel.subscribe(on_state)
        try:
            for response in init_pb2_grpc.APIStub(channel).Init(request, timeout=timeout):  # type: ignore[no-untyped-call]  # generated, untyped
                ready.set()
                responses.append(response)
        except grpc.RpcError as exc:
            raise_if_refused(channel.last_error, endpoint)
            return responses, ready.is_set(), exc
        finally:
            channel.unsubscribe(on_state)
    return responses, True, None


def run_init(args: argparse.Namespace) -> int:
    host, _ = split_endpoint(args.endpoint)
    validator = load_validator(args.config, args.variant)
    init_secret = read_file(args.init_secret, "init secret", MAX_INIT_SECRET).strip()
    if not init_secret:
        raise CliError(f"the init secret file {args.init_secret} is empty")
    out = Path(args.out)
    if not out.is_dir():
        raise CliError(f"--out {out} is not a directory")
    components = _components(args.components)
    master = _master_secret(args, out)
    salt = secrets.token_bytes(32)
    from starlock.joinproto import init_pb2

    request = init_pb2.InitRequest(
        kms_uri=master.to_uri(),
        storage_uri="storage://no-store",
        measurement_salt=salt,
        kubernetes_version=args.kubernetes_version,
        kubernetes_components=components,
        init_secret=init_secret,
        cluster_name=args.cluster_name,
        apiserver_cert_sans=list(args.apiserver_cert_san),
        service_cidr=args.service_cidr,
        conformance_mode=args.conformance,
    )
    deadline = time.monotonic() + args.timeout
    while True:
        remaining = max(1.0, deadline - time.monotonic())
        responses, connected, error = _call(args.endpoint, validator, request, remaining)
        if error is None or connected or error.code() is not grpc.StatusCode.UNAVAILABLE:
            break
        if time.monotonic() + args.retry_interval > deadline:
            raise CliError(f"the init server at {args.endpoint} stayed unavailable: {error.details()}")
        print(f"starlock init: {args.endpoint} unavailable, retrying in {args.retry_interval:g} s", file=sys.stderr)
        time.sleep(args.retry_interval)
    return _result(args, host, salt, responses, error)


def _result(args: argparse.Namespace, host: str, salt: bytes, responses: list[Any], error: grpc.RpcError | None) -> int:
    out = Path(args.out)
    success = next((r.init_success for r in responses if r.WhichOneof("kind") == "init_success"), None)
    if success is not None and error is None:
        kubeconfig = rewrite_kubeconfig(bytes(success.kubeconfig), host)
        write_private(out / ADMIN_KUBECONFIG, kubeconfig)
        cluster_id = bytes(success.cluster_id).hex()
        state = {"endpoint": args.endpoint, "clusterID": cluster_id, "measurementSalt": salt.hex()}
        write_private(out / STATE_FILE, json.dumps(state, indent=2).encode() + b"\n")
        if args.json:
            print(json.dumps({"ok": True, "clusterID": cluster_id, "kubeconfig": str(out / ADMIN_KUBECONFIG)}))
        else:
            print(f"Cluster ID:       {cluster_id}")
            print(f"Admin kubeconfig: {out / ADMIN_KUBECONFIG}")
            print(f"State:            {out / STATE_FILE} (measurement salt for join-config)")
        return EXIT_OK
    failure = next((r.init_failure.error for r in responses if r.WhichOneof("kind") == "init_failure"), "")
    logs = b"".join(bytes(r.log.log) for r in responses if r.WhichOneof("kind") == "log")
    reason = failure or (error.details() if error is not None else "no result from the node")
    if not responses and error is not None:
        code = error.code().name
        raise CliError(f"Init at {args.endpoint} failed before any answer ({code}): {error.details()}")
    message = f"Init failed: {reason}"
    if logs:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        log_path = out / f"starlock-init-failure-{stamp}.log"
        write_private(log_path, logs)
        message += f"; the node's log is in {log_path}"
    raise CliError(message, EXIT_REFUSED)
