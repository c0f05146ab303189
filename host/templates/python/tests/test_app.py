"""The handler, run natively by the ackbar_guest harness: no Wasm, no broker."""

import unittest

from ackbar_guest import Decision, Retry
from ackbar_guest.testing import Failed, Returned, message, run

from app import Handler


class HandlerTest(unittest.TestCase):
    def test_an_empty_message_is_rejected(self):
        done = run(Handler, message(b""))
        self.assertIs(done.settled(), Decision.REJECT)
        self.assertTrue(done.logged("empty message"))

    def test_retry_fails_until_the_third_attempt(self):
        done = run(Handler, message(b"retry please"))
        self.assertEqual(done.end, Failed(Retry("asked to retry (attempt 1)")))
        self.assertEqual(run(Handler, message(b"retry please", attempt=3)).end, Returned(None))

    def test_anything_else_is_logged_and_left_to_the_policy(self):
        done = run(Handler, message(b"hello"))
        self.assertEqual(done.end, Returned(None))
        self.assertIsNone(done.settled())
        self.assertTrue(done.logged("handled test/0@0: hello"))


if __name__ == "__main__":
    unittest.main()
