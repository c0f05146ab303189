"""The native harness records each kind of call a handler makes, and how the call ended."""

import unittest

from ackbar_guest import (
    Decision,
    Fatal,
    Header,
    InvalidRecord,
    Level,
    Message,
    OutputRecord,
    Retry,
    TopicNotAllowed,
    ack,
    export,
    interrupt,
    log,
    nack,
    reject,
    send,
    send_to,
)
from ackbar_guest.testing import Failed, Interrupted, Returned, Run, Trapped, message, run


class MessageTest(unittest.TestCase):
    def test_defaults(self):
        self.assertEqual(
            message(b"hi"),
            Message(topic="test", partition=0, offset=0, timestamp=None, key=None,
                    payload=b"hi", headers=[], attempt=1),
        )
        self.assertEqual(message().payload, b"")

    def test_overrides_and_text(self):
        msg = message("héllo", topic="orders", partition=2, offset=7, timestamp=5, key="k",
                      headers=[("a", "1"), Header("b", None)], attempt=3)
        self.assertEqual(msg.payload, "héllo".encode())
        self.assertEqual(msg.text, "héllo")
        self.assertEqual((msg.topic, msg.partition, msg.offset, msg.timestamp, msg.attempt),
                         ("orders", 2, 7, 5, 3))
        self.assertEqual(msg.key, b"k")
        self.assertEqual(msg.headers, [Header("a", b"1"), Header("b", None)])
        self.assertIsNone(message(None).payload)
        self.assertEqual(message(None).text, "")
        self.assertEqual(message(b"\xff").text, "\ufffd")

    def test_unknown_override_is_an_error(self):
        with self.assertRaises(TypeError):
            message(b"", color="red")  # type: ignore[call-arg]


class RecordingTest(unittest.TestCase):
    def test_acker_calls_in_order_and_the_first_settles(self):
        def handle(msg):
            nack()
            ack()
            reject()

        done = run(handle, message())
        self.assertEqual(done.decisions, [Decision.NACK, Decision.ACK, Decision.REJECT])
        self.assertEqual(done.end, Returned(None))
        self.assertIs(done.settled(), Decision.NACK)

    def test_logs(self):
        def handle(msg):
            log(Level.INFO, f"got {msg.text}")
            log(Level.WARN, "careful")

        done = run(handle, "hello")
        self.assertEqual(done.logs, [(Level.INFO, "got hello"), (Level.WARN, "careful")])
        self.assertTrue(done.logged("got hel"))
        self.assertFalse(done.logged("nothing"))

    def test_sends(self):
        def handle(msg):
            send(OutputRecord("out", key=b"k", payload=b"1", headers=[Header("h", b"v")],
                              partition=3))
            send_to("out", "k2", "2")
            send_to("other", None, b"3")
            send(OutputRecord("out"))  # a tombstone

        done = run(handle, message())
        self.assertEqual(done.sent_to("out"), [b"1", b"2"])
        self.assertEqual(done.sent_to("other"), [b"3"])
        self.assertEqual(done.sent[1], OutputRecord("out", key=b"k2", payload=b"2"))
        self.assertEqual(done.sent[0].headers, [Header("h", b"v")])
        self.assertEqual(len(done.sent), 4)

    def test_send_refusals_are_errors_the_handler_can_catch(self):
        errors = []

        def handle(msg):
            for record in (OutputRecord(""), OutputRecord("out", partition=-1),
                           OutputRecord("elsewhere", payload=b"x"), OutputRecord("audit.x")):
                try:
                    send(record)
                except (InvalidRecord, TopicNotAllowed) as err:
                    errors.append(type(err))

        done = run(handle, message(), outputs=["out", "audit.*"])
        self.assertEqual(errors, [InvalidRecord, InvalidRecord, TopicNotAllowed])
        self.assertEqual([r.topic for r in done.sent], ["audit.x"])

    def test_wrong_types_are_caught_natively(self):
        for call in (lambda: log("info", "x"), lambda: interrupt("ack"),
                     lambda: send(("out", b"x"))):
            done = run(lambda msg: call(), message())
            self.assertIsInstance(done.end, Trapped)
            self.assertIn("TypeError", done.end.message)

    def test_calls_outside_run_say_so(self):
        for call in (ack, nack, reject, lambda: log(Level.INFO, "x"),
                     lambda: send_to("t", None, b""), lambda: interrupt(Decision.ACK)):
            with self.assertRaisesRegex(RuntimeError, "testing.run"):
                call()


