"""Recovery's requeue when the broker refuses the publish: due again at once."""

from __future__ import annotations

import time
import uuid

import pytest

from fleet import Fleet, Status
from fleet.state import Change
from fleet.worker import recovery


def test_a_failed_requeue_publish_is_due_again_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url, pending_timeout=3600)
    task = app.task(name="job")(lambda: None)
    runtime = app.runtime()
    handle = task()
    claim = Change(handle.id, Status.RUNNING, frozenset({Status.PENDING}), by="gone")
    assert runtime.state.apply([claim]) == [True]

    def refuse(messages: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(runtime.broker, "publish", refuse)
    with pytest.raises(ConnectionError):
        recovery.recover_owned(app, ["gone"], "leader", "owner's heartbeat stopped")
    record = runtime.state.get([handle.id])[0]
    assert record.status is Status.PENDING
    assert record.due is not None and record.due <= time.time()
    monkeypatch.undo()
    assert recovery.republish_stale(app, "leader") == 1  # the next pass, not an hour later
    app.close()
