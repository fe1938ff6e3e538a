"""`fleet._pipeline`: a send from the caller's thread that raises loses nothing.

The memory broker stands in for RabbitMQ here only to make the caller's send fail on
purpose; the send itself is tested on a real RabbitMQ in
tests/integration/test_background_publish.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import pytest

from fleet import Fleet, _pipeline
from fleet.broker import Message, Publishing

QUEUE = "fleet"


@pytest.fixture
def app() -> Iterator[Fleet]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url)
    app.runtime().broker.declare([app.queues.get(QUEUE)])
    try:
        yield app
    finally:
        app.close()


def _failing_send(error: BaseException) -> object:
    def begin_publish_now(messages: Sequence[Message]) -> Publishing | None:
        raise error

    return begin_publish_now


@pytest.mark.parametrize("error", [RuntimeError("socket gone"), KeyboardInterrupt()])
def test_messages_whose_send_raised_are_published_by_the_thread(
    app: Fleet, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    runtime = app.runtime()
    broker = runtime.broker
    monkeypatch.setattr(broker, "begin_publish_now", _failing_send(error))
    pipeline = _pipeline.of(app, runtime)
    message = Message(QUEUE, b"body", "inv-1")
    if isinstance(error, Exception):
        pipeline.put([message], "task")  # swallowed: the thread takes the message
    else:
        with pytest.raises(KeyboardInterrupt):
            pipeline.put([message], "task")
    assert pipeline.flush(timeout=10)
    assert broker.stats(QUEUE).ready == 1