def deep(decision):
    try:
        interrupt(decision)
    except Exception:  # an interrupt is not an Exception: nothing here runs
        log(Level.ERROR, "caught")
    log(Level.ERROR, "after interrupt")


class EndTest(unittest.TestCase):
    def test_interrupt_ends_the_call_from_any_depth(self):
        def handle(msg):
            log(Level.INFO, "before")
            deep(Decision.NACK)
            return Decision.ACK

        done = run(handle, message())
        self.assertEqual(done.end, Interrupted(Decision.NACK))
        self.assertEqual(done.logs, [(Level.INFO, "before")])
        self.assertIs(done.settled(), Decision.NACK)

    def test_an_earlier_acker_call_wins_over_an_interrupt(self):
        def handle(msg):
            ack()
            interrupt(Decision.REJECT)

        self.assertIs(run(handle, message()).settled(), Decision.ACK)

    def test_an_interrupt_swallowed_by_the_handler_still_ends_it(self):
        def handle(msg):
            try:
                interrupt(Decision.REJECT)
            except BaseException:
                pass
            return Decision.ACK

        self.assertEqual(run(handle, message()).end, Interrupted(Decision.REJECT))

    def test_returned_decisions(self):
        done = run(lambda msg: Decision.REJECT, message())
        self.assertEqual(done.end, Returned(Decision.REJECT))
        self.assertIs(done.settled(), Decision.REJECT)
        self.assertIsNone(run(lambda msg: None, message()).settled())

    def test_retry_and_fatal_are_failures(self):
        def handle(msg):
            if msg.attempt < 2:
                raise Retry(f"attempt {msg.attempt}")
            raise Fatal("broken")

        first = run(handle, message(attempt=1))
        self.assertEqual(first.end, Failed(Retry("attempt 1")))
        self.assertNotEqual(first.end, Failed(Fatal("attempt 1")))
        self.assertIsNone(first.settled())
        self.assertEqual(run(handle, message(attempt=2)).end, Failed(Fatal("broken")))

    def test_subclasses_of_retry_are_retries(self):
        class WarehouseOffline(Retry):
            pass

        done = run(lambda msg: (_ for _ in ()).throw(WarehouseOffline("down")), message())
        self.assertIsInstance(done.end, Failed)
        self.assertIsInstance(done.end.error, Retry)

    def test_other_exceptions_trap(self):
        def handle(msg):
            raise RuntimeError("cannot price item 'poison'")

        done = run(handle, message())
        self.assertEqual(done.end, Trapped("RuntimeError: cannot price item 'poison'",
                                           RuntimeError()))
        self.assertIsInstance(done.end.error, RuntimeError)
        self.assertIsNone(done.settled())

    def test_a_wrong_return_value_traps_as_in_a_component(self):
        done = run(lambda msg: "ack", message())
        self.assertIsInstance(done.end, Trapped)
        self.assertIn("Decision or None", done.end.message)


class Counter:
    def __init__(self):
        self.seen = 0

    def handle(self, msg: Message) -> Decision | None:
        self.seen += 1
        log(Level.INFO, f"seen {self.seen}")
        return None


class HandlerFormsTest(unittest.TestCase):
    def test_a_class_is_instantiated_for_each_run(self):
        self.assertTrue(run(Counter, message()).logged("seen 1"))
        self.assertTrue(run(Counter, message()).logged("seen 1"))

    def test_an_instance_keeps_its_state(self):
        counter = Counter()
        run(counter, message())
        self.assertTrue(run(counter, message()).logged("seen 2"))

    def test_the_exported_class(self):
        WitWorld = export(Counter)
        self.assertTrue(run(WitWorld, message()).logged("seen 1"))
        self.assertTrue(run(export(lambda msg: Decision.ACK), message()).settled() is Decision.ACK)

    def test_export_rejects_what_is_not_a_handler(self):
        with self.assertRaises(TypeError):
            export(42)  # type: ignore[arg-type]

    def test_run_returns_a_run(self):
        self.assertIsInstance(run(Counter, b"x"), Run)


if __name__ == "__main__":
    unittest.main()
