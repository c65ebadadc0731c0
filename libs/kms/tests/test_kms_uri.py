"""KMS and storage URIs (spec §3.3): parsing, encoding, errors without secrets, hypothesis."""

from __future__ import annotations

import base64
import contextlib
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlock.kms import (
    NO_STORE_URI,
    AwsKmsConfig,
    AwsStorageConfig,
    AzureKmsConfig,
    AzureStorageConfig,
    ClusterKmsConfig,
    GcpKmsConfig,
    GcpStorageConfig,
    KmsConfigError,
    KmsNotSupported,
    MasterSecret,
    NoStoreConfig,
    VaultKmsConfig,
    encode_kms_uri,
    encode_storage_uri,
    open_kms,
    parse_kms_uri,
    parse_storage_uri,
)
from starlock.kms.uri import MAX_URI_LENGTH

KEY = bytes(range(32))
SALT = bytes(range(32, 64))
GOOD = MasterSecret(KEY, SALT).to_uri()


def _forms(secret: bytes) -> list[str]:
    """Every textual form a secret could leak in."""
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        secret.decode("latin-1"),
    ]


def _assert_no_secret(message: str, *secrets: bytes) -> None:
    for s in secrets:
        for form in _forms(s):
            assert form not in message


def test_cluster_kms_uri_parses() -> None:
    cfg = parse_kms_uri(GOOD)
    assert isinstance(cfg, ClusterKmsConfig)
    assert cfg.master_secret == MasterSecret(KEY, SALT)
    assert encode_kms_uri(cfg) == GOOD
    assert parse_storage_uri(NO_STORE_URI) == NoStoreConfig()
    assert encode_storage_uri(NoStoreConfig()) == "storage://no-store"


def test_percent_escaped_padding_accepted() -> None:
    uri = GOOD.replace("=", "%3D").replace("key%3D", "key=").replace("salt%3D", "salt=")
    assert parse_kms_uri(uri) == parse_kms_uri(GOOD)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("kms://cluster-kms?salt=" + base64.urlsafe_b64encode(SALT).decode(), "'key' is missing"),
        ("kms://cluster-kms?key=&salt=AAAA", "'key' is missing or empty"),
        ("kms://cluster-kms?key=AAAA", "'salt' is missing"),
        ("kms://cluster-kms?key=AAA&salt=AAAA", "'key' is not padded URL-safe base64"),
        ("kms://cluster-kms?key=AA+/&salt=AAAA", "'key' is not padded URL-safe base64"),
        ("kms://cluster-kms?key=AAAA&salt=AA==AA==", "'salt' is not padded URL-safe base64"),
        ("kms://cluster-kms?key=AAAA&key=AAAA&salt=AAAA", "given more than once"),
        ("kms://cluster-kms?key=%zz&salt=AAAA", "malformed query parameter"),
        ("kms://cluster-kms?key=%ff%fe&salt=AAAA", "not UTF-8"),
        ("kms://cluster-kms/path?key=AAAA&salt=AAAA", "must not have a path"),
        ("kms://cluster-kms?key=AAAA&salt=AAAA#frag", "must not have a fragment"),
        ("kms://user@cluster-kms?key=AAAA&salt=AAAA", "user info or a port"),
        ("kms://cluster-kms:9?key=AAAA&salt=AAAA", "user info or a port"),
        ("kms://unknown?key=AAAA", "unknown KMS type"),
        ("kms://Cluster-KMS?key=AAAA&salt=AAAA", "unknown KMS type"),
        ("storage://no-store", "must start with kms://"),
        ("kms://cluster-kms?key=AA AA&salt=AAAA", "printable ASCII"),
        ("kms://aws?region=r&accessKeyID=i&keyName=n", "'accessKey' is missing"),
        ("kms://azure?tenantID=t&clientID=c&clientSecret=s&vaultName=v&keyName=k", "'vaultType' is missing"),
        ("kms://gcp?projectID=p&location=l&keyRing=r&keyName=k", "'credentialsPath' is missing"),
        ("x" * (MAX_URI_LENGTH + 1), "longer than"),
    ],
)
def test_kms_uri_errors(uri: str, fragment: str) -> None:
    with pytest.raises(KmsConfigError, match=fragment):
        parse_kms_uri(uri)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("storage://s3", "unknown storage type"),
        ("kms://no-store", "must start with storage://"),
        ("storage://aws?bucket=b&region=r&accessKeyID=i", "'accessKey' is missing"),
        ("storage://azure?account=a&container=c&tenantID=t&clientID=c", "'clientSecret' is missing"),
        ("storage://gcp?projectID=p&bucket=b", "'credentialsPath' is missing"),
    ],
)
def test_storage_uri_errors(uri: str, fragment: str) -> None:
    with pytest.raises(KmsConfigError, match=fragment):
        parse_storage_uri(uri)


