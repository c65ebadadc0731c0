"""``starlock verify`` (spec §1.5, §4.2): a fresh nonce to the node's verification service, the
returned document checked for that nonce, the user data ``VerifyService`` and the attestation
config, and, with ``--cluster-id``, PCR 15 holding this cluster's mark."""

from __future__ import annotations

import argparse
import hmac
import json
import secrets
from typing import Any

import grpc

from starlock.cli._common import EXIT_OK, EXIT_REFUSED, CliError, load_validator

__all__ = ["USER_DATA", "run_verify"]

USER_DATA = b"VerifyService"


def _fetch(args: argparse.Namespace, validator: Any, nonce: bytes) -> bytes:
    from starlock.joinproto import verify_pb2, verify_pb2_grpc

    request = verify_pb2.GetAttestationRequest(nonce=nonce)

    def call(channel: grpc.Channel) -> bytes:
        stub = verify_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
        reply = stub.GetAttestation(request, timeout=args.timeout)
        return bytes(reply.attestation)

    try:
        if args.insecure_plaintext:
            with grpc.insecure_channel(args.endpoint) as plain:
                return call(plain)
        from starlock.atls import ClientConfig
        from starlock.atls.rpc import attested_channel

        with attested_channel(args.endpoint, ClientConfig(validators=[validator])) as channel:
            try:
                return call(channel)
            except grpc.RpcError as exc:
                from starlock.atls.errors import AttestationRejected, NoCompatibleAttestation, UserDataMismatch

                atls_error = channel.last_error
                if isinstance(atls_error, AttestationRejected | NoCompatibleAttestation | UserDataMismatch):
                    raise CliError(f"the service's aTLS attestation was refused: {atls_error}", EXIT_REFUSED) from None
                raise exc
    except grpc.RpcError as exc:
        raise CliError(f"GetAttestation at {args.endpoint}: {exc.code().name}: {exc.details()}") from None


def run_verify(args: argparse.Namespace) -> int:
    cluster_id: bytes | None = None
    if args.cluster_id is not None:
        try:
            cluster_id = bytes.fromhex(args.cluster_id)
        except ValueError:
            raise CliError("--cluster-id must be hex") from None
        if len(cluster_id) != 32:
            raise CliError("--cluster-id must be 32 bytes (64 hex digits)")
    validator = load_validator(args.config, args.variant, cluster_id=cluster_id)
    nonce = secrets.token_bytes(32)
    document = _fetch(args, validator, nonce)
    report = validator.evaluate(document, nonce)
    user_data_ok = report.user_data is not None and hmac.compare_digest(report.user_data, USER_DATA)
    accepted = report.accepted and user_data_ok
    error = None
    if report.error is not None:
        error = f"{type(report.error).__name__}: {report.error}"
    elif not user_data_ok:
        error = "the document's user data is not 'VerifyService'"
    rows = [(c.name, c.status.value, c.detail) for c in report.checks]
    rows.append(("user data", "ok" if user_data_ok else "fail", "VerifyService" if user_data_ok else "mismatch"))
    if args.json:
        doc = {
            "ok": accepted,
            "endpoint": args.endpoint,
            "variant": report.variant.value,
            "error": error,
            "checks": [{"name": n, "status": s, "detail": d} for n, s, d in rows],
            "claims": dict(report.claims),
        }
        print(json.dumps(doc, default=str))
    else:
        width = max(len(n) for n, _, _ in rows)
        print(f"Node:    {args.endpoint} ({report.variant.value})")
        if cluster_id is not None:
            print(f"Cluster: {cluster_id.hex()} (PCR 15 must hold its mark)")
        print()
        print(f"{'CHECK':<{width}}  {'STATUS':<6}  DETAIL")
        for name, status, detail in rows:
            print(f"{name:<{width}}  {status.upper():<6}  {detail}")
        print(f"\nResult:  {'VERIFIED' if accepted else 'REFUSED'}" + (f" ({error})" if error else ""))
    return EXIT_OK if accepted else EXIT_REFUSED
