//go:build wasip1

// Package export_wit_world is where the generated glue (../wit_exports) delivers the world's
// exported `handle` and `handle-packed-batch` calls. Package ackbar sets Handler and
// PackedBatchHandler in its init, since the glue cannot import it (ackbar imports the glue).
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

// PackedBatchHandler handles the count messages of partition of topic packed in records (one
// `handle-packed-batch` call).
var PackedBatchHandler func(topic string, partition int32, count uint32, records []uint8)

// HandlePackedBatch is called by the generated glue for each `handle-packed-batch` call.
func HandlePackedBatch(topic string, partition int32, count uint32, records []uint8) {
	PackedBatchHandler(topic, partition, count, records)
}
