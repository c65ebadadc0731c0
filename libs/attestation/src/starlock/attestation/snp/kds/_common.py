"""KDS constants, errors and URLs (``/vcek/v1/…`` and ``/{vcek,vlek}/v1/…/cert_chain``, §3)."""

from __future__ import annotations

import logging
import urllib.parse

from starlock.attestation.errors import AttestationError, ConfigError, MalformedEvidence
from starlock.attestation.snp.report import Product, SigningKey, TcbParts, TcbVersion

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_SIZE",
    "KdsError",
    "KdsNotFound",
    "KdsOfflineError",
    "KdsUnavailable",
    "cert_chain_url",
    "hwid_for",
    "vcek_url",
]

# One logger for the whole adapter, named after the public module (as before the split).
log = logging.getLogger("starlock.attestation.snp.kds")

DEFAULT_BASE_URL = "https://kdsintf.amd.com"
MAX_RESPONSE_SIZE = 64 * 1024
"""Largest KDS response accepted (bytes): a ``cert_chain`` is about 4.6 KiB, a VCEK about 1.4 KiB."""


class KdsError(AttestationError):
    """Fetching from the AMD KDS failed (HTTP error, throttling, bad response, offline)."""

    check = "kds"


class KdsNotFound(KdsError):
    """The KDS answered 404: it has no certificate for this product / chip ID / TCB."""


class KdsUnavailable(KdsError):
    """The KDS kept failing or throttling (429/5xx/network) beyond the retry bounds."""


class KdsOfflineError(KdsError):
    """A certificate is missing and the client is offline, so it may not be fetched."""


def _product(value: Product | str) -> Product:
    if isinstance(value, Product):
        return value
    try:
        return Product.from_name(value)
    except MalformedEvidence as exc:
        raise ConfigError(f"AMD product: {exc}") from None


def _kind(signing_key: SigningKey) -> str:
    if signing_key not in (SigningKey.VCEK, SigningKey.VLEK):
        raise ConfigError(f"KDS signing key: expected VCEK or VLEK, got {signing_key!r}")
    return signing_key.name.lower()


def _spls(product: Product, tcb: TcbVersion | TcbParts) -> TcbParts:
    """The SPLs a VCEK URL names; a :class:`TcbVersion` (REPORTED_TCB) is split with the product's layout."""
    parts = tcb.parts(product.tcb_layout) if isinstance(tcb, TcbVersion) else tcb
    if (parts.fmc is not None) != (product is Product.TURIN):
        raise ConfigError(f"VCEK for {product}: fmcSPL is {'required' if product is Product.TURIN else 'not used'}")
    TcbVersion.compose(parts, product.tcb_layout)  # range check of every part
    return parts


def _query(parts: TcbParts) -> str:
    query = f"blSPL={parts.bootloader}&teeSPL={parts.tee}&snpSPL={parts.snp}&ucodeSPL={parts.microcode}"
    return query if parts.fmc is None else f"{query}&fmcSPL={parts.fmc}"


def _base(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"KDS base URL: expected https://host[:port][/path], got {base_url!r}")
    return base_url.rstrip("/")


def hwid_for(product: Product | str, chip_id: bytes) -> bytes:
    """The hwID a VCEK of ``product`` carries: CHIP_ID (64 bytes), or its first 8 bytes for Turin."""
    line = _product(product)
    chip_id = bytes(chip_id)
    if line is Product.TURIN:
        if len(chip_id) == 64 and not any(chip_id[8:]):
            chip_id = chip_id[:8]
        elif len(chip_id) != 8:
            raise MalformedEvidence(
                f"CHIP_ID for Turin: expected 8 bytes, or 64 bytes with bytes 8..63 zero; got {len(chip_id)} "
                f"bytes {chip_id.hex()}"
            )
    elif len(chip_id) != 64:
        raise MalformedEvidence(f"CHIP_ID for {line}: expected 64 bytes, got {len(chip_id)}")
    if not any(chip_id):
        raise MalformedEvidence("CHIP_ID is all zero (masked by MASK_CHIP_ID): the KDS cannot serve a VCEK for it")
    return chip_id


def vcek_url(
    product: Product | str, chip_id: bytes, tcb: TcbVersion | TcbParts, *, base_url: str = DEFAULT_BASE_URL
) -> str:
    """``{base}/vcek/v1/{Line}/{hex hwID}?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…[&fmcSPL=…]`` (§3).

    ``tcb`` is the report's REPORTED_TCB (or its parts); ``chip_id`` its CHIP_ID.
    """
    line = _product(product)
    return f"{_base(base_url)}/vcek/v1/{line}/{hwid_for(line, chip_id).hex()}?{_query(_spls(line, tcb))}"


def cert_chain_url(
    product: Product | str, signing_key: SigningKey = SigningKey.VCEK, *, base_url: str = DEFAULT_BASE_URL
) -> str:
    """``{base}/vcek/v1/{Line}/cert_chain`` (ASK+ARK) or ``{base}/vlek/v1/{Line}/cert_chain`` (ASVK+ARK)."""
    return f"{_base(base_url)}/{_kind(signing_key)}/v1/{_product(product)}/cert_chain"
