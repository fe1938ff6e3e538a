"""`fleet deadletters requeue` makes a dead-lettered invocation run (issue 10 item 6)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet.broker import Message
from fleet.cli.deadletters import requeue
from fleet.extensions import Applied, Extension
from fleet.testing.worker import running_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)
calls: list[int] = []
_lock = threading.Lock()


class Seen(Extension):
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, Status | None, Status]] = []

    def after_change(self, applied: Applied) -> None:
        self.changes += [(c.invocation_id, c.task, c.source, c.status) for c in applied.changes]


def later(x: int) -> int:
    with _lock:
        calls.append(x)
    return x + 1


@pytest.fixture(params=["sqlite", "rabbitmq"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    state = f"sqlite:///{tmp_path / 'fleet.db'}"
    queue = f"requeue-{uuid.uuid4().hex[:8]}"  # RabbitMQ: the session's node is shared
    queues = tmp_path / "queues.yaml"
    queues.write_text(f"default: {queue}\nqueues:\n  {queue}:\n    type: quorum\n")
    broker = state
    if request.param == "rabbitmq":
        broker = request.getfixturevalue("rabbitmq").url  # tests/conftest.py
    return {"broker_url": broker, "state_url": state, "queues_file": str(queues)}


def test_a_letter_for_a_task_that_did_not_exist_runs_once_requeued(urls: dict[str, str]) -> None:
    producer = Fleet(**urls)
    seen = Seen()
    worker_app = Fleet(extensions=[seen], **urls)  # deployed before the task existed
    default = worker_app.queues.route(f"{__name__}.later")
    submit = producer.task(later)
    state = worker_app.runtime().state
    broker = worker_app.runtime().broker
    calls.clear()
    try:
        with running_worker(worker_app, threads=2, queues=[default]):
            invocation = submit(41)
            wait_until(lambda: broker.dead_letters(default), "the dead letter")
            body = broker.dead_letters(default)[0].body
            wait_until(lambda: state.get([invocation.id])[0].status is Status.FAILED, "FAILED")

            # The new version is deployed; the letter is requeued: its record goes back
            # to PENDING, so the message runs instead of being acked as a duplicate.
            worker_app.task(later)
            moved, refused = requeue(worker_app, default)
            assert (moved, refused) == (1, [])
            wait_until(lambda: state.get([invocation.id])[0].status is Status.SUCCESS, "SUCCESS")
            assert calls == [41]
            record = state.get([invocation.id])[0]
            notes = [(e.status, e.note) for e in record.history]
            assert (Status.PENDING, "requeued from the dead letters by an operator") in notes
            # The extensions heard of the requeue, as of every status change.
            assert (invocation.id, submit.name, Status.FAILED, Status.PENDING) in seen.changes
            assert (invocation.id, submit.name, Status.PENDING, Status.FAILED) in seen.changes
            assert broker.dead_letters(default) == []

            moved, refused = requeue(worker_app, default, ["no-such-letter"])
            assert (moved, refused) == (0, [f"no dead letter 'no-such-letter' in {default}.dead"])

        # A stale copy of the message, dead-lettered after the invocation finished, stays
        # where it is, named with the reason.
        broker.publish([Message(default, body, "copy")])
        consumer = broker.consumer([default], 1)
        try:
            deliveries = consumer.receive(1, 10.0)
            assert len(deliveries) == 1
            consumer.dead_letter(deliveries[0], "a stale copy")
        finally:
            consumer.close()
        (letter,) = broker.dead_letters(default)
        moved, refused = requeue(worker_app, default)
        assert moved == 0
        assert refused == [
            f"letter {letter.id} (invocation {invocation.id}): the invocation is SUCCESS already"
        ]
        assert calls == [41]
    finally:
        producer.close()
        worker_app.close()
