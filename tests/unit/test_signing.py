"""Message signing: key parsing and rotation, and a worker (memory stack) that
dead-letters unsigned, forged and unknown-key messages without decoding them."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator

import pytest

from fleet import Fleet, Status
from fleet._envelope import Envelope, pack
from fleet._prepare import new_id
from fleet.broker import Message
from fleet.config import describe, load_settings
from fleet.errors import ConfigError
from fleet.signing import HEADER, parse_keys
from fleet.state import InvocationRecord
from fleet.testing.worker import running_worker
from tests.waiting import wait_until

NEW = "k2026b:" + "n" * 32
OLD = "k2026a:" + "o" * 32


def _double(x: int) -> int:
    return 2 * x


def test_the_first_key_signs_and_every_listed_key_is_accepted() -> None:
    rotating = parse_keys(f"{NEW}\n{OLD}\n")
    old_only = parse_keys(OLD)
    body = b"\x93\x01\x02\x03"
    assert rotating.current == "k2026b"
    assert rotating.headers(body)[HEADER].startswith("k2026b:")
    assert rotating.check(body, old_only.headers(body)) is None  # rotation: old still accepted
    assert rotating.check(body, rotating.headers(body)) is None
    assert old_only.check(body, rotating.headers(body)) == (
        "signed with unknown key id 'k2026b' (accepted: k2026a)"
    )


def test_unsigned_forged_and_malformed_signatures_are_named() -> None:
    signer = parse_keys(f"{NEW},{OLD}")
    body = b"payload"
    assert "unsigned" in str(signer.check(body, {}))
    assert "malformed" in str(signer.check(body, {HEADER: "no-colon"}))
    other = hmac.new(b"x" * 32, body, hashlib.sha256).hexdigest()
    assert signer.check(body, {HEADER: f"k2026b:{other}"}) == (
        "forged message: signature does not match key 'k2026b'"
    )
    tampered = signer.headers(body)
    assert "forged" in str(signer.check(body + b"!", tampered))


def test_no_keys_signs_nothing_and_accepts_everything() -> None:
    signer = parse_keys("")
    assert not signer.enabled
    assert signer.headers(b"x") == {}
    assert signer.check(b"x", {}) is None


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("nocolon" + "s" * 20, "entry 1: expected KEY_ID:SECRET"),
        (f"{NEW},bad id:{'s' * 20}", "entry 2: expected KEY_ID:SECRET"),
        ("short:tooshort", "entry 1 (key id 'short'): the secret is shorter than 16"),
        (f"{NEW},{NEW}", "key id 'k2026b' is listed twice"),
    ],
)
def test_bad_keys_are_refused_naming_the_entry_not_the_secret(text: str, culprit: str) -> None:
    with pytest.raises(ConfigError, match="signing_keys") as info:
        load_settings({"signing_keys": text}, environ={})
    assert culprit in str(info.value)
    assert "tooshort" not in str(info.value) and "s" * 20 not in str(info.value)


def test_keys_come_from_a_mounted_file_and_config_show_hides_the_secrets(
    tmp_path: pytest.TempPathFactory,
) -> None:
    path = tmp_path / "signing-keys"  # type: ignore[operator]
    path.write_text(f"# newest first\n{NEW}\n{OLD}\n")
    loaded = load_settings(environ={"FLEET__SIGNING_KEYS_FILE": str(path)})
    assert parse_keys(loaded.settings.signing_keys).current == "k2026b"
    shown = describe(loaded)
    assert "k2026b, k2026a (secrets hidden)" in shown
    assert "n" * 32 not in shown and "o" * 32 not in shown


# -- a worker with keys ------------------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Fleet]:
    url = f"memory://{uuid.uuid4().hex}"
    fleet = Fleet(broker_url=url, state_url=url, shutdown_grace=2, signing_keys=f"{NEW},{OLD}")
    yield fleet
    fleet.close()


def _publish_raw(app: Fleet, body: bytes, headers: dict[str, str]) -> str:
    """Register a PENDING invocation and publish `body` for it as anyone could."""
    runtime = app.runtime()
    runtime.declare(["default"])
    invocation_id, now = new_id(), time.time()
    record = InvocationRecord(
        invocation_id, "x.y", "default", b"", "msgpack", Status.PENDING, created=now, updated=now
    )
    runtime.state.register([record])
    runtime.broker.publish([Message("default", body, invocation_id, 0, headers)])
    return invocation_id


def _reason(app: Fleet, body: bytes) -> str:
    broker = app.runtime().broker
    wait_until(lambda: any(d.body == body for d in broker.dead_letters("default")), "a letter")
    return next(d.reason for d in broker.dead_letters("default") if d.body == body)


def test_a_worker_with_keys_runs_signed_work_and_dead_letters_the_rest_unread(
    app: Fleet,
) -> None:
    double = app.task(_double)
    task = double.name
    assert double.name == f"{__name__}._double"
    # Not even msgpack: were it decoded, the reason would be "not a fleet envelope".
    garbage = b"\xc1\xc1 not msgpack"
    forged_body = pack(Envelope(new_id(), task, b"\x91\x01", "msgpack"))
    forged_mac = hmac.new(b"z" * 32, forged_body, hashlib.sha256).hexdigest()
    with running_worker(app, threads=2):
        assert double(21).result(timeout=10) == 42  # signed by the producer: runs
        unsigned_id = _publish_raw(app, garbage, {})
        forged_id = _publish_raw(app, forged_body, {HEADER: f"k2026b:{forged_mac}"})
        assert "unsigned message" in _reason(app, garbage)
        assert _reason(app, forged_body) == "forged message: signature does not match key 'k2026b'"
        # A producer still signing with the old key is heard (rotation under way).
        url = app.settings.broker_url
        producer = Fleet(broker_url=url, state_url=url, signing_keys=OLD)
        try:
            assert producer.task(_double)(5).result(timeout=10) == 10
        finally:
            producer.close()
    # The records the untrusted messages named were not touched: never decoded.
    assert app.record(unsigned_id).status is Status.PENDING
    assert app.record(forged_id).status is Status.PENDING
    assert len(app.runtime().broker.dead_letters("default")) == 2
