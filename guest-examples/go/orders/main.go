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
	"ackbar.example/handlers/internal/wit/exports/export_wit_world"
	_ "ackbar.example/handlers/internal/wit/exports/wit_exports" // the exported `handle`
	"ackbar.example/handlers/internal/wit/imports/ackbar_plugin_log"
	"ackbar.example/handlers/internal/wit/imports/ackbar_plugin_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

type (
	Message  = ackbar_plugin_types.Message
	Decision = ackbar_plugin_types.Decision
	Result   = export_wit_world.Result
)

func init() {
	export_wit_world.Register(handle)
}

func handle(msg Message) Result {
	o, err := order.Parse(msg.Payload.SomeOr(nil))
	if err != nil {
		ackbar_plugin_log.Log(ackbar_plugin_log.Level_Warn, "rejecting malformed order: "+err.Error())
		return ok(witTypes.Some(ackbar_plugin_types.Decision_Reject))
	}
	if o.WarehouseOffline(msg.Attempt) {
		why := fmt.Sprintf("warehouse offline (attempt %d)", msg.Attempt)
		return witTypes.Err[witTypes.Option[Decision]](ackbar_plugin_types.MakeHandlerErrorRetry(why))
	}
	ackbar_plugin_log.Log(ackbar_plugin_log.Level_Info, o.Summary())
	return ok(witTypes.None[Decision]())
}

func ok(d witTypes.Option[Decision]) Result {
	return witTypes.Ok[witTypes.Option[Decision], ackbar_plugin_types.HandlerError](d)
}

// A component has no main; the host calls the exported `handle`.
func main() {}
