"""Signed messages: a worker with signing keys runs what the fleet's producers sign and
sets aside anything else, unread.

Run it (embedded stack, a worker on a thread of this process):

    python -m examples.signed_messages

It submits a call (signed with the newest key), then publishes the same message with a
signature made by a key it does not hold (as an intruder with access to the broker
could), and prints what the worker did with each. Keys are `KEY_ID:SECRET` entries,
newest first; in production put them in a mounted file (FLEET__SIGNING_KEYS_FILE).
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
import time
from pathlib import Path

from fleet import Fleet
from fleet.broker import Message
from fleet.signing import HEADER
from fleet.testing.worker import running_worker

KEYS = "2026-12:" + "n" * 32 + "\n2026-06:" + "o" * 32  # newest first: it signs
URL = f"sqlite:///{Path(tempfile.mkdtemp(prefix='fleet-signed-')) / 'fleet.db'}"
app = Fleet(broker_url=URL, state_url=URL, signing_keys=KEYS)


@app.task
def add(a: int, b: int) -> int:
    return a + b


def main() -> None:
    broker = app.runtime().broker
    with running_worker(app):
        print("signed call:", add(2, 3).result(timeout=30))
        # Someone with access to the queue sends a message signed with a guessed key.
        _, (message,) = app.prepare(add, [add.bind((40, 2), {})])
        guess = hmac.new(b"guessed" * 5, message.body, hashlib.sha256).hexdigest()
        forged = {HEADER: f"2026-12:{guess}"}
        broker.publish([Message(message.queue, message.body, message.invocation_id, 0, forged)])
        deadline = time.monotonic() + 30
        while not broker.dead_letters(message.queue) and time.monotonic() < deadline:
            time.sleep(0.05)
    (letter,) = broker.dead_letters(message.queue)
    print("forged message dead-lettered:", letter.reason)
    app.close()


if __name__ == "__main__":
    main()
