"""The SDK outside Wasm: host calls are recorded by `ackbar_guest.testing.run`."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import NoReturn

from ._types import Decision, InvalidRecord, Level, Message, OutputRecord, TopicNotAllowed

WorldBase: type = object


@dataclass
class Recorder:
    decisions: list[Decision] = field(default_factory=list)
    logs: list[tuple[Level, str]] = field(default_factory=list)
    sent: list[OutputRecord] = field(default_factory=list)
    outputs: tuple[str, ...] | None = None
    interrupted: Decision | None = None


CURRENT: ContextVar[Recorder | None] = ContextVar("ackbar_guest_recorder", default=None)


class Interrupt(BaseException):
    """Carries an interrupt out of the handler, like the host ending the call.

    A BaseException, so that the handler's `except Exception` blocks do not catch it (in a
    component no handler code runs after an interrupt).
    """

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision)
        self.decision = decision


def _recorder(call: str) -> Recorder:
    recorder = CURRENT.get()
    if recorder is None:
        raise RuntimeError(
            f"ackbar_guest.{call}() outside Wasm needs ackbar_guest.testing.run(handler, message)"
        )
    return recorder


def _check(value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"expected an ackbar_guest.{what}, got {value!r}")


def handle(target: Callable[[Message], Decision | None], msg: Message) -> Decision | None:
    """Natively the exported class passes SDK messages straight to the handler."""
    return target(msg)


def settle(decision: Decision) -> None:
    _check(decision, Decision, "Decision")
    _recorder(decision.value).decisions.append(decision)


def interrupt(decision: Decision) -> NoReturn:
    _check(decision, Decision, "Decision")
    # Remembered too, in case the handler catches BaseException: the host would have ended it.
    _recorder("interrupt").interrupted = decision
    raise Interrupt(decision)


def log(level: Level, text: str) -> None:
    _check(level, Level, "Level")
    _check(text, str, "str (the log text)")
    _recorder("log").logs.append((level, text))


def send(record: OutputRecord) -> None:
    _check(record, OutputRecord, "OutputRecord")
    recorder = _recorder("send")
    # The checks the host makes that do not depend on its configuration, plus `outputs` when the
    # test declares them.
    if not record.topic:
        raise InvalidRecord("the topic is empty")
    if record.partition is not None and record.partition < 0:
        raise InvalidRecord(f"partition {record.partition} is negative")
    if recorder.outputs is not None and not any(
        _matches(pattern, record.topic) for pattern in recorder.outputs
    ):
        raise TopicNotAllowed(f"topic '{record.topic}' is not among the pipeline's outputs")
    recorder.sent.append(record)


def _matches(pattern: str, topic: str) -> bool:
    """The host's `outputs` patterns: a name, or a prefix ending in `*`."""
    if pattern.endswith("*"):
        return topic.startswith(pattern[:-1])
    return topic == pattern
