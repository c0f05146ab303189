# mypy: disable-error-code="import-not-found,import-untyped"
"""The SDK inside a component: calls componentize-py's generated `wit_world` bindings.

Imported only under WASI. componentize-py snapshots the interpreter after importing the app, and
a component has no files to import from afterwards, so everything is imported here, eagerly.

The bindings exist only inside componentize-py's build (hence the mypy line above).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from componentize_py_types import Err

import wit_world
from wit_world.imports import acker, producer
from wit_world.imports import log as wit_log
from wit_world.imports import types as wit_types

from ._types import (
    Decision,
    Fatal,
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

WorldBase: type = wit_world.WitWorld

_DECISIONS = {
    Decision.ACK: wit_types.Decision.ACK,
    Decision.NACK: wit_types.Decision.NACK,
    Decision.REJECT: wit_types.Decision.REJECT,
}
_LEVELS = {
    Level.TRACE: wit_log.Level.TRACE,
    Level.DEBUG: wit_log.Level.DEBUG,
    Level.INFO: wit_log.Level.INFO,
    Level.WARN: wit_log.Level.WARN,
    Level.ERROR: wit_log.Level.ERROR,
}
_SEND_ERRORS: dict[type, type[SendError]] = {
    producer.SendError_TopicNotAllowed: TopicNotAllowed,
    producer.SendError_LimitExceeded: LimitExceeded,
    producer.SendError_Invalid: InvalidRecord,
}


def _decision(decision: object) -> object:
    try:
        return _DECISIONS[decision]  # type: ignore[index]
    except (KeyError, TypeError):
        raise TypeError(f"expected an ackbar_guest.Decision, got {decision!r}") from None


def _message(msg: wit_types.Message) -> Message:
    headers = [Header(h.key, h.value) for h in msg.headers] if msg.headers else []
    return Message(
        msg.topic, msg.partition, msg.offset, msg.timestamp, msg.key, msg.payload, headers,
        msg.attempt,
    )


def handle(target: Callable[[Message], Decision | None], msg: wit_types.Message) -> object:
    """One `handle` export call: SDK types in, the generated result types out."""
    try:
        decision = target(_message(msg))
    except Retry as err:
        raise Err(wit_types.HandlerError_Retry(err.message)) from None
    except Fatal as err:
        raise Err(wit_types.HandlerError_Fatal(err.message)) from None
    return None if decision is None else _decision(decision)


def settle(decision: Decision) -> None:
    if decision is Decision.ACK:
        acker.ack()
    elif decision is Decision.NACK:
        acker.nack()
    elif decision is Decision.REJECT:
        acker.reject()
    else:
        _decision(decision)


def interrupt(decision: Decision) -> NoReturn:
    acker.interrupt(_decision(decision))
    raise RuntimeError("ackbar: the host did not end the call on interrupt")


def log(level: Level, text: str) -> None:
    try:
        wit_level = _LEVELS[level]
    except (KeyError, TypeError):
        raise TypeError(f"expected an ackbar_guest.Level, got {level!r}") from None
    wit_log.log(wit_level, text)


def send(record: OutputRecord) -> None:
    headers = [wit_types.Header(h.key, h.value) for h in record.headers]
    try:
        producer.send(
            producer.OutputRecord(record.topic, record.key, record.payload, headers, record.partition)
        )
    except Err as err:
        kind = _SEND_ERRORS.get(type(err.value))
        if kind is None:
            raise NoMessage("send was called outside a handle call") from None
        raise kind(err.value.value) from None
