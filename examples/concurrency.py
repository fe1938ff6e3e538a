"""Concurrency control in a small shop: each option where it earns its keep.

- `refresh_catalog` runs at most once at a time: a call while one is pending or
  running gets that one (registration_concurrency="TASK").
- `price` caches its results for ten minutes (call_result_cache), ignoring the
  request id it is given for tracing (disable_cache_args).
- `charge` is called with an idempotency key: a retried request charges once.
- `post_ledger` never runs twice at once for one account (running_concurrency KEYS),
  and at most 20 times per second per account (rate_limit, rate_limit_key).

Run it inline (no broker, no workers; running limits and rate limits do not apply
inline, the rest does):

    FLEET__INLINE=true python -m examples.concurrency

or on workers: `fleet worker --app examples.concurrency:app --threads 4`, then
`python -m examples.concurrency`, and `fleet status --app examples.concurrency:app` to
see what waits BLOCKED.
"""

from __future__ import annotations

import sys
import time

from fleet import Fleet
from fleet.concurrency import Limit, Mode

app = Fleet()
CATALOG = {"pen": 150, "book": 1200, "lamp": 3500}


@app.task(registration_concurrency="TASK")
def refresh_catalog() -> int:
    time.sleep(0.2)  # a slow upstream: duplicate refreshes would only add load
    return len(CATALOG)


@app.task(call_result_cache=True, cache_ttl=600, disable_cache_args=("request_id",))
def price(item: str, request_id: str = "") -> int:
    return CATALOG[item]


@app.task
def charge(order: int, cents: int) -> str:
    return f"charged order {order}: {cents} cents"


@app.task(
    running_concurrency=Limit(Mode.KEYS, limit=1),
    key_arguments=("account",),
    rate_limit="20/s",
    rate_limit_key=("account",),
)
def post_ledger(account: str, cents: int) -> tuple[str, int]:
    return account, cents


def main() -> int:
    first, second = refresh_catalog(), refresh_catalog()
    print(f"catalog refreshes: {len({first.id, second.id})} ({first.result(timeout=60)} items)")

    a = price("lamp", request_id="r1")
    a.result(timeout=60)
    b, c = price("lamp", request_id="r2"), price("lamp", request_id="r3")  # cached
    print(f"lamp: {c.result(timeout=60)} cents, {len({a.id, b.id, c.id})} run(s)")

    once = [charge.call_with(idempotency_key="order-7")(7, 4850) for _ in range(3)]
    print(f"{once[-1].result(timeout=60)} ({len({h.id for h in once})} charge)")

    posts = post_ledger.parallelize([("acme", n) for n in range(5)] + [("zeta", 1)])
    print(f"ledger lines: {len(posts.results(timeout=60))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
