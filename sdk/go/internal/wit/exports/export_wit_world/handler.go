//go:build wasip1

// Package export_wit_world is where the generated glue (../wit_exports) delivers the world's
// exported `handle` and `handle-batch` calls. Package ackbar sets Handler and BatchHandler in its init, since the glue cannot import
// it (ackbar imports the glue).
package export_wit_world

import (
	witTypes "github.com/ackbar-io/ackbar/sdk/go/internal/gopkg/wit/types"
	. "github.com/ackbar-io/ackbar/sdk/go/internal/wit/imports/wit_world"
)

// Result is what `handle` returns: result<option<decision>, handler-error>.
type Result = witTypes.Result[witTypes.Option[Decision], HandlerError]

// Handler handles every message.
var Handler func(Message) Result

// Handle is called by the generated glue for each message.
func Handle(msg Message) Result {
	return Handler(msg)
}

// BatchHandler handles the messages of one `handle-batch` call.
var BatchHandler func([]Message)

// HandleBatch is called by the generated glue for each `handle-batch` call.
func HandleBatch(msgs []Message) {
	BatchHandler(msgs)
}
