// {{name}}: an Ackbar message handler. `make build` turns it into target/{{name}}.wasm.
package main

import (
	"bytes"
	"fmt"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
)

func init() { ackbar.Handle(handle) }

// handle is called once per message. It returns ackbar.Ok() to leave the decision to the
// pipeline's ack policy, ackbar.Settle(d) to settle the message itself, or a failure:
// ackbar.Retry (NACK_ON_ERROR redelivers) or ackbar.Fatal (redelivery cannot help).
func handle(msg ackbar.Message) ackbar.Result {
	if len(msg.Payload) == 0 {
		ackbar.Log(ackbar.LevelWarn, "empty message")
		return ackbar.Settle(ackbar.DecisionReject)
	}
	if bytes.HasPrefix(msg.Payload, []byte("retry")) && msg.Attempt < 3 {
		return ackbar.Retry(fmt.Sprintf("asked to retry (attempt %d)", msg.Attempt))
	}
	ackbar.Logf(ackbar.LevelInfo, "handled %s/%d@%d: %s", msg.Topic, msg.Partition, msg.Offset, msg.Payload)
	return ackbar.Ok()
}

// A component has no main; the host calls the registered handler.
func main() {}
