"""The Dramatiq baseline: its RabbitMQ broker, its Results middleware, the same tasks.

Job: define `noop` and `sleeper` as Dramatiq actors that store their results (and
`mark`, the body of `bench.duplicates`, with Dramatiq's default options), for the
harness (producer) and for `dramatiq bench.dramatiq_tasks` workers, configured from the
environment: `BENCH_AMQP_URL`, `BENCH_DRAMATIQ_QUEUE` (a fresh queue per run),
`BENCH_RESULTS_QUEUE` and `BENCH_DRAMATIQ_CONFIRM` ("1": publisher confirms on).

Why a custom result backend: Dramatiq ships result backends for Redis and Memcached
(and an in-process stub), none of which runs here. `AMQPResults` is the smallest honest
stand-in on the RabbitMQ the run already has: a worker publishes each wrapped result,
keyed like Dramatiq's own backends, to one results queue (a plain publish, no confirm:
a notification, as fleet's are); the producer consumes that queue on a thread and
wakes the caller blocked in `get_result` (push, where the Redis backend would block in
BLPOP). It costs Dramatiq one extra publish per task, about what a Redis SET would.

Two configurations: with `BENCH_DRAMATIQ_CONFIRM=1` the broker publishes with confirms
(`confirm_delivery=True`, the guarantee fleet gives its callers); otherwise Dramatiq's
default, without them (a `send` that returned may be lost if RabbitMQ goes down), as
users run it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results, ResultTimeout
from dramatiq.results.backend import DEFAULT_TIMEOUT, ResultBackend

from bench.completions import complete


class AMQPResults(ResultBackend):
    """Results over one RabbitMQ queue; see the module docstring."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__()
        self.url = url
        self.queue = queue
        self._local = threading.local()
        self._results: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()

    # -- worker side ----------------------------------------------------------------
    def _channel(self) -> Any:
        channel = getattr(self._local, "channel", None)
        if channel is None or not channel.is_open:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            channel = self._local.channel = connection.channel()
        return channel

    def _store(self, message_key: str, result: Any, ttl: int) -> None:
        body = self.encoder.encode({"key": message_key, "result": result})
        self._channel().basic_publish("", self.queue, body)

    # -- producer side --------------------------------------------------------------
    def start_reader(self) -> None:
        """Declare the results queue and start consuming it (producer only)."""
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(30):
            raise RuntimeError("results reader did not start")

    def _read(self, ready: threading.Event) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        channel.queue_declare(self.queue, durable=False, auto_delete=False)

        def on_result(ch: Any, method: Any, props: Any, body: bytes) -> None:
            data = self.encoder.decode(body)
            with self._cond:
                self._results[data["key"]] = data["result"]
                self._cond.notify_all()

        channel.basic_consume(self.queue, on_result, auto_ack=True)
        ready.set()
        while not self._stop.is_set():
            connection.process_data_events(time_limit=0.2)
        channel.queue_delete(self.queue)
        connection.close()

    def stop_reader(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(10)

    def _get(self, message_key: str) -> Any:
        from dramatiq.results.backend import Missing

        with self._cond:
            return self._results.pop(message_key, Missing)

    def get_result(self, message: Any, *, block: bool = False, timeout: int | None = None) -> Any:
        key = self.build_message_key(message)
        deadline = time.monotonic() + (timeout or DEFAULT_TIMEOUT) / 1000
        with self._cond:
            while block and key not in self._results:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResultTimeout(message)
                self._cond.wait(left)
        return super().get_result(message, block=False)


URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
QUEUE = os.environ.get("BENCH_DRAMATIQ_QUEUE", "bench")
results = AMQPResults(URL, os.environ.get("BENCH_RESULTS_QUEUE", "bench-results"))
CONFIRM = os.environ.get("BENCH_DRAMATIQ_CONFIRM", "0") == "1"
broker = RabbitmqBroker(url=URL, confirm_delivery=CONFIRM)
broker.add_middleware(Results(backend=results))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0)
def noop(x: int) -> int:
    return x


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0)
def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dramatiq.actor(queue_name=QUEUE)
def mark(key: str) -> str:
    """The body of `bench.duplicates`, with Dramatiq's default actor options."""
    return complete(key)
