"""verify_bare_quote applies tpm.quote's signature rules to a key given on its own (a PEM key or
certificate has no TPM scheme): SHA-2 signatures only, the algorithm the key type can make."""

from __future__ import annotations

import pytest
from test_tpm_quote import ECDSA, NONCE, NULL, RSAPSS, SHA1, SHA384, ak_for, ecc_key, make_quote, rsa_key

from starlock.attestation.errors import NonceMismatch, SignatureError
from starlock.attestation.formats import verify_bare_quote


@pytest.mark.parametrize("as_key", [False, True], ids=["tpmt-public", "cryptography-key"])
def test_a_good_quote_verifies_and_names_its_selection(as_key: bool) -> None:
    key, eck = rsa_key(), ecc_key()
    for private, sig in ((key, {"sig_alg": RSAPSS}), (eck, {"sig_hash": SHA384})):
        ak = ak_for(private, NULL)
        quote = make_quote(private, **sig)  # type: ignore[arg-type]
        verified = verify_bare_quote(quote.quote, quote.raw_sig, ak.public_key() if as_key else ak, NONCE)
        assert verified.attest.extra_data == NONCE
        assert verified.selection() == {"SHA256": list(range(24))}


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("sha1 signature", SignatureError, "SHA1 is not allowed"),
        ("rsa key, ecdsa signature", SignatureError, "ECDSA cannot be made by a RSA AK"),
        ("ecc key, rsa signature", SignatureError, "RSASSA cannot be made by a ECC AK"),
        ("other key", SignatureError, "does not verify"),
        ("other nonce", NonceMismatch, "extraData"),
    ],
)
def test_bare_quote_refusals(case: str, error: type[Exception], match: str) -> None:
    key, eck = rsa_key(), ecc_key()
    ak, quote, nonce = {
        "sha1 signature": (ak_for(key, NULL).public_key(), make_quote(key, sig_hash=SHA1), NONCE),
        "rsa key, ecdsa signature": (key.public_key(), make_quote(eck, sig_alg=ECDSA), NONCE),
        "ecc key, rsa signature": (eck.public_key(), make_quote(key), NONCE),
        "other key": (rsa_key(1).public_key(), make_quote(key), NONCE),
        "other nonce": (key.public_key(), make_quote(key), b"\x43" * 32),
    }[case]
    with pytest.raises(error, match=match):
        verify_bare_quote(quote.quote, quote.raw_sig, ak, nonce)
