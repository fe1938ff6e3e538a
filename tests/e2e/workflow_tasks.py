"""The order workflow of the workflow e2e tests (imported by the test and the workers).

Every step appends 'start <arg>' and 'end <arg>' lines to `<FLEET_TEST_MARKS>/<step>.log`,
so the test counts how many times each step's body ran, and sees where it was.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from fleet import Fleet
from fleet import workflows as wf

app = Fleet()
ITEMS = 20


def _log(step: str, line: str) -> None:
    folder = os.environ.get("FLEET_TEST_MARKS")
    if folder:
        with Path(folder, f"{step}.log").open("a") as f:
            f.write(f"{line}\n")
            f.flush()


def _step(step: str, arg: object) -> None:
    _log(step, f"start {arg}")
    hold = Path(os.environ.get("FLEET_TEST_MARKS", "/nonexistent"), f"hold-{step}")
    while hold.exists():  # the test holds a step to kill the worker while it runs
        time.sleep(0.01)


@app.task
def validate(order: dict[str, int]) -> int:
    _step("validate", order["id"])
    _log("validate", f"end {order['id']}")
    return order["qty"]


@app.task
def reserve(order: dict[str, int]) -> str:
    _step("reserve", order["id"])
    _log("reserve", f"end {order['id']}")
    return f"r{order['id']}"


@app.task
def pack_item(n: int) -> int:
    _step("pack", n)
    wf.set(f"packed-{n}", True)
    _log("pack", f"end {n}")
    return n * n


@app.task
def charge(amount: int) -> str:
    _step("charge", amount)
    _log("charge", f"end {amount}")
    return f"paid {amount}"


@app.task
def ship(reservation: str, approver: str) -> str:
    _step("ship", reservation)
    _log("ship", f"end {reservation}")
    return f"shipped {reservation} by {approver}"


@app.task
def notify(message: str) -> bool:
    _step("notify", message)
    _log("notify", f"end {message}")
    return True


@app.workflow
def order_flow(order: dict[str, int], sleep_s: float = 1.0) -> dict[str, object]:
    """10 steps: validate, reserve, pack x20, data, charge, sleep, signal, ship, notify,
    data."""
    qty = validate(order).result()
    reservation = reserve(order).result()
    packed = pack_item.parallelize(range(ITEMS)).results()
    wf.set("stage", "packed")
    payment = charge(qty * 10 + sum(packed)).result()
    wf.sleep(timedelta(seconds=sleep_s))
    approval = wf.wait_signal("approved", timeout=120)
    shipped = ship(reservation, approval["by"]).result()
    notify(f"order {order['id']}: {shipped}").result()
    wf.set("stage", "done")
    return {"payment": payment, "shipped": shipped, "packed": sum(packed), "id": str(wf.uuid4())}


@app.task
def quick(n: int) -> int:
    return n + 1


@app.workflow
def sleeper(seconds: float) -> str:
    before = wf.now()
    wf.sleep(timedelta(seconds=seconds))
    return f"slept {(wf.now() - before).total_seconds() >= seconds}"
