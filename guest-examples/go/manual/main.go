// The `manual` handler settles every message itself (made for the MANUAL ack policy):
//   - a payload that is not an order is rejected with ackbar.Reject();
//   - an order for the item "poison" hits a bug and panics: a trap for the host;
//   - two calls deep, checkStock ends the call at once with ackbar.Interrupt: an order already
//     processed ("duplicate") is acked, one for a busy warehouse is nacked until attempt 2;
//   - an order whose warehouse is offline is nacked until its third delivery;
//   - any other order is logged and acked.
package main

import (
	"ackbar.example/handlers/internal/order"
	ackbar "github.com/ackbar-io/ackbar/sdk/go"
)

func init() { ackbar.Handle(handle) }

func handle(msg ackbar.Message) ackbar.Result {
	o, err := order.Parse(msg.Payload)
	if err != nil {
		ackbar.Log(ackbar.LevelWarn, "rejecting malformed order: "+err.Error())
		ackbar.Reject()
		return ackbar.Ok()
	}
	reserve(o, msg.Attempt)
	if o.WarehouseOffline(msg.Attempt) {
		ackbar.Nack()
		return ackbar.Ok()
	}
	ackbar.Log(ackbar.LevelInfo, o.Summary())
	ackbar.Ack()
	return ackbar.Ok()
}

// reserve is the helper between handle and checkStock.
func reserve(o order.Order, attempt uint32) {
	checkStock(o, attempt)
}

// checkStock settles the message from two calls deep. ackbar.Interrupt never returns: the host
// ends the call there and the message counts as settled with that decision.
func checkStock(o order.Order, attempt uint32) {
	if o.Item == "duplicate" {
		ackbar.Interrupt(ackbar.DecisionAck) // already processed: skip it
	}
	if o.Warehouse == "busy" && attempt < 2 {
		ackbar.Interrupt(ackbar.DecisionNack) // try again later
	}
}

// A component has no main; the host calls the registered handler.
func main() {}
