"""Bad input on the embedded stack: poison messages, scripts run as __main__, overrides."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet._envelope import Envelope, pack
from fleet.broker import Message
from fleet.testing.worker import running_worker

ROOT = Path(__file__).parents[2]


def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    app = Fleet(broker_url=url, state_url=url)
    square = app.task(_square)
    broker = app.runtime().broker
    app.runtime().declare(["default"])
    unknown = Envelope(uuid.uuid4().hex, "nowhere.missing_task", b"\x92\x90\x80", "msgpack")
    broker.publish(
        [
            Message("default", b"\x00garbage\xff", "garbage"),
            Message("default", pack(unknown), unknown.id),
        ]
    )
    with running_worker(app, threads=2):
        assert square(7).result(timeout=30) == 49
        letters = broker.dead_letters("default")
    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 2
    assert "not a fleet envelope" in reasons[0]
    assert reasons[1].startswith("unknown task 'nowhere.missing_task': not registered")
    app.close()


def _square(x: int) -> int:
    return x * x


def test_task_defined_in_a_script_run_as_main(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    script = tmp_path / "jobs.py"
    script.write_text(
        textwrap.dedent(f"""
        import subprocess, sys
        from fleet import Fleet
        app = Fleet(broker_url={url!r}, state_url={url!r})

        @app.task
        def shout(word: str) -> str:
            return word.upper()

        if __name__ == "__main__":
            worker = subprocess.Popen([sys.executable, "-m", "fleet", "worker",
                                       "--app", "jobs:app", "--processes", "1"])
            try:
                print(shout.name, shout("hello").result(timeout=60))
            finally:
                worker.terminate()
                worker.wait(60)
    """)
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["jobs.shout", "HELLO"]


def test_per_task_overrides_from_settings(tmp_path: Path) -> None:
    name = f"{__name__}._square"
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  maths: {}\n")
    app = Fleet(
        broker_url="memory://",
        state_url="memory://",
        queues_file=str(queues),
        tasks={name: {"max_retries": 4, "queue": "maths", "retry_for": ["KeyError"]}},
    )
    task = app.task(max_retries=1)(_square)
    assert task.options.max_retries == 4
    assert task.options.queue == "maths"
    assert task.options.retry_for == (KeyError,)
    with pytest.raises(Exception, match=r"tasks\['.*_square'\]: unknown or not-configurable"):
        Fleet(
            broker_url="memory://", state_url="memory://", tasks={name: {"parallel_func": "x"}}
        ).task(_square)


def test_publish_failure_marks_invocation_failed(tmp_path: Path) -> None:
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  tiny:\n    max_length: 1\n    overflow: reject-publish\n")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    app = Fleet(broker_url=url, state_url=url, queues_file=str(queues))
    square = app.task(queue="tiny")(_square)
    first = square(1)
    from fleet.errors import PublishError

    with pytest.raises(PublishError, match="tiny"):
        square(2)
    records = app.runtime().state.find(_all_failed())
    assert len(records) == 1 and records[0].error is not None
    assert "publish" in records[0].history[-1].note
    assert first.status is Status.PENDING
    app.close()


def _all_failed():  # type: ignore[no-untyped-def]
    from fleet.state import Query

    return Query(statuses=[Status.FAILED])
