"""The Celery baseline's app and task, for the harness and for `celery worker`.

Job: define `noop` (and `mark`, the body of `bench.duplicates`) on a Celery app
configured from the environment: `BENCH_AMQP_URL` (the run's RabbitMQ),
`BENCH_CELERY_QUEUE` (a fresh queue per run) and `BENCH_CELERY_RELIABLE` ("1": Celery's
documented reliable setting, `task_acks_late=True` + `task_reject_on_worker_lost=True`;
otherwise its defaults, which ack a message when a worker receives it, so a killed
worker loses what it was running).

Results use Celery's `rpc://` backend: each result is published back to the caller's
own reply queue over the same RabbitMQ (no Redis here), the closest thing Celery ships
to the push notifications fleet and the Dramatiq baseline use. Everything else is left
at Celery's defaults (no publisher confirms, classic queue, prefetch multiplier 4).
"""

from __future__ import annotations

import os

from celery import Celery

from bench.completions import complete

URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench-celery")
RELIABLE = os.environ.get("BENCH_CELERY_RELIABLE", "0") == "1"

app = Celery("bench_celery", broker=URL, backend="rpc://")
app.conf.task_default_queue = QUEUE
app.conf.broker_connection_retry_on_startup = True
if RELIABLE:
    app.conf.task_acks_late = True
    app.conf.task_reject_on_worker_lost = True


@app.task(name="bench.noop")
def noop(x: int) -> int:
    return x


@app.task(name="bench.mark")
def mark(key: str) -> str:
    return complete(key)
