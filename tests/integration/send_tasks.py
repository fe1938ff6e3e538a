"""Tasks of the worker in `test_send_by_name`: the producer there never imports this.

The app reads its backends from FLEET__BROKER_URL / FLEET__STATE_URL / FLEET__QUEUES_FILE,
set by the test for the worker process it starts.
"""

from __future__ import annotations

import os

from fleet import Fleet

app = Fleet()


@app.task(name="shop.tasks.make_thumbnail")
def make_thumbnail(image_id: int, width: int = 100) -> str:
    return f"thumb-{image_id}-{width}-{os.getpid()}"


@app.task
def add(a: int, b: int) -> int:
    return a + b
