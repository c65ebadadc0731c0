"""Fuzz target of the KMS URIs (``kms://``, ``storage://``, ``kms://vault``), as ``open_kms`` reads them.

Only :class:`~starlock.kms.interface.KmsError` may escape. The Vault backend is never opened: its
``open_vault_kms`` would read the token file and create the store directory named by the fuzzed
URI, so :func:`no_vault_io` replaces it with the pure parse followed by a typed refusal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_plus

from fuzz_common import check

from starlock.kms.interface import KmsError, KmsNotSupported

OneInput = Callable[[bytes], None]

ALLOWED: tuple[type[BaseException], ...] = (KmsError,)

#: Parameters whose values are secrets: never in an error message or a repr.
SECRET_PARAMS = ("accessKey", "clientSecret", "token", "key", "salt")
_LOOKS_SECRET = re.compile(r"(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z]).{12,}")


def no_vault_io() -> None:
    """Make ``open_kms`` parse ``kms://vault`` URIs without touching files or the network."""
    import starlock.kms.vault as vault
    from starlock.kms.vault._config import parse_vault_uri

    def parse_only(uri: str) -> object:
        parse_vault_uri(uri)
        raise KmsNotSupported("fuzzing: the Vault backend is parsed, never opened")

    vault.open_vault_kms = parse_only  # type: ignore[assignment] # stub for the fuzz process only


def secret_values(uri: str) -> list[str]:
    """Decoded values of the secret parameters that look like real secrets (for the leak check)."""
    _, _, query = uri.partition("?")
    out = []
    for item in query.split("&"):
        name, _, raw = item.partition("=")
        if name in SECRET_PARAMS:
            value = unquote_plus(raw, errors="replace")
            if _LOOKS_SECRET.fullmatch(value):
                out.append(value)
    return out


def check_no_leak(uri: str, text: str, where: str, others: str = "") -> None:
    for value in secret_values(uri):
        if value in text and value not in others:
            raise AssertionError(f"{where} shows the value of a secret parameter")


def build_kms_uri() -> OneInput:
    from starlock.kms import open_kms
    from starlock.kms.uri import (
        VaultKmsConfig,
        encode_kms_uri,
        encode_storage_uri,
        parse_kms_uri,
        parse_storage_uri,
    )
    from starlock.kms.vault._config import parse_vault_uri

    no_vault_io()

    def kms(text: str) -> None:
        config = parse_kms_uri(text)
        if not isinstance(config, VaultKmsConfig):
            check(parse_kms_uri(encode_kms_uri(config)) == config, "parse_kms_uri(encode_kms_uri(c)) != c")
            public = " ".join(str(v) for k, v in vars_of(config).items() if k not in ("access_key", "client_secret"))
            check_no_leak(text, repr(config), "repr of a KMS config", public)

    def storage(text: str) -> None:
        config = parse_storage_uri(text)
        check(parse_storage_uri(encode_storage_uri(config)) == config, "parse_storage_uri(encode(c)) != c")

    def vault(text: str) -> None:
        config = parse_vault_uri(text)
        check(config.address.startswith(("http://", "https://")), "vault address without http(s)")
        check(0 < config.timeout <= 300, f"vault timeout {config.timeout}")
        public = " ".join(str(v) for k, v in vars_of(config).items() if k != "token")
        check_no_leak(text, repr(config), "repr of a Vault config", public)

    def both(text: str) -> None:
        kms_uri, _, storage_uri = text.partition("\n")
        open_kms(kms_uri, storage_uri or "storage://no-store")

    modes = (kms, storage, vault, both)

    def one(data: bytes) -> None:
        if not data:
            return
        text = data[1:].decode("utf-8", "replace")
        try:
            modes[data[0] % len(modes)](text)
        except KmsError as exc:
            check_no_leak(text, str(exc), "a KmsError message")
            raise

    return one


def vars_of(config: object) -> dict[str, object]:
    slots = getattr(type(config), "__slots__", ())
    return {name: getattr(config, name) for name in slots}


def kms_seeds() -> list[bytes]:
    """Well-formed URIs of every kind (mode byte first), made here: the vectors hold none."""
    uris = [
        (0, "kms://cluster-kms?key=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=&salt=c2FsdHNhbHRzYWx0c2FsdA=="),
        (0, "kms://aws?region=eu-west-1&accessKeyID=AKIA1&accessKey=Sec%2Bret%26&keyName=k1"),
        (0, "kms://azure?tenantID=t&clientID=c&clientSecret=s&vaultName=v&vaultType=default&keyName=k"),
        (0, "kms://gcp?projectID=p&location=global&keyRing=r&credentialsPath=%2Fetc%2Fc.json&keyName=k"),
        (1, "storage://no-store"),
        (1, "storage://aws?bucket=b&region=r&accessKeyID=i&accessKey=k"),
        (1, "storage://azure?account=a&container=c&tenantID=t&clientID=c&clientSecret=s"),
        (1, "storage://gcp?projectID=p&bucket=b&credentialsPath=%2Fc.json"),
        (2, "kms://vault?address=https://vault.example:8200&keyName=starlock&token=hvs.AbC123&timeout=5"),
        (2, "kms://vault?address=http://127.0.0.1:8200&keyName=k&tokenFile=/run/t&storeDir=/var/lib/s"),
        (2, "kms://vault?address=https://[::1]:8200&keyName=k&token=t&caFile=/ca.pem&kvMount=kv&kvPrefix=a/b"),
        (3, "kms://cluster-kms?key=AAAA&salt=AAAA\nstorage://no-store"),
        (3, "kms://vault?address=https://v:1&keyName=k&token=t\nstorage://gcp?projectID=p&bucket=b&credentialsPath=c"),
    ]
    return [bytes([mode]) + uri.encode() for mode, uri in uris]
