"""The guest contract's types (wit/ackbar.wit), as plain Python: usable natively and in Wasm."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Decision(Enum):
    """How a message is settled."""

    ACK = "ack"
    """Done: commit this offset (and everything before it in the partition)."""
    NACK = "nack"
    """Not done: the message is delivered again after a backoff, before anything after it."""
    REJECT = "reject"
    """Done but unprocessable: commit it (and dead-letter it where configured)."""


class Level(Enum):
    """How severe a log line is. The host's filter (`ACKBAR_LOG`, default info) picks levels."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(slots=True)
class Header:
    """A Kafka record header; `value` is None for a header without a value (not b"")."""

    key: str
    value: bytes | None


@dataclass(slots=True)
class Message:
    """One Kafka record, as delivered to the handler."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    """Milliseconds since the Unix epoch, when the broker has one."""
    key: bytes | None
    payload: bytes | None
    """None for a record without a value (a tombstone)."""
    headers: list[Header]
    attempt: int
    """1 on first delivery; +1 each time the host redelivers the message after a nack."""

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes replaced); "" when there is none."""
        return self.payload.decode("utf-8", "replace") if self.payload else ""


@dataclass(slots=True)
class OutputRecord:
    """One record for `send`; `topic` must be one of the pipeline's `outputs`."""

    topic: str
    key: bytes | None = None
    payload: bytes | None = None
    headers: list[Header] = field(default_factory=list)
    partition: int | None = None
    """None lets the key choose the partition (or spreads keyless records)."""


class HandlerError(Exception):
    """A handler failure: raise `Retry` or `Fatal` (or a subclass of either) from `handle`.

    Both count as "handler failed" for the ack policy. Errors compare equal when they are of the
    same class with the same message, so tests can compare them.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.message == getattr(other, "message", None)

    def __hash__(self) -> int:
        return hash((type(self), self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class Retry(HandlerError):
    """A transient failure: redelivery may succeed (a dependency was down, a timeout)."""


class Fatal(HandlerError):
    """A permanent failure: under NACK_ON_ERROR the message is rejected instead of retried."""


class SendError(Exception):
    """Why `send` did not accept a record. The call goes on; the handler decides what it means."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.detail == getattr(other, "detail", None)

    def __hash__(self) -> int:
        return hash((type(self), self.detail))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


class TopicNotAllowed(SendError):
    """The topic is not among the pipeline's `outputs`."""


class LimitExceeded(SendError):
    """The call already sent as many records or bytes as the pipeline allows per call."""


class InvalidRecord(SendError):
    """A field is out of range (a negative partition, an empty topic)."""


class NoMessage(SendError):
    """`send` was called outside a `handle` call."""
