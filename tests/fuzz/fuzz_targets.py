"""The registry of fuzz targets: what each one runs, which errors may escape, its seeds, what it covers.

Importing this module imports no Starlock package: the runner imports the targets inside
atheris' instrumentation, so that every Starlock module gets coverage feedback.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fuzz_corpus import REPO_ROOT, Vectors

__all__ = ["TARGETS", "Target", "guarded", "module_file"]

OneInput = Callable[[bytes], None]
Errors = tuple[type[BaseException], ...]

_SOURCES = {
    "starlock.attestation": "libs/attestation/src",
    "starlock.atls": "libs/atls/src",
    "starlock.kms": "libs/kms/src",
    "starlock.joinservice": "services/joinservice/src",
    "starlock.bootstrapper": "services/bootstrapper/src",
}


def module_file(module: str) -> Path:
    """The source file of a Starlock module, found without importing it (coverage starts first)."""
    for prefix, src in _SOURCES.items():
        if module == prefix or module.startswith(prefix + "."):
            return REPO_ROOT / src / (module.replace(".", "/") + ".py")
    raise KeyError(module)


@dataclass(frozen=True)
class Target:
    name: str
    #: "module:function" building the one-input function (imported lazily).
    builder: str
    #: "module:NAME" (a tuple) or "module:function" (returning one) of the errors that may escape.
    allowed: str
    seeds: Callable[[Vectors | None], list[bytes]]
    #: Modules whose line/branch coverage the report shows (the parser under test).
    coverage: tuple[str, ...]
    needs_vectors: bool = True
    #: libFuzzer dictionary entries (tokens of the format the mutator should try).
    dictionary: tuple[bytes, ...] = ()

    def build(self) -> OneInput:
        fn: Callable[[], OneInput] = _resolve(self.builder)
        return fn()

    def allowed_errors(self) -> Errors:
        value = _resolve(self.allowed)
        return value() if callable(value) else value  # type: ignore[no-any-return]


def _resolve(ref: str) -> object:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


#: Crashes already kept as failing tests in ``regressions/`` (exception type, text of its message),
#: per target. The fuzzer steps over them so that it can find others, and so that the smoke run
#: fails on new crashes only; the regression tests fail until the fix. Remove an entry with its fix.
KNOWN_CRASHES: dict[str, tuple[tuple[type[BaseException], str], ...]] = {}  # all fixed; see regressions/


def guarded(one: OneInput, allowed: Errors, known: tuple[tuple[type[BaseException], str], ...] = ()) -> OneInput:
    """The function the fuzzer calls: the target's typed errors are fine, anything else propagates
    (except the ``known`` crashes, which are already regression tests)."""

    def run(data: bytes) -> None:
        try:
            one(data)
        except allowed:
            pass
        except Exception as exc:
            if not any(isinstance(exc, kind) and text in str(exc) for kind, text in known):
                raise

    return run


# --- seeds -------------------------------------------------------------------------------------


def _v(method: str) -> Callable[[Vectors | None], list[bytes]]:
    def seeds(vectors: Vectors | None) -> list[bytes]:
        if vectors is None:
            return []
        found: list[bytes] = getattr(vectors, method)()
        return found

    return seeds


def _atls_docs(vectors: Vectors | None) -> list[bytes]:
    from targets_atls import atls_documents

    return atls_documents(vectors.documents_json()[0] if vectors is not None else None)


def _atls_certs(vectors: Vectors | None) -> list[bytes]:
    from targets_atls import certificate_seeds

    return certificate_seeds(_atls_docs(vectors))


def _generated(ref: str) -> Callable[[Vectors | None], list[bytes]]:
    def seeds(_vectors: Vectors | None) -> list[bytes]:
        fn: Callable[[], list[bytes]] = _resolve(ref)  # type: ignore[assignment]
        return fn()

    return seeds


_JSON_TOKENS = (
    b'"\\ud800"',
    b'"\\udfff"',
    b'"\\u0000"',
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b'"SHA256"',
    b'"quotes"',
    b'"pcrs"',
    b'"hash"',
    b'"TeeAttestation"',
    b'"instance_info"',
    b'"keys"',
    b'"kid"',
    b'"n"',
    b'"e"',
    b'"HCLAkPub"',
)
_URI_TOKENS = (
    b"kms://",
    b"storage://",
    b"cluster-kms",
    b"vault",
    b"no-store",
    b"?",
    b"&",
    b"=",
    b"%",
    b"%00",
    b"%C3%A9",
    b"%ED%A0%80",
    b"+",
    b"#",
    b"@",
    b":",
    b"[::1]",
    b"key=",
    b"salt=",
    b"token=",
    b"tokenFile=",
    b"address=",
    b"keyName=",
    b"storeDir=",
    b"caFile=",
    b"timeout=",
    b"https://",
    b"http://127.0.0.1:8200",
)
_A = "targets_attestation"
_ALLOWED_A = f"{_A}:ALLOWED"

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("snp_report", f"{_A}:build_snp_report", _ALLOWED_A, _v("snp_reports"),
               ("starlock.attestation.snp.report",)),
        Target("snp_cert_table", f"{_A}:build_snp_cert_table", _ALLOWED_A, _v("cert_tables"),
               ("starlock.attestation.snp.certtable", "starlock.attestation.snp.endorsement")),
        Target("hcl_report", f"{_A}:build_hcl_report", _ALLOWED_A, _v("hcl_reports"),
               ("starlock.attestation.azure.hcl",)),
        Target("hcl_runtime_data", f"{_A}:build_hcl_runtime_data", _ALLOWED_A, _v("runtime_data"),
               ("starlock.attestation.azure.hcl",), dictionary=_JSON_TOKENS),
        Target("tpm_attest", f"{_A}:build_tpm_attest", _ALLOWED_A, _v("tpms_attest"),
               ("starlock.attestation.tpm.structures", "starlock.attestation.tpm._reader")),
        Target("tpm_public", f"{_A}:build_tpm_public", _ALLOWED_A, _v("tpmt_publics"),
               ("starlock.attestation.tpm.public",)),
        Target("tpm_signature", f"{_A}:build_tpm_signature", _ALLOWED_A, _v("tpmt_signatures"),
               ("starlock.attestation.tpm.structures",)),
        Target("event_log", f"{_A}:build_event_log", _ALLOWED_A, _v("event_logs"),
               ("starlock.attestation.tpm.eventlog", "starlock.attestation.tpm._specid")),
        Target("attdoc_json", f"{_A}:build_attdoc_json", _ALLOWED_A, _v("documents_json"),
               ("starlock.attestation.document",), dictionary=_JSON_TOKENS),
        Target("attdoc_pb", f"{_A}:build_attdoc_pb", _ALLOWED_A, _v("documents_pb"),
               ("starlock.attestation._proto.convert",)),
        Target("atls_certificate", "targets_atls:build_atls_certificate", "targets_atls:ALLOWED", _atls_certs,
               ("starlock.atls._wire",)),
        Target("atls_extension", "targets_atls:build_atls_extension", "targets_atls:ALLOWED", _atls_docs,
               ("starlock.atls._wire", "starlock.atls.dummy", "starlock.attestation.vtpm")),
        Target("sni_nonce", "targets_atls:build_sni_nonce", "targets_atls:ALLOWED",
               _generated("targets_atls:sni_seeds"), ("starlock.atls._hello",), needs_vectors=False),
        Target("kms_uri", "targets_kms:build_kms_uri", "targets_kms:ALLOWED", _generated("targets_kms:kms_seeds"),
               ("starlock.kms.uri", "starlock.kms.vault._config"), needs_vectors=False, dictionary=_URI_TOKENS),
        Target("join_request", "targets_services:build_join_request", "targets_services:allowed_join",
               _generated("targets_services:join_seeds"),
               ("starlock.joinservice.ticket", "starlock.joinservice.kubeletca", "starlock.joinservice.sshca"),
               needs_vectors=False),
        Target("init_request", "targets_services:build_init_request", "targets_services:allowed_init",
               _generated("targets_services:init_seeds"), ("starlock.bootstrapper.initserver",),
               needs_vectors=False),
    )
}  # fmt: skip


def _selftest() -> OneInput:
    def one(data: bytes) -> None:
        if b"FUZZ" in data:
            raise ValueError("selftest: the crash the harness must report")

    return one


if os.environ.get("STARLOCK_FUZZ_SELFTEST") == "1":  # test_fuzz_smoke checks that crashes are reported
    TARGETS["selftest"] = Target(
        "selftest", "fuzz_targets:_selftest", "targets_kms:ALLOWED", lambda _v: [b"FUZ", b"FUZZ"],
        ("starlock.kms.uri",), needs_vectors=False,
    )  # fmt: skip
