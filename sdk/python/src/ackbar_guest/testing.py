"""Native test harness: run a handler on a message and see what it did, without Wasm.

    from ackbar_guest import Decision
    from ackbar_guest.testing import message, run

    done = run(Handler, message(b'{"id": "o1"}', attempt=2))
    assert done.settled() is Decision.ACK
    assert done.logged("o1")
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

from . import HandlerLike, _handle_of, _native
from ._types import (
    Decision,
    Fatal,
    HandlerError,
    Header,
    Level,
    Message,
    OutputRecord,
    Retry,
)

__all__ = ["End", "Failed", "Interrupted", "Returned", "Run", "Trapped", "message", "run"]


@dataclass(frozen=True)
class Returned:
    """`handle` returned: `decision` settles the message, None leaves it to the ack policy."""

    decision: Decision | None


@dataclass(frozen=True)
class Failed:
    """`handle` raised `Retry` or `Fatal`: a handler failure (`err(...)` for the host)."""

    error: HandlerError


@dataclass(frozen=True)
class Interrupted:
    """The handler called `interrupt(decision)`."""

    decision: Decision


@dataclass(frozen=True)
class Trapped:
    """Any other exception: a trap for the host. `message` is "Type: text"."""

    message: str
    error: BaseException = field(compare=False, repr=False)


End = Union[Returned, Failed, Interrupted, Trapped]
"""How the `handle` call ended."""


@dataclass
class Run:
    """Everything one call did."""

    end: End
    decisions: list[Decision] = field(default_factory=list)
    """Every ack/nack/reject call, in order (the host keeps only the first)."""
    logs: list[tuple[Level, str]] = field(default_factory=list)
    sent: list[OutputRecord] = field(default_factory=list)
    """Every record sent, in order (the host publishes them only if the attempt succeeds)."""

    def settled(self) -> Decision | None:
        """The decision the host would settle the message with, if the handler made one: the
        first acker call, else an interrupt, else a returned decision. None: the policy decides."""
        if self.decisions:
            return self.decisions[0]
        if isinstance(self.end, (Interrupted, Returned)):
            return self.end.decision
        return None

    def logged(self, text: str) -> bool:
        """Whether any log line contains `text`."""
        return any(text in line for _, line in self.logs)

    def sent_to(self, topic: str) -> list[bytes]:
        """The payloads sent to `topic`, in order (records without a payload are skipped)."""
        return [r.payload for r in self.sent if r.topic == topic and r.payload is not None]


def run(
    handler: HandlerLike,
    msg: Message | bytes | str,
    *,
    outputs: Iterable[str] | None = None,
) -> Run:
    """Call the handler's `handle(msg)` natively, recording acker, log and send calls.

    `handler` is what `export` takes, or the class `export` returned; a class is instantiated
    afresh for each run. `msg` may be a payload, for `message(msg)`. With `outputs` (topic names,
    or prefixes ending in `*`, like a pipeline's `outputs`), a send to any other topic raises
    `TopicNotAllowed` as it would in the host. Interrupts and exceptions are caught and reported
    in `Run.end`, so a test can assert on failures and traps too.
    """
    handler = getattr(handler, "_ackbar_handler", handler)
    if not isinstance(msg, Message):
        msg = message(msg)
    recorder = _native.Recorder(outputs=None if outputs is None else tuple(outputs))
    token = _native.CURRENT.set(recorder)
    try:
        end = _call(handler, msg)
    finally:
        _native.CURRENT.reset(token)
    if recorder.interrupted is not None:
        end = Interrupted(recorder.interrupted)
    return Run(end=end, decisions=recorder.decisions, logs=recorder.logs, sent=recorder.sent)


def _call(handler: HandlerLike, msg: Message) -> End:
    try:
        decision = _handle_of(handler)(msg)
    except _native.Interrupt as signal:
        return Interrupted(signal.decision)
    except (Retry, Fatal) as error:
        return Failed(error)
    except Exception as error:  # everything else traps in a component
        return Trapped(f"{type(error).__name__}: {error}", error)
    if decision is not None and not isinstance(decision, Decision):
        # The component would trap on it too.
        error = TypeError(f"handle must return an ackbar_guest.Decision or None, not {decision!r}")
        return Trapped(f"TypeError: {error}", error)
    return Returned(decision)


def message(
    payload: bytes | str | None = b"",
    *,
    topic: str = "test",
    partition: int = 0,
    offset: int = 0,
    timestamp: int | None = None,
    key: bytes | str | None = None,
    headers: Iterable[Header | tuple[str, bytes | str | None]] = (),
    attempt: int = 1,
) -> Message:
    """A message with `payload` (str is encoded as UTF-8) and defaults for everything else:
    topic "test", partition 0, offset 0, attempt 1, no timestamp, key or headers."""
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
        key=_encode(key),
        payload=_encode(payload),
        headers=[h if isinstance(h, Header) else Header(h[0], _encode(h[1])) for h in headers],
        attempt=attempt,
    )


def _encode(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