def test_not_a_string() -> None:
    with pytest.raises(KmsConfigError, match="must be a string"):
        parse_kms_uri(b"kms://cluster-kms")  # type: ignore[arg-type]


def test_external_configs_parse_and_refuse_to_open() -> None:
    aws = parse_kms_uri("kms://aws?region=eu-west-1&accessKeyID=AKIA&accessKey=a%2Bb%2Fc&keyName=k")
    assert aws == AwsKmsConfig(region="eu-west-1", access_key_id="AKIA", access_key="a+b/c", key_name="k")
    assert "a+b/c" not in repr(aws)
    azure = parse_kms_uri(
        "kms://azure?tenantID=t&clientID=c&clientSecret=s3cr3t&vaultName=v&vaultType=managedhsm.azure.net&keyName=k"
    )
    assert isinstance(azure, AzureKmsConfig)
    assert azure.vault_type == "managedhsm.azure.net"
    assert "s3cr3t" not in repr(azure)
    gcp = parse_kms_uri("kms://gcp?projectID=p&location=l&keyRing=r&credentialsPath=/c.json&keyName=k")
    assert gcp == GcpKmsConfig("p", "l", "r", "/c.json", "k")
    for cfg, name in ((aws, "aws"), (azure, "azure"), (gcp, "gcp")):
        with pytest.raises(KmsNotSupported, match=f"kms://{name} is not supported"):
            open_kms(encode_kms_uri(cfg))
    assert isinstance(parse_storage_uri("storage://aws?bucket=b&region=r&accessKeyID=i&accessKey=k"), AwsStorageConfig)
    with pytest.raises(KmsNotSupported, match="storage backends"):
        open_kms("kms://vault?x=1", "storage://gcp?projectID=p&bucket=b&credentialsPath=c")


def test_encoder_escapes_values() -> None:
    """Upstream's encoder writes values verbatim (quirk, §3.3); ours escapes, so values round-trip."""
    cfg = AwsKmsConfig(region="r", access_key_id="id", access_key="a&b=c+d/e%f#g h", key_name="k")
    uri = encode_kms_uri(cfg)
    assert uri == "kms://aws?region=r&accessKeyID=id&accessKey=a%26b=c%2Bd%2Fe%25f%23g%20h&keyName=k"
    assert parse_kms_uri(uri) == cfg


def test_cluster_kms_minimum_lengths_only_when_asked() -> None:
    short = MasterSecret(b"key", b"salt").to_uri()
    assert open_kms(short).get_dek("key-x", 4)  # upstream unit-test inputs are accepted
    with pytest.raises(KmsConfigError, match="master secret is 3 bytes, need at least 16"):
        open_kms(short, check_lengths=True)
    with pytest.raises(KmsConfigError, match="salt is 4 bytes, need at least 32"):
        open_kms(MasterSecret(KEY, b"salt").to_uri(), check_lengths=True)


def test_missing_external_backend_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "starlock.kms.vault", None)
    with pytest.raises(KmsNotSupported, match=r"starlock\.kms\.vault\) is not installed"):
        open_kms("kms://vault?address=http://127.0.0.1:8200")
    assert isinstance(parse_kms_uri("kms://vault?token=t"), VaultKmsConfig)
    assert "token=t" not in repr(parse_kms_uri("kms://vault?token=t"))


