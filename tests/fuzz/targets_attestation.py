"""Fuzz targets of starlock-attestation: SNP, HCL, TPM structures, event logs, documents.

Each ``build_*`` returns the one-input function; only :class:`AttestationError` (the library's
error base) may escape it. Anything else, and every :class:`InvariantViolation`, is a crash.
"""

from __future__ import annotations

from collections.abc import Callable

from fuzz_common import InvariantViolation, check

from starlock.attestation.errors import AttestationError

OneInput = Callable[[bytes], None]

ALLOWED: tuple[type[BaseException], ...] = (AttestationError,)


def build_snp_report() -> OneInput:
    from starlock.attestation.snp import REPORT_SIZE, determine_product, parse_report, report_claims

    def one(data: bytes) -> None:
        report = parse_report(data)
        check(len(data) == REPORT_SIZE, f"parse_report accepted {len(data)} bytes")
        try:
            product = determine_product(report, None)[0]
        except AttestationError:
            product = None  # no CPUID bytes (v2) and no certificate: a typed refusal
        report_claims(report, product, None)

    return one


def build_snp_cert_table() -> OneInput:
    from starlock.attestation.snp import VCEK_GUID, VLEK_GUID, parse_cert_table, parse_endorsement_key
    from starlock.attestation.trust import load_certificates

    def one(data: bytes) -> None:
        table = parse_cert_table(data)
        guids = [entry.guid for entry in table.entries]
        check(len(guids) == len(set(guids)), "parse_cert_table returned a repeated GUID")
        for entry in table.entries:
            check(len(entry.data) == entry.length, "entry data length differs from its header")
            check(data[entry.offset : entry.offset + entry.length] == entry.data, "entry data is not its slice")
            if entry.guid in (VCEK_GUID, VLEK_GUID):
                # the library's loader for untrusted certificates, as the SNP verifier uses it
                (cert,) = load_certificates(entry.data, max_certs=1)
                parse_endorsement_key(cert)

    return one


def build_hcl_report() -> OneInput:
    from starlock.attestation.azure.hcl import check_runtime_data_binding, parse_hcl_report, parse_runtime_data
    from starlock.attestation.snp import parse_report

    def one(data: bytes) -> None:
        hcl = parse_hcl_report(data)
        check(b"\x00" not in hcl.runtime_data, "runtime data keeps a NUL byte")
        check(len(hcl.snp_report) == 0x4A0, f"HCL SNP report is {len(hcl.snp_report)} bytes")
        report = parse_report(hcl.snp_report)
        parse_runtime_data(hcl.runtime_data)
        check_runtime_data_binding(hcl.runtime_data, report.report_data)

    return one


def build_hcl_runtime_data() -> OneInput:
    from starlock.attestation.azure.hcl import parse_runtime_data

    def one(data: bytes) -> None:
        runtime = parse_runtime_data(data)
        check(1 <= len(runtime.keys) <= 16, f"{len(runtime.keys)} runtime keys")
        runtime.ak_key()

    return one


def build_tpm_attest() -> OneInput:
    from starlock.attestation.tpm import parse_tpms_attest

    def one(data: bytes) -> None:
        attest = parse_tpms_attest(data)
        check(attest.raw == data, "TPMS_ATTEST.raw is not the input")
        for sel in attest.pcr_select:
            check(all(0 <= pcr < 8 * len(sel.select) for pcr in sel.indices), "PCR index out of the select bitmap")

    return one


def build_tpm_public() -> OneInput:
    from starlock.attestation.tpm import parse_tpmt_public, public_keys_equal

    def one(data: bytes) -> None:
        public = parse_tpmt_public(data)
        check(public.raw == data, "TPMT_PUBLIC.raw is not the input")
        name = public.name()
        check(name[:2] == public.name_alg.to_bytes(2, "big"), "name does not start with nameAlg")
        check(public_keys_equal(public, public.public_key()), "a key differs from itself")
        check(parse_tpmt_public(public.raw) == public, "parse is not deterministic")

    return one


def build_tpm_signature() -> OneInput:
    from starlock.attestation.tpm import parse_tpmt_signature

    def one(data: bytes) -> None:
        parse_tpmt_signature(data)

    return one


def build_event_log() -> OneInput:
    from starlock.attestation.gcp.es import gce_platform_state
    from starlock.attestation.tpm import parse_event_log, replay

    def one(data: bytes) -> None:
        log = parse_event_log(data)
        for hash_alg in log.hash_algs:
            pcrs = replay(log, hash_alg)
            check(all(0 <= i < 32 for i in pcrs), "replayed PCR index out of range")
        gce_platform_state(log)

    return one


def build_attdoc_json() -> OneInput:
    from starlock.attestation.document import AttestationDocument

    def one(data: bytes) -> None:
        doc = AttestationDocument.from_json(data)
        again = AttestationDocument.from_json(doc.to_json())
        if again != doc:
            raise InvariantViolation("from_json(to_json(doc)) != doc")

    return one


def build_attdoc_pb() -> OneInput:
    from starlock.attestation._proto.convert import attestation_from_pb, attestation_to_pb

    def one(data: bytes) -> None:
        att = attestation_from_pb(data)
        again = attestation_from_pb(attestation_to_pb(att))
        if again != att:
            raise InvariantViolation("attestation_from_pb(attestation_to_pb(a)) != a")

    return one
