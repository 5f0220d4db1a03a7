"""Publish a stream of messages to RabbitMQ with asynchronous publisher confirms.

pika's BlockingChannel waits for each confirm (about 1,000 messages/s here); this publisher
keeps up to ``window`` messages in flight on pika's own asynchronous adapter
(SelectConnection) and counts them confirmed as the broker's (multiple) acks arrive, which
reaches the broker's own pace. It pulls messages lazily from an iterator, so memory stays
bounded by the window however long the stream is.

Every message is persistent and mandatory. The call returns only when every message is
confirmed; a nack, an unroutable (returned) message, a closed connection or a stalled
broker raises ``PublishError`` instead, and the caller must treat the whole stream as not
delivered (at-least-once: it will be published again, with the same message ids).
"""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import takewhile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pika is imported when a publish runs, not by loading the location
    import pika
    from pika.channel import Channel
    from pika.frame import Method
    from pika.spec import Basic, BasicProperties


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] | None = None


@dataclass
class PublishReport:
    """What happened to a stream: counts per outcome, time spent, the first errors."""

    published: int = 0
    confirmed: int = 0
    nacked: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    error: str = ""
    # The connection failed or the broker stopped confirming: worth retrying as a whole.
    connection_lost: bool = False
    # What the message source raised, if it failed (kept as the PublishError's cause).
    source_error: BaseException | None = field(default=None, repr=False, compare=False)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every message published was confirmed, none refused or returned."""
        return not (self.error or self.nacked or self.returned) and (
            self.confirmed == self.published
        )


class PublishError(RuntimeError):
    """Some messages of the stream were not confirmed; nothing of it may be acknowledged."""

    def __init__(self, report: PublishReport) -> None:
        self.report = report
        self.__cause__ = report.source_error
        problems = []
        if report.error:
            problems.append(report.error)
        if report.returned:
            problems.append(f"{len(report.returned)} unroutable (first {report.returned[0]})")
        if report.nacked:
            problems.append(f"{len(report.nacked)} nacked (first {report.nacked[0]})")
        unconfirmed = report.published - report.confirmed
        super().__init__(
            f"publish failed after {report.confirmed}/{report.published} confirms "
            f"({unconfirmed} unconfirmed): {'; '.join(problems) or 'unknown reason'}"
        )


class ConfirmedStreamPublisher:
    """Runs one SelectConnection until a message stream is fully confirmed or fails."""

    def __init__(
        self,
        parameters: "pika.ConnectionParameters | pika.URLParameters",
        *,
        window: int = 1000,
        stall_timeout_s: float = 30.0,
    ) -> None:
        self._parameters = parameters
        self._window = window
        self._stall_timeout_s = stall_timeout_s

    def publish(self, messages: Iterable[OutgoingMessage]) -> PublishReport:
        """Publish every message; return the report or raise ``PublishError``."""
        run = _PublishRun(self._parameters, iter(messages), self._window, self._stall_timeout_s)
        report = run.execute()
        if not report.ok:
            raise PublishError(report)
        return report


class _PublishRun:
    """The callback state machine of one publish call (pika's adapter is callback-driven)."""

    def __init__(
        self,
        parameters: "pika.ConnectionParameters | pika.URLParameters",
        messages: Iterator[OutgoingMessage],
        window: int,
        stall_timeout_s: float,
    ) -> None:
        self.parameters = parameters
        self.messages = messages
        self.window = window
        self.stall_timeout_s = stall_timeout_s
        self.report = PublishReport()
        self.pending: dict[int, str] = {}  # delivery tag -> message id, oldest first
        self.next_tag = 0
        self.exhausted = False
        self.closing = False
        self.last_progress = time.monotonic()
        self.connection: pika.SelectConnection | None = None
        self.channel: Channel | None = None

    def execute(self) -> PublishReport:
        import pika

        started = time.monotonic()
        self.connection = pika.SelectConnection(
            self.parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
        )
        self.connection.ioloop.call_later(1.0, self._watchdog)
        self.connection.ioloop.start()
        self.report.seconds = time.monotonic() - started
        return self.report

    # -- connection and channel lifecycle --------------------------------------------

    def _on_open_error(self, connection: "pika.SelectConnection", error: BaseException) -> None:
        self.report.error = f"cannot connect to RabbitMQ: {error!r}"
        self.report.connection_lost = True
        connection.ioloop.stop()

    def _on_connection_open(self, connection: "pika.SelectConnection") -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: "Channel") -> None:
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_ok)

    def _on_confirm_ok(self, _frame: "Method") -> None:
        self._pump()

    def _on_channel_closed(self, _channel: "Channel", reason: BaseException) -> None:
        if not self.closing:
            self._fail(f"channel closed by the broker: {reason!r}")
        elif self.connection is not None and self.connection.is_open:
            self.connection.close()

    def _on_connection_closed(
        self, connection: "pika.SelectConnection", reason: BaseException
    ) -> None:
        if not self.closing and not self.report.error:
            self.report.error = f"connection lost: {reason!r}"
            self.report.connection_lost = True
        connection.ioloop.stop()

    def _fail(self, error: str) -> None:
        if not self.report.error:
            self.report.error = error
        self._close()

    def _close(self) -> None:
        self.closing = True
        if self.channel is not None and self.channel.is_open:
            self.channel.close()
        elif self.connection is not None and self.connection.is_open:
            self.connection.close()
        elif self.connection is not None:
            self.connection.ioloop.stop()

    def _watchdog(self) -> None:
        """Fail a stream whose broker stopped confirming (e.g. a resource alarm)."""
        if self.closing or self.connection is None:
            return
        if self.pending and time.monotonic() - self.last_progress > self.stall_timeout_s:
            self.report.connection_lost = True
            self._fail(f"no confirm for {self.stall_timeout_s:.0f}s")
            return
        self.connection.ioloop.call_later(1.0, self._watchdog)

    # -- publishing and confirms ---------------------------------------------------------

    def _pump(self) -> None:
        """Publish until the window is full or the stream ends; finish when all confirmed."""
        import pika
        from pika.spec import BasicProperties

        if self.closing or self.channel is None:
            return
        while not self.exhausted and len(self.pending) < self.window:
            try:
                message = next(self.messages)
            except StopIteration:
                self.exhausted = True
                break
            except Exception as exc:  # the source failed: nothing more can be published
                self.report.source_error = exc
                self._fail(f"message source failed: {type(exc).__name__}: {exc}")
                return
            self.channel.basic_publish(
                exchange=message.exchange,
                routing_key=message.routing_key,
                body=message.body,
                properties=BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=message.message_id,
                    content_type="application/json",
                    headers=message.headers,
                ),
                mandatory=True,
            )
            self.next_tag += 1
            self.pending[self.next_tag] = message.message_id
            self.report.published += 1
        if self.exhausted and not self.pending:
            self._close()

    def _on_return(
        self,
        _channel: "Channel",
        _method: "Basic.Return",
        properties: "BasicProperties",
        _body: bytes,
    ) -> None:
        # A return precedes the ack of the same message: remember it as undelivered.
        self.report.returned.append(properties.message_id or "?")

    def _on_confirm(self, frame: "Method") -> None:
        from pika.spec import Basic

        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        # Tags are issued in order and pending keeps insertion order: stop at the first above.
        tags = list(takewhile(lambda t: t <= tag, self.pending)) if multiple else [tag]
        nacked = isinstance(method, Basic.Nack)
        for t in tags:
            message_id = self.pending.pop(t, None)
            if message_id is None:
                continue
            if nacked:
                self.report.nacked.append(message_id)
            else:
                self.report.confirmed += 1
        self.last_progress = time.monotonic()
        self._pump()
