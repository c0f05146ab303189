"""The three handlers, run natively by the ackbar_guest harness: no Wasm, no broker."""

import json
import unittest

from ackbar_guest import Decision, Fatal, Level, Retry
from ackbar_guest.testing import Failed, Interrupted, Returned, Trapped, message, run

import enrich
import manual
import orders

BOOK = b'{"id": "o1", "item": "book", "quantity": 2}'
ZERO = b'{"id": "o1", "item": "book", "quantity": 0}'
POISON = b'{"id": "o3", "item": "poison", "quantity": 1}'
OFFLINE = b'{"id": "o2", "item": "pen", "quantity": 1, "warehouse": "offline"}'
BUSY = b'{"id": "o4", "item": "pen", "quantity": 1, "warehouse": "busy"}'
DUPLICATE = b'{"id": "o5", "item": "duplicate", "quantity": 1}'
MALFORMED = (b"not json", ZERO, None)


def order(payload, attempt=1):
    return message(payload, topic="orders", offset=42, attempt=attempt)


class OrdersTest(unittest.TestCase):
    def test_valid_order_is_logged_and_left_to_the_policy(self):
        done = run(orders.WitWorld, order(BOOK))
        self.assertEqual(done.end, Returned(None))
        self.assertEqual(done.logs, [(Level.INFO, "order o1: 2 x book")])
        self.assertEqual(done.decisions, [])

    def test_malformed_is_rejected_with_a_warning(self):
        for payload in MALFORMED:
            with self.subTest(payload=payload):
                done = run(orders.WitWorld, order(payload))
                self.assertEqual(done.end, Returned(Decision.REJECT))
                self.assertEqual(done.logs[0][0], Level.WARN)
                self.assertTrue(done.logged("rejecting malformed order"))

    def test_poison_traps(self):
        done = run(orders.WitWorld, order(POISON))
        self.assertIsInstance(done.end, Trapped)
        self.assertIn("poison", done.end.message)

    def test_offline_warehouse_is_a_retry_error_until_attempt_3(self):
        for attempt in (1, 2):
            self.assertEqual(
                run(orders.WitWorld, order(OFFLINE, attempt)).end,
                Failed(Retry(f"warehouse offline (attempt {attempt})")),
            )
        self.assertEqual(run(orders.WitWorld, order(OFFLINE, 3)).end, Returned(None))


class ManualTest(unittest.TestCase):
    def decisions(self, payload, attempt=1):
        done = run(manual.WitWorld, order(payload, attempt))
        self.assertIsInstance(done.end, (Returned, Interrupted), done.end)
        return done

    def test_valid_order_is_logged_and_acked(self):
        done = self.decisions(BOOK)
        self.assertEqual(done.decisions, [Decision.ACK])
        self.assertEqual(done.logs, [(Level.INFO, "order o1: 2 x book")])

    def test_malformed_is_rejected(self):
        for payload in MALFORMED:
            with self.subTest(payload=payload):
                self.assertEqual(self.decisions(payload).decisions, [Decision.REJECT])

    def test_poison_traps(self):
        done = run(manual.WitWorld, order(POISON))
        self.assertIsInstance(done.end, Trapped)
        self.assertIn("poison", done.end.message)

    def test_duplicate_interrupts_with_ack(self):
        done = self.decisions(DUPLICATE)
        self.assertEqual((done.end, done.decisions), (Interrupted(Decision.ACK), []))

    def test_busy_warehouse_interrupts_with_nack_on_first_attempt(self):
        self.assertEqual(self.decisions(BUSY, 1).end, Interrupted(Decision.NACK))
        self.assertEqual(self.decisions(BUSY, 2).decisions, [Decision.ACK])

    def test_offline_warehouse_is_nacked_until_attempt_3(self):
        self.assertEqual(
            [self.decisions(OFFLINE, n).settled() for n in (1, 2, 3)],
            [Decision.NACK, Decision.NACK, Decision.ACK],
        )


class EnrichTest(unittest.TestCase):
    def test_a_valid_order_is_forwarded_with_its_size(self):
        done = run(enrich.WitWorld, order(b'{"id": "o1", "item": "book", "quantity": 12}'))
        self.assertEqual(done.end, Returned(None))
        [payload] = done.sent_to("orders.enriched")
        self.assertEqual(
            json.loads(payload), {"id": "o1", "item": "book", "quantity": 12, "size": "bulk"}
        )
        self.assertEqual(done.sent[0].key, b"o1")
        small = run(enrich.WitWorld, order(BOOK))
        self.assertIn(b'"size":"standard"', small.sent_to("orders.enriched")[0])

    def test_malformed_is_rejected_and_forwards_nothing(self):
        for payload in MALFORMED:
            with self.subTest(payload=payload):
                done = run(enrich.WitWorld, order(payload))
                self.assertEqual(done.end, Returned(Decision.REJECT))
                self.assertEqual(done.logs[0][0], Level.WARN)
                self.assertEqual(done.sent, [])

    def test_a_refused_send_is_a_fatal_error(self):
        done = run(enrich.WitWorld, order(BOOK), outputs=["elsewhere"])
        self.assertIsInstance(done.end, Failed)
        self.assertIsInstance(done.end.error, Fatal)
        self.assertIn("order o1: cannot forward it", done.end.error.message)
        self.assertIn("not among the pipeline's outputs", done.end.error.message)
        self.assertEqual(done.sent, [])


if __name__ == "__main__":
    unittest.main()
