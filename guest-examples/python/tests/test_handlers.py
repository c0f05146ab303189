"""Both handlers, run natively against the generated bindings with the host imports mocked.

Needs the bindings in ../target/bindings (`../build.sh --bindings-only`, done by test.sh).
"""

import unittest
from unittest import mock

from componentize_py_types import Err
from wit_world.imports.log import Level
from wit_world.imports.types import Decision, HandlerError_Retry, Message

import enrich
import manual
import orders


def message(payload: bytes | None, attempt: int = 1) -> Message:
    return Message(
        topic="orders", partition=0, offset=42, timestamp=None, key=None,
        payload=payload, headers=[], attempt=attempt,
    )


BOOK = b'{"id": "o1", "item": "book", "quantity": 2}'
ZERO = b'{"id": "o1", "item": "book", "quantity": 0}'
POISON = b'{"id": "o3", "item": "poison", "quantity": 1}'
OFFLINE = b'{"id": "o2", "item": "pen", "quantity": 1, "warehouse": "offline"}'
BUSY = b'{"id": "o4", "item": "pen", "quantity": 1, "warehouse": "busy"}'
DUPLICATE = b'{"id": "o5", "item": "duplicate", "quantity": 1}'


class Interrupted(Exception):
    """Stands in for the host ending the call inside `acker.interrupt`."""


class OrdersTest(unittest.TestCase):
    def handle(self, payload, attempt=1):
        with mock.patch.object(orders, "log") as log:
            result = orders.WitWorld().handle(message(payload, attempt))
        return result, log

    def test_valid_order_is_logged_and_left_to_the_policy(self):
        result, log = self.handle(BOOK)
        self.assertIsNone(result)
        log.assert_called_once_with(Level.INFO, "order o1: 2 x book")

    def test_malformed_is_rejected_with_a_warning(self):
        for payload in (b"not json", ZERO, None):
            with self.subTest(payload=payload):
                result, log = self.handle(payload)
                self.assertEqual(result, Decision.REJECT)
                self.assertEqual(log.call_args.args[0], Level.WARN)

    def test_poison_raises(self):
        with self.assertRaisesRegex(RuntimeError, "poison"):
            self.handle(POISON)

    def test_offline_warehouse_is_a_retry_error_until_attempt_3(self):
        for attempt in (1, 2):
            with self.assertRaises(Err) as caught:
                self.handle(OFFLINE, attempt)
            self.assertEqual(
                caught.exception.value, HandlerError_Retry(f"warehouse offline (attempt {attempt})")
            )
        self.assertEqual(self.handle(OFFLINE, 3)[0], None)


class ManualTest(unittest.TestCase):
    def handle(self, payload, attempt=1):
        with mock.patch.object(manual, "acker") as acker, mock.patch.object(manual, "log") as log:
            acker.interrupt.side_effect = Interrupted
            try:
                result = manual.WitWorld().handle(message(payload, attempt))
                self.assertIsNone(result)
            except Interrupted:
                pass
        calls = [c for c in acker.method_calls]
        return calls, log

    def test_valid_order_is_logged_and_acked(self):
        calls, log = self.handle(BOOK)
        self.assertEqual(calls, [mock.call.ack()])
        log.assert_called_once_with(Level.INFO, "order o1: 2 x book")

    def test_malformed_is_rejected(self):
        for payload in (b"not json", ZERO, None):
            with self.subTest(payload=payload):
                self.assertEqual(self.handle(payload)[0], [mock.call.reject()])

    def test_poison_raises(self):
        with self.assertRaisesRegex(RuntimeError, "poison"):
            self.handle(POISON)

    def test_duplicate_interrupts_with_ack(self):
        self.assertEqual(self.handle(DUPLICATE)[0], [mock.call.interrupt(Decision.ACK)])

    def test_busy_warehouse_interrupts_with_nack_on_first_attempt(self):
        self.assertEqual(self.handle(BUSY, 1)[0], [mock.call.interrupt(Decision.NACK)])
        self.assertEqual(self.handle(BUSY, 2)[0], [mock.call.ack()])

    def test_offline_warehouse_is_nacked_until_attempt_3(self):
        self.assertEqual(self.handle(OFFLINE, 1)[0], [mock.call.nack()])
        self.assertEqual(self.handle(OFFLINE, 2)[0], [mock.call.nack()])
        self.assertEqual(self.handle(OFFLINE, 3)[0], [mock.call.ack()])


if __name__ == "__main__":
    unittest.main()


class EnrichTest(unittest.TestCase):
    def handle(self, payload):
        with mock.patch.object(enrich, "log") as log, mock.patch.object(enrich, "send") as send:
            result = enrich.WitWorld().handle(message(payload))
        return result, log, send

    def test_a_valid_order_is_forwarded_with_its_size(self):
        result, _, send = self.handle(b'{"id": "o1", "item": "book", "quantity": 12}')
        self.assertIsNone(result)
        record = send.call_args.args[0]
        self.assertEqual(record.topic, "orders.enriched")
        self.assertEqual(record.key, b"o1")
        self.assertEqual(
            record.payload, b'{"id":"o1","item":"book","quantity":12,"size":"bulk"}'
        )
        _, _, small = self.handle(BOOK)
        self.assertIn(b'"size":"standard"', small.call_args.args[0].payload)

    def test_malformed_is_rejected_and_forwards_nothing(self):
        for payload in (b"not json", ZERO, None):
            with self.subTest(payload=payload):
                result, log, send = self.handle(payload)
                self.assertEqual(result, Decision.REJECT)
                self.assertEqual(log.call_args.args[0], Level.WARN)
                send.assert_not_called()

    def test_a_refused_send_is_a_fatal_error(self):
        from wit_world.imports.producer import SendError_TopicNotAllowed
        from wit_world.imports.types import HandlerError_Fatal

        with mock.patch.object(enrich, "send", side_effect=Err(SendError_TopicNotAllowed("no"))):
            with self.assertRaises(Err) as caught:
                enrich.WitWorld().handle(message(BOOK))
        self.assertIsInstance(caught.exception.value, HandlerError_Fatal)
