import unittest

from order_event import MalformedOrder, Order, parse_order, read_order


class ParseOrderTest(unittest.TestCase):
    def test_valid_order(self):
        order = parse_order(b'{"id": "o1", "item": "book", "quantity": 2, "warehouse": "north"}')
        self.assertEqual(order, Order(id="o1", item="book", quantity=2, warehouse="north"))
        self.assertEqual(order.summary(), "order o1: 2 x book")

    def test_warehouse_is_optional(self):
        self.assertIsNone(parse_order(b'{"id": "o1", "item": "book", "quantity": 2}').warehouse)
        self.assertIsNone(
            parse_order(b'{"id": "o1", "item": "book", "quantity": 2, "warehouse": null}').warehouse
        )

    def test_unknown_fields_are_ignored(self):
        parse_order(b'{"id": "o1", "item": "book", "quantity": 2, "note": "gift"}')

    def test_brackets_in_strings_and_wide_json_are_fine(self):
        order = parse_order(b'{"id": "' + b"[{" * 300 + b'", "item": "b\\"[", "quantity": 1}')
        self.assertEqual(order.id, "[{" * 300)
        parse_order(b'{"id": "o1", "item": "book", "quantity": 1, "x": [' + b"[], " * 300 + b"[]]}")

    def test_malformed(self):
        for payload in [
            None,
            b"",
            b"not json",
            b"\xff\xfe\xfd",
            b"[1, 2]",
            b'"o1"',
            b'{"item": "book", "quantity": 2}',
            b'{"id": "o1", "quantity": 2}',
            b'{"id": "o1", "item": "book"}',
            b'{"id": 1, "item": "book", "quantity": 2}',
            b'{"id": "o1", "item": "book", "quantity": "2"}',
            b'{"id": "o1", "item": "book", "quantity": 2.5}',
            b'{"id": "o1", "item": "book", "quantity": true}',
            b'{"id": "o1", "item": "book", "quantity": -1}',
            b'{"id": "o1", "item": "book", "quantity": 2, "warehouse": 7}',
            b"[" * 100_000,
            b"{\"a\": " * 200 + b"1" + b"}" * 200,
        ]:
            with self.subTest(payload=payload[:40] if payload else payload):
                with self.assertRaises(MalformedOrder):
                    parse_order(payload)


class ReadOrderTest(unittest.TestCase):
    def test_poison_is_a_bug_even_with_quantity_zero(self):
        with self.assertRaisesRegex(RuntimeError, "poison"):
            read_order(b'{"id": "o3", "item": "poison", "quantity": 0}')

    def test_quantity_zero_is_malformed(self):
        with self.assertRaisesRegex(MalformedOrder, "quantity"):
            read_order(b'{"id": "o1", "item": "book", "quantity": 0}')

    def test_offline_warehouse_is_back_on_third_attempt(self):
        order = Order(id="o2", item="pen", quantity=1, warehouse="offline")
        self.assertEqual([order.warehouse_offline(n) for n in (1, 2, 3)], [True, True, False])

    def test_busy_warehouse_is_free_on_second_attempt(self):
        order = Order(id="o4", item="pen", quantity=1, warehouse="busy")
        self.assertEqual([order.warehouse_busy(n) for n in (1, 2)], [True, False])


if __name__ == "__main__":
    unittest.main()
