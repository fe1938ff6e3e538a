"""Publisher confirms on one channel: publishes pipelined, then RabbitMQ's verdicts.

Job: put a batch of messages on a confirm-mode channel and tell, item by item, whether
RabbitMQ took it or why not, without waiting message by message. The publisher
(`fleet.broker._amqp_publisher`) adds pooled connections and retries on top; the admin
and the consumer's hand-backs (`fleet.broker._amqp_holding`) use it directly.

Contract:
- `ConfirmChannel.publish(items)` sends every item (mandatory, so an unroutable message
  comes back as a failure) and only then waits for the broker's confirms (honouring
  `multiple=True`), keeping at most `WINDOW` unconfirmed. It returns one result per
  item: None when confirmed, else the reason (nacked, returned). It waits at most
  `publish_timeout` seconds for progress; a timeout or a lost connection raises
  `LinkError` (the unconfirmed items are simply not known to be taken). `send(items)`
  then `collect()` is the same in two halves: the items are on the socket when `send`
  returns, and the caller may do other work before it waits.
"""

from __future__ import annotations

from collections.abc import Sequence

import pika
from pika.channel import Channel
from pika.spec import Basic

from fleet._value_class import value_class
from fleet.broker._amqp_link import Link, LinkError

WINDOW = 2000
"""Most unconfirmed messages in flight on one channel."""
NACKED = "nacked by RabbitMQ (queue full with overflow reject-publish, or a broker error)"


@value_class
class Outgoing:
    """One message on its way out: where to, what, with which properties."""

    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties


class ConfirmChannel:
    """A confirm-mode channel on a `Link`; see the module docstring."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.timeout = link.endpoint.options.publish_timeout
        self.channel: Channel = link.channel()
        self.channel.add_on_return_callback(self._on_return)
        link.call(self.channel, "confirm_delivery", self._on_confirm)
        number = self.channel.channel_number
        link.connection.on_ack[number] = self._confirmed
        self.channel.add_on_close_callback(lambda *_: link.connection.on_ack.pop(number, None))
        self._next_tag = 1
        self._low = 1
        self._pending: dict[int, int] = {}
        self._results: list[str | None] = []
        self._by_id: dict[str, int] = {}

    @property
    def alive(self) -> bool:
        return self.link.alive and self.channel.is_open

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        failed = NACKED if isinstance(method, Basic.Nack) else None
        self._confirmed(method.delivery_tag, method.multiple, failed)

    def _confirmed(self, tag: int, multiple: bool, failed: str | None = None) -> None:
        pending = self._pending
        if multiple:
            for t in range(self._low, tag + 1):
                index = pending.pop(t, None)
                if index is not None and failed and self._results[index] is None:
                    self._results[index] = failed
            self._low = max(self._low, tag + 1)
        else:
            index = pending.pop(tag, None)
            if index is not None and failed and self._results[index] is None:
                self._results[index] = failed

    def _on_return(
        self, _channel: Channel, method: Basic.Return, props: pika.BasicProperties, _body: bytes
    ) -> None:
        index = self._by_id.get(props.message_id or "")
        if index is not None:
            self._results[index] = (
                f"returned by RabbitMQ: {method.reply_code} {method.reply_text} "
                f"(no queue {method.routing_key!r} on exchange {method.exchange!r})"
            )

    def publish(self, items: Sequence[Outgoing]) -> list[str | None]:
        """Publish and wait for confirms; see the module docstring."""
        self.send(items)
        return self.collect()

    def send(self, items: Sequence[Outgoing]) -> None:
        """The first half of `publish`: every item is written to the socket (beyond
        `WINDOW` unconfirmed, after waiting for confirms) when it returns."""
        self._results = [None] * len(items)
        self._by_id = {}
        channel = self.channel
        try:
            for index, item in enumerate(items):
                if item.properties.message_id:
                    self._by_id[item.properties.message_id] = index
                self._pending[self._next_tag] = index
                self._next_tag += 1
                channel.basic_publish(
                    item.exchange, item.routing_key, item.body, item.properties, mandatory=True
                )
                if len(self._pending) >= WINDOW:
                    self._wait(WINDOW // 2)
            self.link.send()
        except BaseException:
            self._pending.clear()
            raise

    def collect(self) -> list[str | None]:
        """The second half of `publish`: wait for the confirms of what `send` sent."""
        try:
            self._wait(0)
        finally:
            unconfirmed = set(self._pending.values())
            self._pending.clear()
        results = self._results
        for index in unconfirmed:
            results[index] = results[index] or "not confirmed"
        return results

    def _wait(self, most: int) -> None:
        pending = self._pending
        while len(pending) > most:
            before = len(pending)
            done = self.link.drive(
                lambda: len(pending) <= most or self.channel.is_closed, self.timeout
            )
            if self.channel.is_closed:
                raise self.link.closed_reason(self.channel) or LinkError("channel closed")
            if not done and len(pending) == before:
                raise LinkError(f"no publisher confirm within {self.timeout:.1f}s")
