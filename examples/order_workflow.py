"""A durable order workflow: run it inline, or on workers, and kill them as it runs.

    FLEET__INLINE=true python -m examples.order_workflow     # in this thread
    fleet worker --app examples.order_workflow:app &          # or on a worker
    python -m examples.order_workflow

The workflow checks the order, packs its items in parallel, charges, waits a day-like
pause (shortened here), then waits for a manager's approval signal (sent by `main`
once the workflow waits; inline, the wait times out and the order is auto-approved).
Kill the worker at any point and start another: finished steps are not run again.
"""

from __future__ import annotations

import time
from datetime import timedelta

from fleet import Fleet, SignalTimeoutError
from fleet import workflows as wf

app = Fleet()


@app.task
def check(order: dict[str, int]) -> int:
    return order["qty"]


@app.task
def pack(item: int) -> int:
    wf.set(f"packed-{item}", True)  # tasks a workflow called share its data
    return item * 2


@app.task
def charge(amount: int) -> str:
    return f"charged {amount}"


@app.workflow
def order(order: dict[str, int], approval_timeout: float = 60.0) -> str:
    qty = check(order).result()
    weights = pack.parallelize(range(qty)).results()  # one recorded step, qty children
    receipt = charge(sum(weights)).result()
    wf.set("stage", "awaiting approval")
    wf.sleep(timedelta(seconds=0.2))  # durable: no worker slot is held meanwhile
    try:
        approver = wf.wait_signal("approved", timeout=approval_timeout)["by"]
    except SignalTimeoutError:
        approver = "auto"
    wf.set("stage", "done")
    return f"{receipt}, approved by {approver}, ref {wf.uuid4().hex[:6]}"


def main() -> None:
    inline = app.settings.inline
    # Inline, the call runs to its end before it returns and nobody can signal it: the
    # approval times out at once and the order is auto-approved.
    handle = order({"id": 1, "qty": 4}, approval_timeout=0.0 if inline else 60.0)
    run = app.workflow_run(handle.id)
    if not inline:
        deadline = time.monotonic() + 60
        while run.data.get("stage") != "awaiting approval" and time.monotonic() < deadline:
            time.sleep(0.05)
        run.signal("approved", {"by": "dana"})
    print(handle.result(timeout=120).rsplit(", ref", 1)[0])
    print("stage:", run.data["stage"], "packed:", sum(k.startswith("packed-") for k in run.data))


if __name__ == "__main__":
    main()
