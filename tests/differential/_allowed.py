"""The intended differences between Starlock and go-sev-guest / go-tpm-tools.

This is the table of libs/attestation/README.md, "Differences from go-sev-guest and go-tpm-tools"
(``test_readme_lists_every_intended_difference`` keeps the two in step). A disagreement is
intended only when its case's tag matches one of an entry's patterns (fnmatch) *and* the verdicts
go the entry's way; any other disagreement fails the differential test.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import attrs


@attrs.frozen
class Intended:
    key: str  # the row's name in the README table
    patterns: tuple[str, ...]
    starlock_accepts: bool
    go_accepts: bool
    reason: str

    def covers(self, tag: str, starlock: bool, go: bool) -> bool:
        return (starlock, go) == (self.starlock_accepts, self.go_accepts) and any(
            fnmatchcase(tag, p) for p in self.patterns
        )


INTENDED: tuple[Intended, ...] = (
    # --- SEV-SNP -----------------------------------------------------------------------------------
    Intended(
        "evidence-ark-must-be-trusted",
        ("snp.vector.ark-flip.*",),
        False,
        True,
        "Starlock stricter: the ARK in the chain must be byte-identical to a pinned (or explicitly "
        "trusted) root. Constellation ignores an ARK sent by the issuer and uses its configured amdRootKey.",
    ),
    Intended(
        "amd-ca-profile",
        ("snp.synthetic.ask.*", "snp.synthetic.asvk.*", "snp.synthetic.ark.*"),
        False,
        True,
        "Starlock stricter: ASK, ASVK and ARK must follow AMD's CA profile (RSASSA-PSS with SHA-384, "
        "keyUsage keyCertSign, CA basicConstraints). With TrustedRoots, go-sev-guest runs only Go's "
        "x509 Verify, which accepts PKCS#1 v1.5, other hashes and a missing keyUsage, and never looks at the root.",
    ),
    Intended(
        "mitigation-vectors-reserved-before-v5",
        (
            "snp.synthetic.mit-vectors-*",
            "snp.synthetic.resigned-flip.launch_mit_vector",
            "snp.synthetic.resigned-flip.current_mit_vector",
        ),
        False,
        True,
        "Starlock stricter: bytes 0x1F8-0x207 (LAUNCH_MIT_VECTOR, CURRENT_MIT_VECTOR) are reserved and "
        "must be zero in reports below version 5. go-sev-guest does not check them.",
    ),
    Intended(
        "go-sev-guest-cpuid-round-trip",
        ("snp.synthetic.resigned-flip.cpuid",),
        True,
        False,
        "go-sev-guest bug: it verifies the signature over the report re-encoded from its protobuf, "
        "and the protobuf keeps CPUID family/model/stepping only as a packed CPUID(1).EAX value. A signed "
        "stepping above 0xF (or a family or model that does not fit) changes in the round trip, so the "
        "signature fails.",
    ),
    Intended(
        "go-sev-guest-cpuid-unsigned-bits",
        ("snp.vector.flip.cpuid",),
        False,
        True,
        "go-sev-guest bug (a signature bypass, for those bits): for the same reason, bits of the signed "
        "CPUID bytes that the packed value drops (e.g. the high nibble of the stepping at 0x18A) can be "
        "changed in a real report, and go-sev-guest still accepts its signature. Starlock verifies the "
        "signature over the bytes as received.",
    ),
    Intended(
        "product-name-must-match-cpuid",
        ("snp.synthetic.signer.product-name-other-line",),
        False,
        True,
        "Starlock stricter: for a v3+ report whose CPUID names the product, the signer's productName "
        "must name the same line. go-sev-guest reads productName only for v2 reports.",
    ),
    Intended(
        "kds-metadata-extensions-optional",
        (
            "snp.synthetic.signer.product-name-missing",
            "snp.synthetic.signer.struct-version-missing",
            "snp.synthetic.signer.spl4-missing",
        ),
        True,
        False,
        "Starlock more permissive, by design: the product comes from the signed CPUID or the "
        "configured product, and the TCB from blSPL/teeSPL/snpSPL/ucodeSPL. So a signer without "
        "productName, structVersion or spl_4 is accepted (Turin VCEKs drop spl_4). The ASK still has to "
        "sign it. go-sev-guest requires every one of these extensions.",
    ),
    Intended(
        "turin",
        ("snp.turin.*",),
        True,
        False,
        "go-sev-guest limitation: Constellation's fork has no Turin support. It rejects the fmcSPL "
        "extension and expects a 64-byte hwID. Starlock implements Turin (structVersion 1, 8-byte hwID, "
        "fmc in the TCB).",
    ),
    # --- TPM (go-tpm-tools server.VerifyAttestation) ------------------------------------------------
    Intended(
        "go-tpm-tools-replays-sha256-only",
        (
            "tpm.*.attest-flip.SHA256.*",
            "tpm.*.signature-flip.SHA256.*",
            "tpm.*.pcr-value.SHA256",
            "tpm.*.pcr-dropped.SHA256",
            "tpm.*.quotes.only-SHA384",
            "tpm.*.quotes.only-SHA512",
            "tpm.*.quotes.without-SHA256",
            "tpm.eventlog-flip.digest.SHA256",
        ),
        True,
        False,
        "go-tpm-tools limitation: with go-eventlog, the event log fails to replay against the "
        "SHA-384 and SHA-512 banks of logs that do replay (checked independently), so in practice only "
        "the SHA-256 quote can pass. Starlock replays every bank and accepts the most preferred quote "
        "that verifies (SHA-512, SHA-384, SHA-256). When only the SHA-256 quote, its PCRs or its log "
        "digests are damaged, Starlock accepts on a higher bank and Go rejects.",
    ),
    Intended(
        "strict-ak-public-area",
        ("tpm.*.ak-pub-flip.keyBits", "tpm.*.ak-pub-flip.nameAlg", "tpm.*.ak-pub-flip.scheme"),
        False,
        True,
        "Starlock stricter: the AK's TPMT_PUBLIC must parse strictly. nameAlg must be a hash, "
        "keyBits a standard size that matches the modulus, and the scheme valid for the key type; a fixed "
        "scheme must also be the one the quote was signed with. go-tpm-tools compares only the key material "
        "with the trusted AK.",
    ),
    Intended(
        "data-bound-events",
        (
            "tpm.eventlog-flip.event-data.type0x4",
            "tpm.eventlog-flip.event-data.type0x5",
            "tpm.eventlog-flip.event-data.type0x80000007",
            "tpm.eventlog-flip.event-data.type0x80000001",
            "tpm.eventlog-flip.event-type",
        ),
        False,
        True,
        "Starlock stricter: for EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION and EV_EFI_VARIABLE_DRIVER_CONFIG "
        "the digest must be the hash of the event data (TCG PFP), so the logged data is what was "
        "measured. This also catches an event whose type was changed into one of those types. "
        "go-tpm-tools replays the digests only.",
    ),
    Intended(
        "strict-specid-header",
        ("tpm.eventlog-flip.specid-event",),
        False,
        True,
        "Starlock stricter: the log's first event (TCG_PCR_EVENT with the Spec ID) must be well formed, "
        "with a PCR index in range, before any event is replayed. go-tpm-tools tolerated the flipped header.",
    ),
    Intended(
        "event-pcr-index-range",
        ("tpm.eventlog-flip.pcr-index",),
        False,
        True,
        "Starlock stricter: an event for a PCR index above 31 makes the log malformed. go-tpm-tools "
        "skips events for PCRs it does not replay.",
    ),
    Intended(
        "no-machine-state-in-verify",
        ("tpm.eventlog-flip.event-type", "tpm.eventlog-flip.event-data.*"),
        True,
        False,
        "Starlock more permissive, by design: verify_attestation accepts on replayed PCR values and "
        "marks each event's data as verified (digest == hash of data) or as an unchecked claim. It does "
        "not build go-tpm-tools' MachineState, whose parsers (S-CRTM version, secure-boot variables, "
        "event-type rules) fail the quote on unmeasured event metadata. Code that reads such claims "
        "(e.g. gcp/es.py) checks the events it uses.",
    ),
)


def intended_for(tag: str, starlock: bool, go: bool) -> Intended | None:
    return next((e for e in INTENDED if e.covers(tag, starlock, go)), None)
