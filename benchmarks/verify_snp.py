"""Benchmark: SEV-SNP reports verified per second vs the cryptographic floor.

Report: snp/trustee-milan-vcek (VCEK-signed Milan report, accepted under the default policy plus
Constellation's default ID-key digest), chain = other/amd-kds-roots/ask_ark_milan.pem.

* **cached**: ``SnpVerifier.verify`` with certificates already loaded and the chain verified once
  (the verifier caches it): report parsing and format checks, product, chain lookup by
  fingerprint, validity periods at the verification time, the report signature, report-vs-VCEK
  binding and the policy.
* **floor**: one ECDSA P-384/SHA-384 verification of the same report with ``cryptography``
  (key loaded and DER signature built outside the timed loop).
* **cold**: ``verify_report`` from bytes: certificate loading, VCEK profile, the three RSA-PSS
  chain signatures (VCEK<-ASK, ASK<-ARK, ARK<-ARK), then the report as above.

Rates are the best of 5 interleaved rounds. Prints the rates and the ratios (target: cached / floor
time <= 1.5). Vectors are read from ``../shared/vectors`` beside the repository or ``$STARLOCK_VECTORS``.

    python benchmarks/verify_snp.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable

from bench_rates import rate, vectors
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from starlock.attestation.snp import SnpPolicy, SnpVerifier, verify_report
from starlock.attestation.trust import load_certificates

REPORT = "snp/trustee-milan-vcek/test-report.bin"
VCEK = "snp/trustee-milan-vcek/test-vcek.der"
CHAIN = "other/amd-kds-roots/ask_ark_milan.pem"
DIGEST = bytes.fromhex(
    "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3"
)


def _warm_rate(fn: Callable[[], object], seconds: float) -> float:
    fn()  # warm up
    return rate(fn, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description="SEV-SNP report verification rate vs the crypto floor")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    args = parser.parse_args()

    v = vectors(REPORT, "verify_snp")
    report, vcek_der, chain_pem = (v / REPORT).read_bytes(), (v / VCEK).read_bytes(), (v / CHAIN).read_bytes()
    at = datetime.datetime.now(datetime.UTC)
    policy = SnpPolicy(accepted_id_key_digests=[DIGEST])
    (vcek,) = load_certificates(vcek_der)
    chain = load_certificates(chain_pem)
    verifier = SnpVerifier(policy)
    verifier.verify(report, vcek, chain, at=at)  # verifies and caches the chain; fails loudly if rejected

    public = vcek.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = encode_dss_signature(
        int.from_bytes(report[0x2A0:0x2E8], "little"), int.from_bytes(report[0x2E8:0x330], "little")
    )
    signed, algorithm = report[:0x2A0], ec.ECDSA(hashes.SHA384())

    def floor() -> None:
        public.verify(signature, signed, algorithm)

    def cached() -> None:
        verifier.verify(report, vcek, chain, at=at)

    def cold() -> None:
        verify_report(report, vcek_der, chain_pem, policy, at=at)

    # Interleaved rounds, best rate of each: the machine's load changes less within a round.
    rounds = 5
    rates: dict[str, list[float]] = {"floor": [], "cached": [], "cold": []}
    for _ in range(rounds):
        for name, fn in (("floor", floor), ("cached", cached), ("cold", cold)):
            rates[name].append(_warm_rate(fn, args.seconds / rounds))
    floor_rate, cached_rate, cold_rate = (max(rates[n]) for n in ("floor", "cached", "cold"))
    ratio = floor_rate / cached_rate
    print(f"report: {REPORT} (Milan VCEK), chain: {CHAIN}")
    print(f"floor  (1 ECDSA P-384 verify):        {floor_rate:10.1f} /s  {1e6 / floor_rate:8.1f} us")
    print(f"cached (SnpVerifier, chain cached):   {cached_rate:10.1f} /s  {1e6 / cached_rate:8.1f} us")
    print(f"cold   (verify_report, chain checked):{cold_rate:10.1f} /s  {1e6 / cold_rate:8.1f} us")
    print(f"ratio cached/floor time: {ratio:.2f} (target <= 1.5) {'OK' if ratio <= 1.5 else 'OVER TARGET'}")
    print(f"ratio cold/floor time:   {floor_rate / cold_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
