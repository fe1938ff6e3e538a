"""A small pipeline driven by triggers: nobody calls the later steps.

    fetch_orders (every night at 02:00 Paris time, or by hand)
      -> on its result: price(order_ids)        (derived from fetch's value)
           -> on its result: publish(total)     (derived from price's value)
      -> on its failure (any LookupError): alert(reason)
    app.emit("orders.refunded", {"order_id": 7}) -> refund(order_id=7)

Run it inline (no broker, no workers; cron does not tick inline, so `main` starts the
first step itself):

    FLEET__INLINE=true python -m examples.trigger_pipeline

or on workers: `fleet worker --app examples.trigger_pipeline:app`, then
`python -m examples.trigger_pipeline` (or wait for 02:00) and `fleet triggers list
--app examples.trigger_pipeline:app` to see the triggers and their firings.
"""

from __future__ import annotations

import sys

from fleet import Fleet, Trigger

app = Fleet()
PRICES = {1: 12.5, 2: 30.0, 3: 7.25}


@app.task(triggers=[Trigger.cron("0 2 * * *", timezone="Europe/Paris", name="nightly")])
def fetch_orders(day: str = "today") -> list[int]:
    """The step the schedule starts: which orders to price."""
    return sorted(PRICES)


@app.task(triggers=[Trigger.on_result(fetch_orders, derive={"order_ids": "result"})])
def price(order_ids: list[int]) -> float:
    missing = [i for i in order_ids if i not in PRICES]
    if missing:
        raise LookupError(f"no price for orders {missing}")
    return sum(PRICES[i] for i in order_ids)


@app.task(triggers=[Trigger.on_result(price, derive={"total": "result"})])
def publish(total: float) -> str:
    line = f"orders total: {total:.2f}"
    print(line)
    return line


@app.task(triggers=[Trigger.on_exception(price, LookupError, kwargs={"reason": "pricing"})])
def alert(reason: str) -> None:
    print(f"alert: {reason} failed", file=sys.stderr)


@app.task(triggers=[Trigger.on_event("orders.refunded", derive={"order_id": "payload.order_id"})])
def refund(order_id: int) -> None:
    print(f"refunded order {order_id}")


def main() -> None:
    fetch_orders("2026-12-04")  # what the nightly trigger does at 02:00
    app.emit("orders.refunded", {"order_id": 7})
    app.close()


if __name__ == "__main__":
    main()
