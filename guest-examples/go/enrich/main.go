// The `enrich` handler produces: each valid order is forwarded, keyed by its id and with an
// added "size" field, to <topic>.enriched, and left to the ack policy; the output is published
// only if the attempt settles the message as handled. A payload that is not a valid order is
// rejected, and nothing is forwarded.
package main

import (
	"fmt"

	"ackbar.example/handlers/internal/order"
	"ackbar.example/handlers/internal/wit/exports/export_wit_world"
	_ "ackbar.example/handlers/internal/wit/exports/wit_exports" // the exported `handle`
	"ackbar.example/handlers/internal/wit/imports/ackbar_plugin_log"
	"ackbar.example/handlers/internal/wit/imports/ackbar_plugin_producer"
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
	id, enriched, err := order.Enrich(msg.Payload.SomeOr(nil))
	if err != nil {
		ackbar_plugin_log.Log(ackbar_plugin_log.Level_Warn, "rejecting malformed order: "+err.Error())
		return ok(witTypes.Some(ackbar_plugin_types.Decision_Reject))
	}
	sent := ackbar_plugin_producer.Send(ackbar_plugin_producer.OutputRecord{
		Topic:     msg.Topic + ".enriched",
		Key:       witTypes.Some([]byte(id)),
		Payload:   witTypes.Some(enriched),
		Partition: witTypes.None[int32](),
	})
	if sent.IsErr() {
		// The pipeline does not declare the topic in `outputs`: no redelivery can fix that.
		why := fmt.Sprintf("order %s: cannot forward it: %s", id, describe(sent.Err()))
		return witTypes.Err[witTypes.Option[Decision]](ackbar_plugin_types.MakeHandlerErrorFatal(why))
	}
	return ok(witTypes.None[Decision]())
}

func describe(e ackbar_plugin_producer.SendError) string {
	switch e.Tag() {
	case ackbar_plugin_producer.SendError_TopicNotAllowed:
		return e.TopicNotAllowed()
	case ackbar_plugin_producer.SendError_LimitExceeded:
		return e.LimitExceeded()
	case ackbar_plugin_producer.SendError_Invalid:
		return e.Invalid()
	default:
		return "called outside a handle call"
	}
}

func ok(d witTypes.Option[Decision]) Result {
	return witTypes.Ok[witTypes.Option[Decision], ackbar_plugin_types.HandlerError](d)
}

// A component has no main; the host calls the exported `handle`.
func main() {}
