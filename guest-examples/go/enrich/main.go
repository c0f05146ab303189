// The `enrich` handler produces: each valid order is forwarded, keyed by its id and with an
// added "size" field, to <topic>.enriched, and left to the ack policy; the output is published
// only if the attempt settles the message as handled. A payload that is not a valid order is
// rejected, and nothing is forwarded.
package main

import (
	"fmt"

	"ackbar.example/handlers/internal/order"
	ackbar "github.com/ackbar-io/ackbar/sdk/go"
)

func init() { ackbar.Handle(handle) }

func handle(msg ackbar.Message) ackbar.Result {
	id, enriched, err := order.Enrich(msg.Payload)
	if err != nil {
		ackbar.Log(ackbar.LevelWarn, "rejecting malformed order: "+err.Error())
		return ackbar.Settle(ackbar.DecisionReject)
	}
	if err := ackbar.SendTo(msg.Topic+".enriched", []byte(id), enriched); err != nil {
		// The pipeline does not declare the topic in `outputs`: no redelivery can fix that.
		return ackbar.Fatal(fmt.Sprintf("order %s: cannot forward it: %v", id, err))
	}
	return ackbar.Ok()
}

// A component has no main; the host calls the registered handler.
func main() {}
