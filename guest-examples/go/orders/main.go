// The `orders` handler leaves the decision to the ack policy:
//   - a valid order is logged and returns ok(none);
//   - a payload that is not an order is rejected explicitly, ok(some(reject)): redelivering it
//     can never help;
//   - an order whose warehouse is offline fails with a retry error until its third delivery;
//   - an order for the item "poison" hits a bug and panics: a trap for the host.
package main

import (
	"fmt"

	"ackbar.example/handlers/internal/order"
	ackbar "github.com/ackbar-io/ackbar/sdk/go"
)

func init() { ackbar.Handle(handle) }

func handle(msg ackbar.Message) ackbar.Result {
	o, err := order.Parse(msg.Payload)
	if err != nil {
		ackbar.Log(ackbar.LevelWarn, "rejecting malformed order: "+err.Error())
		return ackbar.Settle(ackbar.DecisionReject)
	}
	if o.WarehouseOffline(msg.Attempt) {
		return ackbar.Retry(fmt.Sprintf("warehouse offline (attempt %d)", msg.Attempt))
	}
	ackbar.Log(ackbar.LevelInfo, o.Summary())
	return ackbar.Ok()
}

// A component has no main; the host calls the registered handler.
func main() {}
