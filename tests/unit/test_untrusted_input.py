"""Input from the queue is untrusted: what a message names is never imported, decoded
classes come only from trusted modules, the codec is the app's, and a task module that
fails to import is named with its error instead of a bare "unknown task"."""

from __future__ import annotations

import dataclasses
import enum
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from fleet import Fleet, Status
from fleet._envelope import Envelope, pack
from fleet._prepare import new_id
from fleet.broker import Message
from fleet.codec import TrustedModules, encode_call, get_codec
from fleet.errors import SerializationError
from fleet.state import InvocationRecord
from fleet.testing.worker import running_worker
from fleet.worker.child import import_task_modules
from tests.waiting import wait_until


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def _square(x: int) -> int:
    return x * x


def _describe(value: object) -> str:
    return repr(value)


@pytest.fixture
def app() -> Iterator[Fleet]:
    url = f"memory://{uuid.uuid4().hex}"
    fleet = Fleet(broker_url=url, state_url=url, shutdown_grace=2)
    yield fleet
    fleet.close()


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path for modules written by the test (unique names)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _tattletale(folder: Path) -> tuple[str, Path]:
    """A module that writes a file when imported (an import side effect), and that file."""
    name = f"tattle_{uuid.uuid4().hex[:8]}"
    marker = folder / f"{name}.imported"
    (folder / f"{name}.py").write_text(
        "import dataclasses, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "@dataclasses.dataclass\n"
        "class Thing:\n"
        "    x: int = 0\n"
        "def payload(*args, **kwargs):\n"
        "    return 'ran'\n"
    )
    return name, marker


def _submit_raw(
    app: Fleet, task: str, module: str, args: bytes, codec: str = "msgpack"
) -> tuple[str, bytes]:
    """Register an invocation and publish its message as anyone with queue access could."""
    runtime = app.runtime()
    runtime.declare(["default"])
    invocation_id, now = new_id(), time.time()
    record = InvocationRecord(
        invocation_id, task, "default", args, codec, Status.PENDING, created=now, updated=now
    )
    runtime.state.register([record])
    body = pack(Envelope(invocation_id, task, args, codec, "", "", module))
    runtime.broker.publish([Message("default", body, invocation_id)])
    return invocation_id, body


def _final(app: Fleet, invocation_id: str) -> InvocationRecord:
    wait_until(lambda: app.record(invocation_id).status.final, f"{invocation_id} to end")
    return app.record(invocation_id)


def _reason(app: Fleet, body: bytes) -> str:
    broker = app.runtime().broker
    wait_until(lambda: any(d.body == body for d in broker.dead_letters("default")), "a letter")
    return next(d.reason for d in broker.dead_letters("default") if d.body == body)


# -- the task a message names ---------------------------------------------------------


def test_a_message_naming_an_unregistered_module_is_dead_lettered_without_importing_it(
    app: Fleet, modules: Path
) -> None:
    name, marker = _tattletale(modules)
    square = app.task(_square)
    args = encode_call(app.codec, "x", (), {})
    invocation_id, body = _submit_raw(app, f"{name}.payload", name, args)
    with running_worker(app, threads=2):
        record = _final(app, invocation_id)
        assert square(3).result(timeout=10) == 9  # the worker goes on
    assert name not in sys.modules
    assert not marker.exists()
    assert record.status is Status.FAILED
    reason = _reason(app, body)
    assert reason.startswith(f"unknown task '{name}.payload': not registered on this worker")
    assert record.error is not None and record.error.message == reason


def test_a_message_in_another_codec_is_dead_lettered_with_the_reason(app: Fleet) -> None:
    square = app.task(_square)
    # A producer configured with another codec than the workers' (same backends).
    url = app.settings.broker_url
    other = Fleet(broker_url=url, state_url=url, codec="json")
    other_square = other.task(_square)
    assert other_square.name == square.name
    with running_worker(app, threads=2):
        handle = other_square(4)
        with pytest.raises(SerializationError, match="codec 'json'"):
            handle.result(timeout=10)
        assert square(4).result(timeout=10) == 16
    record = app.record(handle.id)
    assert record.status is Status.FAILED
    assert record.error is not None and record.error.type == "fleet.errors.SerializationError"
    letters = app.runtime().broker.dead_letters("default")
    assert [letter.reason for letter in letters] == [
        f"message {handle.id} is encoded with codec 'json', but this worker's setting "
        "`codec` is 'msgpack'"
    ]
    other.close()


def test_tasks_still_resolve_from_the_registry(app: Fleet) -> None:
    describe = app.task(_describe)
    with running_worker(app):
        # Classes of a task's module decode (this module defines the task).
        got = describe([Point(1, 2), Colour.RED]).result(timeout=10)
    assert got == repr([Point(1, 2), Colour.RED])


