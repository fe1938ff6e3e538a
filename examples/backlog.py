"""What an autoscaler should read: the backlog of each queue (`fleet.backlog`).

Submits work while no worker runs, then prints, per queue, what is ready in the broker,
what the state store holds that has come due (a retry whose backoff is over, a
scheduled call whose time has come: the call scheduled a minute ahead here does not
count yet), and their sum, the figure the workers export as `fleet_queue_backlog{queue}`
and `fleet status --json` shows. It runs on the embedded SQLite stack in a fresh
temporary folder:

    python -m examples.backlog
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from fleet import Fleet
from fleet.backlog import backlog, backlogs

FOLDER = Path(tempfile.gettempdir()) / "fleet-backlog-example"
URL = f"sqlite:///{FOLDER}/fleet.db"
app = Fleet(broker_url=URL, state_url=URL)


@app.task
def resize(width: int) -> int:
    return width


def main() -> None:
    shutil.rmtree(FOLDER, ignore_errors=True)  # a fresh queue for each run
    FOLDER.mkdir(parents=True)
    try:
        for width in (320, 640, 1280):
            resize(width)  # three messages ready: no worker takes them
        resize.schedule(1920, countdown=60)  # held in the state store: counts once due
        print(json.dumps({q: b.to_json() for q, b in backlogs(app).items()}, sort_keys=True))
        print("fleet_queue_backlog:", json.dumps(backlog(app), sort_keys=True))
    finally:
        app.close()
        shutil.rmtree(FOLDER, ignore_errors=True)


if __name__ == "__main__":
    main()
