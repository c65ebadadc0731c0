"""``starlock recover`` (spec §1.6, §4.4): bring control planes back after the whole cluster rebooted.

A rebooted node gets its disk key from a join service (a rejoin ticket); when every control plane
rebooted, no join service is up, and each control plane waits on its recovery server (port 9999)
instead. For each ``--endpoint`` (default: the host ``starlock init`` used, from ``--state``, on
port 9999):

1. aTLS: the node must satisfy ``--config`` (the attestation config, as for ``starlock init``);
   a node that fails attestation is refused at once, never retried.
2. ``/recoverproto.API/Recover`` with the KMS URI of ``--master-secret`` (the file ``starlock
   init`` wrote) and ``storage://no-store``, retried every ``--retry-interval`` while the node is
   UNAVAILABLE (still booting) or RESOURCE_EXHAUSTED (busy with other callers) until ``--timeout``.
3. The node answers once the key derived from the secret opened its state disk and PCR 15 is
   marked again. A disk that does not open with it (another cluster's secret) is
   PERMISSION_DENIED: nothing changed on the node, refused here (exit 1).

Exit 0 when every endpoint recovered; otherwise 1 when a node refused (or failed attestation),
else 2 (unreachable, bad input), with one line per failed endpoint on stderr. The secret is never
printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from starlock.cli._common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    load_validator,
    raise_if_refused,
    read_file,
    split_endpoint,
)

__all__ = ["RECOVERY_PORT", "run_recover"]

#: The port of a control plane's recovery server (spec §1.7).
RECOVERY_PORT = 9999

#: Status codes after which trying again cannot help: the node answered and refused.
_REFUSALS = {
    grpc.StatusCode.PERMISSION_DENIED: "refused the master secret",
    grpc.StatusCode.INVALID_ARGUMENT: "refused the request",
    grpc.StatusCode.UNIMPLEMENTED: "cannot use this KMS",
    grpc.StatusCode.FAILED_PRECONDITION: "cannot recover",
    grpc.StatusCode.INTERNAL: "failed to recover",
}


#: Status codes worth another try: the node is still booting, or busy with other recoveries.
_RETRY = {grpc.StatusCode.UNAVAILABLE: "unavailable", grpc.StatusCode.RESOURCE_EXHAUSTED: "busy"}


def _request(path: str) -> Any:
    from starlock.joinproto import recover_pb2
    from starlock.kms import KmsError
    from starlock.kms.mastersecret import read_master_secret_file

    try:
        master = read_master_secret_file(path)
    except KmsError as exc:
        raise CliError(str(exc)) from None
    return recover_pb2.RecoverMessage(kms_uri=master.to_uri(), storage_uri="storage://no-store")


def _call(endpoint: str, validator: Any, request: Any, timeout: float) -> grpc.RpcError | None:
    """One attempt; the error if any (an attestation refusal raises)."""
    from starlock.atls import ClientConfig
    from starlock.atls.rpc import attested_channel
    from starlock.joinproto import recover_pb2_grpc

    with attested_channel(endpoint, ClientConfig(validators=[validator])) as channel:
        try:
            recover_pb2_grpc.APIStub(channel).Recover(request, timeout=timeout)  # type: ignore[no-untyped-call]  # generated, untyped
        except grpc.RpcError as exc:
            raise_if_refused(channel.last_error, endpoint)
            return exc
    return None


def recover_one(endpoint: str, validator: Any, request: Any, *, timeout: float, retry_interval: float) -> None:
    """Recover one node; raises :class:`CliError` with the reason."""
    deadline = time.monotonic() + timeout
    while True:
        error = _call(endpoint, validator, request, max(1.0, deadline - time.monotonic()))
        if error is None:
            return
        code = error.code()
        if code in _REFUSALS:
            raise CliError(f"the node at {endpoint} {_REFUSALS[code]}: {error.details()}", EXIT_REFUSED)
        if code not in _RETRY:
            raise CliError(f"recovery at {endpoint} failed ({code.name}): {error.details()}")
        if time.monotonic() + retry_interval > deadline:
            raise CliError(f"the recovery server at {endpoint} stayed unavailable: {error.details()}")
        print(f"starlock recover: {endpoint} {_RETRY[code]}, retrying in {retry_interval:g} s", file=sys.stderr)
        time.sleep(retry_interval)


def _endpoints(args: argparse.Namespace) -> list[str]:
    """``--endpoint``s, or the host ``starlock init`` talked to (from ``--state``) on port 9999."""
    if args.endpoint:
        for endpoint in args.endpoint:
            split_endpoint(endpoint)
        return list(dict.fromkeys(args.endpoint))
    if not Path(args.state).is_file():
        raise CliError(
            f"no --endpoint given and no state file {args.state} (run where starlock init wrote it, "
            "pass --state, or --endpoint HOST:9999)"
        )
    try:
        state = json.loads(read_file(args.state, "state file", 64 * 1024))
        host, _ = split_endpoint(str(state["endpoint"]))
    except (ValueError, KeyError, TypeError, CliError):
        raise CliError(f"no --endpoint given and {args.state} holds no HOST:PORT endpoint") from None
    return [f"[{host}]:{RECOVERY_PORT}" if ":" in host else f"{host}:{RECOVERY_PORT}"]


def run_recover(args: argparse.Namespace) -> int:
    endpoints = _endpoints(args)
    validator = load_validator(args.config, args.variant)
    request = _request(args.master_secret)
    recovered: list[str] = []
    failed: dict[str, CliError] = {}
    for endpoint in endpoints:
        try:
            recover_one(endpoint, validator, request, timeout=args.timeout, retry_interval=args.retry_interval)
        except CliError as exc:
            failed[endpoint] = exc
            continue
        recovered.append(endpoint)
        if not args.json:
            print(f"Recovered: {endpoint}")
    if len(failed) == 1 and not recovered and not args.json:
        raise next(iter(failed.values()))
    for reason in failed.values():
        print(f"starlock recover: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": not failed, "recovered": recovered, "failed": {e: str(x) for e, x in failed.items()}}))
    if not failed:
        return EXIT_OK
    return EXIT_REFUSED if any(x.exit_code == EXIT_REFUSED for x in failed.values()) else EXIT_USAGE