# -- classes a payload names ----------------------------------------------------------


def _dataclass_payload(path: str) -> bytes:
    ext = msgpack.ExtType(12, msgpack.packb([path, {"x": 1}], use_bin_type=True))  # dataclass
    data: bytes = msgpack.packb([[ext], {}], use_bin_type=True)
    return data


def test_a_payload_naming_a_class_of_an_untrusted_module_is_refused_unimported(
    app: Fleet, modules: Path
) -> None:
    name, marker = _tattletale(modules)
    describe = app.task(_describe)
    args = _dataclass_payload(f"{name}:Thing")
    invocation_id, _ = _submit_raw(app, describe.name, describe.module, args)
    with running_worker(app):
        record = _final(app, invocation_id)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "fleet.errors.SerializationError"
    assert f"refusing to decode type '{name}:Thing'" in record.error.message
    assert "`codec_modules`" in record.error.message
    assert name not in sys.modules
    assert not marker.exists()


def test_a_listed_module_and_its_submodules_are_trusted(modules: Path) -> None:
    name, marker = _tattletale(modules)
    codec = get_codec("msgpack", trusted=TrustedModules([name]))
    decoded = codec.decode(_dataclass_payload(f"{name}:Thing"))
    assert isinstance(decoded, list)
    value = decoded[0][0]
    assert marker.exists()
    assert type(value).__name__ == "Thing"
    trusted = TrustedModules(["shop"])
    assert trusted.allows("shop") and trusted.allows("shop.models")
    assert not trusted.allows("shopping") and not trusted.allows("sho")


@pytest.mark.parametrize("codec_name", ["msgpack", "json"])
def test_the_app_codec_trusts_task_modules_and_the_setting_only(codec_name: str) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url, codec=codec_name, codec_modules=["decimal"])
    data = get_codec(codec_name).encode([Point(1, 2), Colour.RED])
    with pytest.raises(SerializationError, match=rf"'{__name__}:Point'.*`codec_modules`"):
        app.codec.decode(data)
    app.task(_square)  # registering a task of this module trusts it
    assert app.codec.decode(data) == [Point(1, 2), Colour.RED]
    assert get_codec(codec_name) is not app.codec  # the shared one is untouched


# -- task modules that fail to import -------------------------------------------------


def test_a_task_module_that_fails_to_import_is_named_with_its_error(
    modules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (modules / f"{name}.py").write_text("import no_such_dependency_xyz\n")
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url, task_modules=[name], shutdown_grace=2)
    square = app.task(_square)
    args = encode_call(app.codec, "x", (), {})
    with caplog.at_level(logging.ERROR, logger="fleet.worker.child"):
        assert list(import_task_modules(app)) == [name]
        with running_worker(app):
            ids = [_submit_raw(app, f"{name}.upload", name, args) for _ in range(2)]
            records = [_final(app, i) for i, _ in ids]
            assert square(2).result(timeout=10) == 4  # the worker goes on
    expected = (
        f"unknown task '{name}.upload': its module '{name}' failed to import on this "
        "worker: ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    )
    assert [_reason(app, body) for _, body in ids] == [expected, expected]
    for record in records:
        assert record.status is Status.FAILED and record.error is not None
        assert record.error.message == expected
        assert "ModuleNotFoundError" in record.error.traceback
        assert "import no_such_dependency_xyz" in record.error.traceback
    logged = [r for r in caplog.records if r.name == "fleet.worker.child"]
    assert len(logged) == 1  # once per module, with its traceback
    assert name in logged[0].getMessage() and logged[0].exc_info is not None
    app.close()


# -- the settings ---------------------------------------------------------------------


def test_module_list_settings_from_files_env_and_keywords() -> None:
    from fleet.config import load_settings
    from fleet.errors import ConfigError

    env = {"FLEET__TASK_MODULES": "shop.tasks, shop.more,", "FLEET__CODEC_MODULES": ""}
    loaded = load_settings({"codec_modules": ["shop.models"]}, environ=env, cwd=Path("/"))
    assert loaded.settings.task_modules == ("shop.tasks", "shop.more")
    assert loaded.settings.codec_modules == ("shop.models",)
    assert load_settings(environ={}, cwd=Path("/")).settings.task_modules == ()
    with pytest.raises(ConfigError, match=r"'task_modules' \(from env FLEET__TASK_MODULES\)"):
        load_settings(environ={"FLEET__TASK_MODULES": "shop/tasks.py"}, cwd=Path("/"))
    with pytest.raises(ConfigError, match="expected a list of dotted module names, got 5"):
        load_settings({"codec_modules": 5}, environ={}, cwd=Path("/"))
