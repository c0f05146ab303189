// Package order is the business logic shared by the example handlers: it reads the JSON order
// event and applies the checks both handlers make. It knows nothing about WebAssembly, so it is
// tested natively with `go test`.
package order

import (
	"encoding/json"
	"fmt"
)

// Order is the event the handlers understand:
// {"id": "o1", "item": "book", "quantity": 2, "warehouse": "north"}.
type Order struct {
	ID       string
	Item     string
	Quantity uint32
	// Warehouse is "" when the event has none.
	Warehouse string
}

// Parse reads an order and checks it, in this order:
//   - a payload that is not an order (not JSON, a missing field, a wrong type) is malformed:
//     the error says why;
//   - an order for the item "poison" hits a bug: Parse panics (a trap for the host);
//   - an order for quantity 0 is malformed too.
func Parse(payload []byte) (Order, error) {
	o, err := decode(payload)
	if err != nil {
		return Order{}, err
	}
	if o.Item == "poison" {
		panic(fmt.Sprintf("order %s: cannot price item 'poison'", o.ID))
	}
	if o.Quantity == 0 {
		return Order{}, fmt.Errorf("order %s: quantity must be positive", o.ID)
	}
	return o, nil
}

// Summary is the line the handlers log for an order they accept.
func (o Order) Summary() string {
	return fmt.Sprintf("order %s: %d x %s", o.ID, o.Quantity, o.Item)
}

// WarehouseOffline says whether the order's warehouse is still down on this delivery: the
// example pretends the "offline" warehouse comes back on the third attempt.
func (o Order) WarehouseOffline(attempt uint32) bool {
	return o.Warehouse == "offline" && attempt < 3
}

// BulkFrom is the quantity from which the enrich handler calls an order "bulk".
const BulkFrom = 10

// Enrich is the enrich handler's transformation: the order's id and its JSON object with "size"
// added ("bulk" from BulkFrom items, else "standard"), or why the payload is not a valid order
// (as Parse decides, except that "poison" is an item like any other here).
func Enrich(payload []byte) (string, []byte, error) {
	o, err := decode(payload)
	if err != nil {
		return "", nil, err
	}
	if o.Quantity == 0 {
		return "", nil, fmt.Errorf("order %s: quantity must be positive", o.ID)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return "", nil, err
	}
	size := "standard"
	if o.Quantity >= BulkFrom {
		size = "bulk"
	}
	fields["size"], _ = json.Marshal(size)
	enriched, err := json.Marshal(fields)
	return o.ID, enriched, err
}

// decode is strict where encoding/json is lenient: field names are case-sensitive, and a
// required field that is null counts as missing.
func decode(payload []byte) (Order, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return Order{}, fmt.Errorf("not a JSON object: %w", err)
	}
	var o Order
	if err := field(fields, "id", &o.ID, "a string", true); err != nil {
		return Order{}, err
	}
	if err := field(fields, "item", &o.Item, "a string", true); err != nil {
		return Order{}, err
	}
	if err := field(fields, "quantity", &o.Quantity, "a non-negative integer", true); err != nil {
		return Order{}, err
	}
	if err := field(fields, "warehouse", &o.Warehouse, "a string", false); err != nil {
		return Order{}, err
	}
	return o, nil
}

func field(fields map[string]json.RawMessage, name string, into any, want string, required bool) error {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		if required {
			return fmt.Errorf("missing field %q", name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("field %q: %s is not %s", name, raw, want)
	}
	return nil
}
