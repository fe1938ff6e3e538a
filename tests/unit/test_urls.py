"""Redaction of backend URLs: it never raises and never shows a secret (issue 10 item 10)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet._urls import host_part, password_of, redact, scrub, secrets_of
from fleet.config import describe, load_settings
from fleet.errors import ConfigError

# Secrets carry a marker that no other part of a generated URL can hold (hosts, users,
# paths and keys are lowercase), so "the secret is not in the output" means something.
_SPECIAL = "/#?@:&=%+ !$'()*,;[]~"
secret_text = st.builds(
    lambda body: "SECRET" + body,
    st.text(alphabet=st.sampled_from("ABCXYZ0123456789" + _SPECIAL), min_size=1, max_size=16),
)
label = st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=8)
port = st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")
ipv6 = st.sampled_from(["[::1]", "[fe80::1%25eth0]", "[2001:db8::7]"])
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
host = st.tuples(
    st.one_of(label.map(lambda s: s + ".example"), ipv4, ipv6), st.one_of(st.just(""), port)
).map("".join)
hosts = st.lists(host, min_size=1, max_size=3).map(",".join)
scheme = st.sampled_from(["amqp", "amqps", "mongodb", "mongodb+srv", "redis", "http"])
secret_key = st.sampled_from(
    [
        "password",
        "tlsCertificateKeyFilePassword",
        "authMechanismProperties",
        "api_token",
        "client_secret",
        "sig",
    ]
)
plain_param = st.tuples(st.sampled_from(["replicaSet", "heartbeat", "authSource"]), label)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A URL and the secrets it holds."""
    secrets: list[str] = []
    credentials = ""
    if draw(st.booleans()):
        user = draw(label)
        password = draw(secret_text)
        secrets.append(password)
        encoded = draw(st.booleans())
        credentials = f"{user}:{quote(password, safe='') if encoded else password}@"
    path = draw(st.one_of(st.just(""), st.just("/"), label.map(lambda s: "/" + s)))
    params: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            key, value = draw(secret_key), draw(secret_text)
            secrets.append(value)
            params.append(f"{key}={quote(value, safe='') if draw(st.booleans()) else value}")
        else:
            params.append("=".join(draw(plain_param)))
    query = ("?" + "&".join(params)) if params else ""
    return f"{draw(scheme)}://{credentials}{draw(hosts)}{path}{query}", secrets


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret)}


@settings(max_examples=300, deadline=None, database=None)
@given(urls())
def test_redact_never_raises_and_never_shows_a_secret(case: tuple[str, list[str]]) -> None:
    url, secrets = case
    shown = redact(url)
    for secret in secrets:
        for form in _forms(secret):
            assert form not in shown, (url, shown)
    assert "SECRET" not in shown
    assert "SECRET" not in host_part(url)
    # Whatever a driver echoes of the URL is scrubbed as well.
    assert "SECRET" not in scrub(f"auth failed for {url}", secrets_of(url))


@pytest.mark.parametrize(
    "url",
    [
        # Found by the fuzz above: an unencoded '@' in one query value and a '?' in the
        # next; a '?' and '=' in the password before a real query.
        "redis://name:SECRET($+95&/8*~8/9;&&@[2001:db8::7]/ilgkoa"
        "?api_token=SECRET@69:B/&' &api_token=SECRET?38:=+",
        "http://mkpnpa:SECRET!X?&C=@):Y@acfpe.example:259/"
        "?authMechanismProperties=SECRET%23&client_secret=SECRET%3A%2CA%219B%24%40",
    ],
)
def test_redact_hides_secrets_around_unencoded_query_characters(url: str) -> None:
    assert "SECRET" not in redact(url)
    assert "SECRET" not in scrub(f"auth failed for {url}", secrets_of(url))


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=60))
def test_redact_never_raises_on_any_text(text: str) -> None:
    assert isinstance(redact(text), str)
    secrets_of(text)
    host_part(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mongodb://u:p@m0:27017,m1:27017/fleet?replicaSet=rs0",
            "mongodb://u:***@m0:27017,m1:27017/fleet?replicaSet=rs0",
        ),
        ("amqp://guest:a/b#c?d@127.0.0.1:5999/", "amqp://guest:***@127.0.0.1:5999/"),
        (
            "mongodb+srv://u:p@c.example.net/db?authMechanismProperties=AWS_SESSION_TOKEN:x",
            "mongodb+srv://u:***@c.example.net/db?authMechanismProperties=***",
        ),
        ("amqp://[::1]:5672/%2F?heartbeat=5", "amqp://[::1]:5672/%2F?heartbeat=5"),
        ("sqlite:///.fleet/fleet.db", "sqlite:///.fleet/fleet.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_examples(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_password_of_reads_unencoded_and_encoded_passwords() -> None:
    assert password_of("amqp://guest:a/b#c?d@h:1/") == "a/b#c?d"
    assert password_of("amqp://bob:p%40ss%2Fw@h/") == "p@ss/w"
    assert password_of("amqp://h/") == ""


def test_config_show_of_a_replica_set_url_and_an_unencoded_password(tmp_path: Path) -> None:
    loaded = load_settings(
        {
            "state_url": "mongodb://u:p@m0:27017,m1:27017/fleet?replicaSet=rs0",
            "broker_url": "amqp://guest:top/se#cret@127.0.0.1:5672/",
        },
        environ={},
        cwd=tmp_path,
    )
    text = describe(loaded)
    assert "mongodb://u:***@m0:27017,m1:27017/fleet?replicaSet=rs0" in text
    assert "top/se#cret" not in text and "se#cret" not in text


def test_mongo_store_accepts_a_replica_set_url_and_hides_an_unencoded_password() -> None:
    pytest.importorskip("pymongo")
    from fleet.state.mongo import MongoStateStore

    store = MongoStateStore("mongodb://u:p@m0:27017,m1:27017/fleet?replicaSet=rs0")
    assert store.url == "mongodb://u:***@m0:27017,m1:27017/fleet?replicaSet=rs0"
    with pytest.raises(ConfigError) as info:
        MongoStateStore("mongodb://u:top/se#cret@m0:27017/fleet")
    assert "se#cret" not in str(info.value) and "top/" not in str(info.value)


def test_amqp_url_with_an_unencoded_password_is_refused_without_showing_it() -> None:
    pytest.importorskip("pika")
    from fleet.broker._amqp_params import parse

    with pytest.raises(ConfigError, match="percent-encode") as info:
        parse("amqp://guest:top/se#cret@127.0.0.1:5999/", {})
    assert "se#cret" not in str(info.value)


def test_fleet_config_show_cli_with_a_replica_set_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET__STATE_URL", "mongodb://u:p%2Fq@m0:27017,m1:27017/f?replicaSet=rs0")
    monkeypatch.setenv("FLEET__BROKER_URL", "amqp://guest:top/se#cret@127.0.0.1:5672/")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "mongodb://u:***@m0:27017,m1:27017/f?replicaSet=rs0" in out
    assert "se#cret" not in out and "p%2Fq" not in out
