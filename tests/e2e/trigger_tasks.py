"""Tasks with triggers for the trigger e2e tests (imported by the tests, the workers
and the producer processes). Each run appends a line to a file in FLEET_TEST_MARKS."""

from __future__ import annotations

import os
from pathlib import Path

from fleet import Fleet, Trigger

app = Fleet()
EVENT = "e2e.ping"


def append(name: str, line: str) -> None:
    """One line per run; a short O_APPEND write is atomic between processes."""
    folder = os.environ.get("FLEET_TEST_MARKS")
    if folder:
        with open(Path(folder, name), "a", encoding="utf-8") as out:
            out.write(line + "\n")


def me() -> str:
    current = app.current_invocation()
    return current.id if current is not None else "?"


# Every second (only where E2E_CRON=1: the other tests do without the load); catch-up
# "all": ticks missed while no leader ran (a leader killed) fire late rather than never,
# so every tick of the run must fire.
EVERY_SECOND = Trigger.cron("* * * * * *", catchup="all", derive={"tick": "source"})


@app.task(triggers=[EVERY_SECOND] if os.environ.get("E2E_CRON") == "1" else [])
def every_second(tick: str) -> None:
    append("ticks", f"{tick} {me()}")


@app.task
def step_a(n: int) -> int:
    append("chain", f"a {n}")
    return n


@app.task(triggers=[Trigger.on_result(step_a, derive={"n": "result"})])
def step_b(n: int) -> int:
    append("chain", f"b {n}")
    return n


@app.task(triggers=[Trigger.on_result(step_b, derive={"n": "result"})])
def step_c(n: int) -> None:
    append("chain", f"c {n}")


@app.task(triggers=[Trigger.on_event(EVENT, derive={"n": "payload.n"})])
def pong(n: int) -> None:
    append("pongs", f"{n} {me()}")


def produce(first: int, count: int) -> None:
    """What each producer process does: emit `count` events, numbered from `first`."""
    for n in range(first, first + count):
        app.emit(EVENT, {"n": n})
    app.close()