# --- hypothesis -----------------------------------------------------------------------------

text_values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(st.text(max_size=300))
def test_fuzz_kms_uri_raises_only_config_errors(uri: str) -> None:
    with contextlib.suppress(KmsConfigError):
        parse_kms_uri(uri)


@given(st.text(max_size=300))
def test_fuzz_storage_uri_raises_only_config_errors(uri: str) -> None:
    with contextlib.suppress(KmsConfigError):
        parse_storage_uri(uri)


uri_chars = st.sampled_from(string.ascii_letters + string.digits + "-_=%&?#:/@+;. \x00~")


@given(
    st.sampled_from(["kms://cluster-kms?", "kms://aws?", "storage://gcp?", "kms://", "KMS://cluster-kms?key="]),
    st.text(uri_chars, max_size=120),
)
def test_fuzz_uri_shaped_input(prefix: str, rest: str) -> None:
    for parse in (parse_kms_uri, parse_storage_uri):
        with contextlib.suppress(KmsConfigError):
            parse(prefix + rest)


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
def test_cluster_uri_round_trip(key: bytes, salt: bytes) -> None:
    secret = MasterSecret(key, salt)
    cfg = parse_kms_uri(secret.to_uri())
    assert isinstance(cfg, ClusterKmsConfig)
    assert cfg.master_secret == secret
    assert encode_kms_uri(cfg) == secret.to_uri()


@given(
    st.one_of(
        st.builds(AwsKmsConfig, text_values, text_values, text_values, text_values),
        st.builds(AzureKmsConfig, text_values, text_values, text_values, text_values, text_values, text_values),
        st.builds(GcpKmsConfig, text_values, text_values, text_values, text_values, text_values),
    )
)
def test_external_kms_round_trip(cfg: AwsKmsConfig | AzureKmsConfig | GcpKmsConfig) -> None:
    assert parse_kms_uri(encode_kms_uri(cfg)) == cfg


@given(
    st.one_of(
        st.builds(AwsStorageConfig, text_values, text_values, text_values, text_values),
        st.builds(AzureStorageConfig, text_values, text_values, text_values, text_values, text_values),
        st.builds(GcpStorageConfig, text_values, text_values, text_values),
        st.just(NoStoreConfig()),
    )
)
def test_storage_round_trip(cfg: AwsStorageConfig | AzureStorageConfig | GcpStorageConfig | NoStoreConfig) -> None:
    assert parse_storage_uri(encode_storage_uri(cfg)) == cfg


MUTATIONS = [
    lambda u: u[:-1],  # padding/length broken
    lambda u: u[:-3] + "!",
    lambda u: u.replace("-", "+").replace("_", "/"),  # standard alphabet
    lambda u: u.rstrip("="),
    lambda u: u + "&key=AAAA",
    lambda u: u + "#x",
    lambda u: u.replace("kms://cluster-kms", "kms://cluster"),
    lambda u: u.replace("kms://", "kmz://"),
    lambda u: u.replace("key=", "kee=") if "key=" in u else u + "%",
    lambda u: u.replace("&", "&&salt=x&"),
    lambda u: u.replace("?", "/p?"),
    lambda u: u.replace("A", " ", 1) if "A" in u else u + " ",
    lambda u: u.replace("=", "=%", 1),
    lambda u: u.replace("kms://", "kms://u:"),
    lambda u: u.replace("cluster-kms?key=", "cluster-kms?salt="),
]


@settings(max_examples=300)
@given(
    st.binary(min_size=16, max_size=64),
    st.binary(min_size=32, max_size=64),
    st.sampled_from(range(len(MUTATIONS))),
)
def test_errors_never_contain_the_secret(key: bytes, salt: bytes, which: int) -> None:
    uri = MUTATIONS[which](MasterSecret(key, salt).to_uri())
    try:
        cfg = parse_kms_uri(uri)
    except KmsConfigError as e:
        _assert_no_secret(str(e), key, salt)
        _assert_no_secret(repr(e), key, salt)
    else:
        _assert_no_secret(repr(cfg), key, salt)
