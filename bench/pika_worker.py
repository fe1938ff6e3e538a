"""The raw pika baseline's consumer: `python -m bench.pika_worker URL QUEUE PREFETCH`.

Job: the least a task system on RabbitMQ must do per task, written directly on pika:
consume with manual acks and a prefetch window, "run" the task (the body is an int,
the result is the same int), publish the result to the message's `reply_to`, then ack.

Contract: one thread, one connection, one channel; runs until SIGTERM or SIGINT and
then closes its connection. Replies are plain publishes without confirms (results are
notifications here, as in fleet and in the Dramatiq baseline's backend).
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import pika


def main(argv: list[str]) -> int:
    url, queue, prefetch = argv[0], argv[1], int(argv[2])
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    stopping = False

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        result = str(int(body)).encode()
        if props.reply_to:
            ch.basic_publish("", props.reply_to, result)
        ch.basic_ack(method.delivery_tag)

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    channel.basic_consume(queue, on_message, auto_ack=False)
    while not stopping:
        connection.process_data_events(time_limit=0.5)
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
