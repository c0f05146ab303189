"""The conversions at the component boundary (ackbar_guest._wasm), against stand-ins for the
`wit_world` bindings componentize-py generates (same names and shapes as version 0.25.1's)."""

import enum
import importlib
import subprocess
import sys
import tempfile
import types
import unittest
from dataclasses import dataclass
from typing import Optional, Protocol
from unittest import mock

import ackbar_guest
from ackbar_guest import build
from ackbar_guest import (
    Decision,
    Fatal,
    Header,
    LimitExceeded,
    Level,
    Message,
    NoMessage,
    OutputRecord,
    Retry,
    TopicNotAllowed,
)


@dataclass(frozen=True)
class Err(Exception):
    value: object


@dataclass
class WitHeader:
    key: str
    value: Optional[bytes]


@dataclass
class WitMessage:
    topic: str
    partition: int
    offset: int
    timestamp: Optional[int]
    key: Optional[bytes]
    payload: Optional[bytes]
    headers: list
    attempt: int


class WitDecision(enum.Enum):
    ACK = 0
    NACK = 1
    REJECT = 2


class WitLevel(enum.Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


@dataclass
class HandlerError_Retry:
    value: str


@dataclass
class HandlerError_Fatal:
    value: str


@dataclass
class WitOutputRecord:
    topic: str
    key: Optional[bytes]
    payload: Optional[bytes]
    headers: list
    partition: Optional[int]


@dataclass
class SendError_TopicNotAllowed:
    value: str


@dataclass
class SendError_LimitExceeded:
    value: str


@dataclass
class SendError_Invalid:
    value: str


@dataclass
class SendError_NoMessage:
    pass


class WitWorldProtocol(Protocol):
    def handle(self, msg: WitMessage) -> Optional[WitDecision]: ...


class HostInterrupt(BaseException):
    """What the host does on interrupt: the call never comes back."""


def fake_bindings(calls):
    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    def host_interrupt(decision):
        calls.append(("interrupt", decision))
        raise HostInterrupt

    def host_send(record):
        calls.append(("send", record))
        if record.topic == "refused":
            raise Err(SendError_TopicNotAllowed("refused"))
        if record.topic == "full":
            raise Err(SendError_LimitExceeded("100 records"))
        if record.topic == "idle":
            raise Err(SendError_NoMessage())

    wit_types = module("wit_world.imports.types", Header=WitHeader, Message=WitMessage,
                       Decision=WitDecision, HandlerError_Retry=HandlerError_Retry,
                       HandlerError_Fatal=HandlerError_Fatal)
    acker = module("wit_world.imports.acker", interrupt=host_interrupt,
                   **{name: (lambda name=name: calls.append((name,)))
                      for name in ("ack", "nack", "reject")})
    log = module("wit_world.imports.log", Level=WitLevel,
                 log=lambda level, text: calls.append(("log", level, text)))
    producer = module("wit_world.imports.producer", OutputRecord=WitOutputRecord, send=host_send,
                      SendError_TopicNotAllowed=SendError_TopicNotAllowed,
                      SendError_LimitExceeded=SendError_LimitExceeded,
                      SendError_Invalid=SendError_Invalid,
                      SendError_NoMessage=SendError_NoMessage)
    imports = module("wit_world.imports", types=wit_types, acker=acker, log=log,
                     producer=producer)
    imports.__path__ = []
    world = module("wit_world", WitWorld=WitWorldProtocol, imports=imports)
    world.__path__ = []
    return {
        "componentize_py_types": module("componentize_py_types", Err=Err),
        "wit_world": world,
        "wit_world.imports": imports,
        "wit_world.imports.types": wit_types,
        "wit_world.imports.acker": acker,
        "wit_world.imports.log": log,
        "wit_world.imports.producer": producer,
    }


WIT_MESSAGE = WitMessage("orders", 1, 42, 1700, b"k", b"payload",
                         [WitHeader("a", b"1"), WitHeader("b", None)], 2)


class BoundaryTest(unittest.TestCase):
    def setUp(self):
        self.calls = []
        patcher = mock.patch.dict(sys.modules, fake_bindings(self.calls))
        patcher.start()
        self.addCleanup(patcher.stop)
        sys.modules.pop("ackbar_guest._wasm", None)
        self.addCleanup(sys.modules.pop, "ackbar_guest._wasm", None)
        self.wasm = importlib.import_module("ackbar_guest._wasm")
        backend = mock.patch.object(ackbar_guest, "_backend", self.wasm)
        backend.start()
        self.addCleanup(backend.stop)

    def call(self, handler):
        return ackbar_guest.export(handler)().handle(WIT_MESSAGE)

    def test_the_export_implements_the_generated_protocol(self):
        self.assertIn(WitWorldProtocol, ackbar_guest.export(lambda msg: None).__mro__)

    def test_the_message_arrives_as_sdk_types(self):
        seen = []
        self.assertIsNone(self.call(seen.append))
        self.assertEqual(seen, [Message("orders", 1, 42, 1700, b"k", b"payload",
                                        [Header("a", b"1"), Header("b", None)], 2)])

    def test_decisions_become_the_generated_enum(self):
        for decision in Decision:
            self.assertIs(self.call(lambda msg, d=decision: d), WitDecision[decision.name])

    def test_retry_and_fatal_become_handler_errors(self):
        class Offline(Retry):
            pass

        for error, expected in ((Retry("later"), HandlerError_Retry("later")),
                                (Offline("down"), HandlerError_Retry("down")),
                                (Fatal("never"), HandlerError_Fatal("never"))):
            def handle(msg, error=error):
                raise error

            with self.assertRaises(Err) as caught:
                self.call(handle)
            self.assertEqual(caught.exception.value, expected)

    def test_other_exceptions_and_return_values_trap(self):
        def handle(msg):
            raise KeyError("x")

        with self.assertRaises(KeyError):
            self.call(handle)
        with self.assertRaisesRegex(TypeError, "Decision"):
            self.call(lambda msg: "ack")

    def test_host_calls(self):
        def handle(msg):
            ackbar_guest.nack()
            ackbar_guest.ack()
            ackbar_guest.reject()
            ackbar_guest.log(Level.WARN, "w")
            ackbar_guest.send(OutputRecord("out", b"k", b"v", [Header("h", None)], 3))
            ackbar_guest.send_to("out", "k2", "v2")
            ackbar_guest.interrupt(Decision.ACK)

        with self.assertRaises(HostInterrupt):
            self.call(handle)
        self.assertEqual(self.calls, [
            ("nack",), ("ack",), ("reject",), ("log", WitLevel.WARN, "w"),
            ("send", WitOutputRecord("out", b"k", b"v", [WitHeader("h", None)], 3)),
            ("send", WitOutputRecord("out", b"k2", b"v2", [], None)),
            ("interrupt", WitDecision.ACK),
        ])

    def test_send_errors_become_sdk_exceptions(self):
        for topic, expected in (("refused", TopicNotAllowed("refused")),
                                ("full", LimitExceeded("100 records"))):
            with self.assertRaises(type(expected)) as caught:
                ackbar_guest.send_to(topic, None, b"")
            self.assertEqual(caught.exception, expected)
        with self.assertRaises(NoMessage):
            ackbar_guest.send_to("idle", None, b"")

    def test_wrong_types_are_type_errors(self):
        with self.assertRaises(TypeError):
            ackbar_guest.log("info", "x")  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            ackbar_guest.interrupt(WitDecision.ACK)  # type: ignore[arg-type]
        self.assertEqual(self.calls, [])


if __name__ == "__main__":
    unittest.main()


class GeneratedBindingsTest(unittest.TestCase):
    """The same boundary against the bindings componentize-py really generates from the
    packaged WIT (their functions are patched: natively they raise NotImplementedError)."""

    @classmethod
    def setUpClass(cls):
        try:
            componentize_py = build.find_componentize_py()
        except FileNotFoundError:
            raise unittest.SkipTest("componentize-py not found (set COMPONENTIZE_PY)") from None
        cls.dir = tempfile.TemporaryDirectory()
        subprocess.run(
            [componentize_py, "--quiet", "-d", str(ackbar_guest.wit_path()), "-w", "handler",
             "bindings", cls.dir.name],
            check=True,
        )

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def setUp(self):
        generated = ("componentize_py_types", "wit_world", "ackbar_guest._wasm")
        saved = dict(sys.modules)

        def restore():
            for name in list(sys.modules):
                if name.startswith(generated) and name not in saved:
                    del sys.modules[name]
            sys.modules.update(saved)

        self.addCleanup(restore)
        for name in list(sys.modules):
            if name.startswith(generated):
                del sys.modules[name]
        sys.path.insert(0, self.dir.name)
        self.addCleanup(sys.path.remove, self.dir.name)
        self.wasm = importlib.import_module("ackbar_guest._wasm")
        backend = mock.patch.object(ackbar_guest, "_backend", self.wasm)
        backend.start()
        self.addCleanup(backend.stop)

    def test_a_call_through_the_generated_types(self):
        from componentize_py_types import Err as GeneratedErr
        from wit_world.imports import acker, log, producer
        from wit_world.imports import types as wit_types

        msg = wit_types.Message("t", 0, 1, None, None, b"x", [wit_types.Header("h", b"v")], 1)
        self.assertIn(sys.modules["wit_world"].WitWorld,
                      ackbar_guest.export(lambda m: None).__mro__)

        def refuse(record):
            raise GeneratedErr(producer.SendError_TopicNotAllowed("nope"))

        with mock.patch.object(acker, "nack") as nack, \
                mock.patch.object(log, "log") as host_log, \
                mock.patch.object(producer, "send", side_effect=refuse) as send:
            def handle(m):
                self.assertEqual(m.headers, [Header("h", b"v")])
                ackbar_guest.nack()
                ackbar_guest.log(Level.INFO, "hi")
                with self.assertRaises(TopicNotAllowed):
                    ackbar_guest.send_to("out", b"k", b"v")
                raise Retry("later")

            with self.assertRaises(GeneratedErr) as caught:
                ackbar_guest.export(handle)().handle(msg)
        self.assertEqual(caught.exception.value, wit_types.HandlerError_Retry("later"))
        nack.assert_called_once_with()
        host_log.assert_called_once_with(log.Level.INFO, "hi")
        self.assertEqual(send.call_args.args[0],
                         producer.OutputRecord("out", b"k", b"v", [], None))
        self.assertIs(ackbar_guest.export(lambda m: Decision.REJECT)().handle(msg),
                      wit_types.Decision.REJECT)
