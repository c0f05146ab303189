"""Write an Ackbar message handler in Python and unit-test it natively, without Wasm or a broker.

    from ackbar_guest import Decision, Level, Message, Retry, export, log

    class Handler:
        def handle(self, msg: Message) -> Decision | None:
            if not msg.payload:
                return Decision.REJECT           # settle it
            if msg.attempt < 3 and msg.text == "later":
                raise Retry("not yet")           # a handler failure; NACK_ON_ERROR redelivers
            log(Level.INFO, msg.text)
            return None                          # leave it to the ack policy

    WitWorld = export(Handler)                   # what componentize-py looks for

Handlers call `ack`, `nack`, `reject`, `interrupt`, `log` and `send`/`send_to`. Inside a component
(built with `python -m ackbar_guest.build`) they are the host's imports; natively they are
recorded by `ackbar_guest.testing.run`, which returns everything the handler did.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, Union

from ._types import (
    Decision,
    Fatal,
    HandlerError,
    Header,
    InvalidRecord,
    Level,
    LimitExceeded,
    Message,
    NoMessage,
    OutputRecord,
    Retry,
    SendError,
    TopicNotAllowed,
)

# componentize-py runs CPython built for WASI: there the calls go to the host.
if sys.platform == "wasi" and not TYPE_CHECKING:
    from . import _wasm as _backend
else:
    from . import _native as _backend

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "Fatal",
    "Handler",
    "HandlerError",
    "HandlerLike",
    "Header",
    "InvalidRecord",
    "Level",
    "LimitExceeded",
    "Message",
    "NoMessage",
    "OutputRecord",
    "Retry",
    "SendError",
    "TopicNotAllowed",
    "ack",
    "export",
    "interrupt",
    "log",
    "nack",
    "reject",
    "send",
    "send_to",
    "wit_path",
]


class Handler(Protocol):
    """What `export` and `testing.run` accept as a class or an instance: a `handle` method.

    `handle` returns None (the ack policy decides) or a `Decision` (settles the message), or
    raises `Retry` / `Fatal` (a handler failure). Any other exception is a trap: the host counts
    a failure and replaces the instance. Attributes of the instance live as long as the Wasm
    instance, across calls, until a trap or an interrupt replaces it.
    """

    def handle(self, msg: Message) -> Decision | None: ...


HandlerLike = Union[type[Handler], Handler, Callable[[Message], Union[Decision, None]]]
"""A handler class (instantiated once), an instance, or a plain `handle(msg)` function."""


def ack() -> None:
    """Settle the current message as acknowledged. The first decision made for a message wins."""
    _backend.settle(Decision.ACK)


def nack() -> None:
    """Settle the current message as not acknowledged: it is delivered again after a backoff."""
    _backend.settle(Decision.NACK)


def reject() -> None:
    """Settle the current message as rejected (committed; dead-lettered where configured)."""
    _backend.settle(Decision.REJECT)


def interrupt(decision: Decision) -> NoReturn:
    """Settle the current message with `decision` and end the `handle` call at once, from any
    depth (FastStream's `AckMessage` / `NackMessage`). Never returns; in a component no `except`
    or `finally` block runs after it, and the instance is replaced."""
    _backend.interrupt(decision)


def log(level: Level, text: str) -> None:
    """Write to the host's log, tagged with the pipeline, topic, partition and offset."""
    _backend.log(level, text)


def send(record: OutputRecord) -> None:
    """Add `record` to what this attempt publishes.

    It is written only if the attempt settles the message as handled (an ack, explicit or by the
    policy); a nack, reject, error or trap drops everything the attempt sent. Raises a
    `SendError` (`TopicNotAllowed`, `LimitExceeded`, `InvalidRecord`, `NoMessage`) when the host
    refuses the record; the call goes on, and the handler decides what that means.
    """
    _backend.send(record)


def send_to(topic: str, key: bytes | str | None, payload: bytes | str | None) -> None:
    """`send` a record without headers to `topic`, letting the key choose the partition; str
    keys and payloads are encoded as UTF-8."""
    send(OutputRecord(topic=topic, key=_encode(key), payload=_encode(payload)))


def export(handler: HandlerLike) -> type:
    """The class componentize-py calls: assign it to `WitWorld` in the app module.

        WitWorld = export(MyHandler)

    A class is instantiated once, here; an instance or a function is called as is.
    """
    target = _handle_of(handler)
    call = _backend.handle

    class WitWorld(_backend.WorldBase):  # type: ignore[misc]
        def handle(self, msg: Any) -> Any:
            return call(target, msg)

    WitWorld._ackbar_handler = handler
    WitWorld.__doc__ = f"The component's export, calling {handler!r}."
    return WitWorld


def wit_path() -> Path:
    """The WIT file this SDK was written against (the `-d` argument of componentize-py)."""
    return Path(__file__).parent / "wit" / "ackbar.wit"


def _handle_of(handler: HandlerLike) -> Callable[[Message], Decision | None]:
    if isinstance(handler, type):
        return handler().handle  # type: ignore[no-any-return]
    method = getattr(handler, "handle", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(handler):
        return handler
    raise TypeError(f"a handler is a class or object with handle(msg), or a function: {handler!r}")


def _encode(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
