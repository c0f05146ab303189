// The `manual` handler settles every message itself (made for the MANUAL ack policy):
//   - a payload that is not an order is rejected with acker.Reject();
//   - an order for the item "poison" hits a bug and panics: a trap for the host;
//   - two calls deep, checkStock ends the call at once with acker.Interrupt: an order already
//     processed ("duplicate") is acked, one for a busy warehouse is nacked until attempt 2;
//   - an order whose warehouse is offline is nacked until its third delivery;
//   - any other order is logged and acked.
package main

import (
	"ackbar.example/handlers/internal/order"
	"ackbar.example/handlers/internal/wit/exports/export_wit_world"
	_ "ackbar.example/handlers/internal/wit/exports/wit_exports" // the exported `handle`
	"ackbar.example/handlers/internal/wit/imports/ackbar_plugin_acker"
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
		ackbar_plugin_acker.Reject()
		return done()
	}
	reserve(o, msg.Attempt)
	if o.WarehouseOffline(msg.Attempt) {
		ackbar_plugin_acker.Nack()
		return done()
	}
	ackbar_plugin_log.Log(ackbar_plugin_log.Level_Info, o.Summary())
	ackbar_plugin_acker.Ack()
	return done()
}

// reserve is the helper between handle and checkStock.
func reserve(o order.Order, attempt uint32) {
	checkStock(o, attempt)
}

// checkStock settles the message from two calls deep. acker.Interrupt never returns: the host
// ends the `handle` call there and the message counts as settled with that decision.
func checkStock(o order.Order, attempt uint32) {
	if o.Item == "duplicate" {
		ackbar_plugin_acker.Interrupt(ackbar_plugin_types.Decision_Ack) // already processed: skip it
	}
	if o.Warehouse == "busy" && attempt < 2 {
		ackbar_plugin_acker.Interrupt(ackbar_plugin_types.Decision_Nack) // try again later
	}
}

// done leaves nothing for the policy to decide: the message is settled already.
func done() Result {
	return witTypes.Ok[witTypes.Option[Decision], ackbar_plugin_types.HandlerError](witTypes.None[Decision]())
}

// A component has no main; the host calls the exported `handle`.
func main() {}
