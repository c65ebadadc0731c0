"""Which modules of a package are mutated by default, and which test files exercise each.

Paths of modules are relative to the package directory (``src/starlock/<package>``) and may be
globs; test files are relative to the package's ``tests`` folder, most specific first (pytest
runs with ``-x``, so a mutant dies at the first failing test). A module not listed here, or
whose test files no longer exist, runs the package's whole test folder.

The table was made from which test files call into which module (a profiling run of each
suite) and is meant to be edited as tests move; a survivor that only the whole suite kills
(``--confirm-survivors``) points at a missing entry.
"""

from __future__ import annotations

__all__ = ["TARGETS"]

_TPM = (
    "test_mutation_tpm.py",
    "test_tpm_quote.py",
    "test_vtpm_binding.py",
    "test_tpm_vectors.py",
    "test_tpm_eventlog.py",
    "test_tpm_fuzz.py",
    "test_qemu_validator.py",
    "test_variant_common.py",
    "test_variant_aws_nitrotpm.py",
    "test_variant_gcp_es.py",
)
_SNP = (
    "test_mutation_snp.py",
    "test_snp_vectors.py",
    "test_snp_policy.py",
    "test_snp_chain_profile.py",
    "test_snp_policy_config.py",
    "test_snp_parsers.py",
    "test_snp_kds.py",
    "test_snp_cli.py",
    "test_cli_bundled_evidence.py",
    "test_variant_gcp_snp.py",
    "test_variant_aws_snp.py",
)

#: package -> {module path or glob: test files}
TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    "attestation": {
        "vtpm.py": (
            "test_mutation_tpm.py",
            "test_vtpm_binding.py",
            "test_qemu_validator.py",
            "test_variant_common.py",
            "test_tpm_vectors.py",
            "test_variant_aws_nitrotpm.py",
            "test_variant_gcp_es.py",
            "test_variant_azure_trustedlaunch.py",
            "test_cli_usage.py",
            "test_attestation_readme.py",
        ),
        "tpm/quote.py": _TPM,
        "tpm/eventlog*.py": ("test_tpm_eventlog.py", "test_tpm_eventdata.py", *_TPM),
        "measurements.py": (
            "test_mutation_measurements.py",
            "test_measurements.py",
            "test_config.py",
            "test_config_unenforced.py",
            "test_variant_common.py",
            "test_qemu_validator.py",
            "test_cli_usage.py",
            "test_cli_bundled_evidence.py",
            "test_attestation_readme.py",
        ),
        "snp/verify.py": _SNP,
        "snp/certs.py": ("test_snp_chain_profile.py", "test_snp_parsers.py", *_SNP),
        "snp/caprofile.py": ("test_snp_chain_profile.py", *_SNP),
        "snp/endorsement.py": ("test_snp_chain_profile.py", "test_snp_parsers.py", *_SNP),
        "snp/policy.py": ("test_snp_policy.py", "test_snp_policy_config.py", *_SNP),
        "snp/report.py": ("test_snp_parsers.py", *_SNP),
    },
    "atls": {
        "_wire.py": (
            "test_atls_wire.py",
            "test_atls_certificate.py",
            "test_atls_rejections.py",
            "test_atls_handshake.py",
            "test_atls_bindings.py",
            "test_atls_warnings.py",
            "test_atls_interop.py",
        ),
        "_hello.py": (
            "test_atls_hello.py",
            "test_atls_admission.py",
            "test_atls_handshake.py",
            "test_atls_rejections.py",
        ),
        "_handshake.py": (
            "test_atls_handshake.py",
            "test_atls_rejections.py",
            "test_atls_warnings.py",
            "test_atls_admission.py",
            "test_atls_grpc.py",
            "test_atls_tunnel.py",
            "test_atls_interop.py",
        ),
    },
    "kms": {
        "derive.py": ("test_kms_derive.py", "test_kms_keyservice.py", "test_kms_readme.py"),
        "cluster.py": ("test_kms_derive.py", "test_kms_keyservice.py", "test_kms_uri.py", "test_kms_readme.py"),
        "vault/_kms.py": (
            "test_kms_vault.py",
            "test_kms_vault_store.py",
            "test_kms_vault_down.py",
            "test_kms_vault_uri.py",
            "test_kms_vault_redirect.py",
            "test_kms_vault_reset.py",
        ),
        "vault/_store.py": (
            "test_kms_vault_store.py",
            "test_kms_vault.py",
            "test_kms_vault_down.py",
            "test_kms_vault_redirect.py",
            "test_kms_vault_uri.py",
            "test_kms_vault_reset.py",
        ),
        "keyservice/server.py": (
            "test_kms_keyservice.py",
            "test_kms_keyservice_errors.py",
            "test_kms_deadline.py",
            "test_kms_keyservice_shutdown.py",
            "test_kms_keyservice_process.py",
        ),
    },
}
