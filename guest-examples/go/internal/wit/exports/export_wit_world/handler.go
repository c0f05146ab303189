// Package export_wit_world is where wit-bindgen's generated glue (../wit_exports) delivers the
// world's exported `handle` call. Both example components share one set of generated bindings,
// so the function that handles the call is registered by each component's main package.
package export_wit_world

import (
	. "ackbar.example/handlers/internal/wit/imports/wit_world"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Result is what `handle` returns: result<option<decision>, handler-error>.
type Result = witTypes.Result[witTypes.Option[Decision], HandlerError]

var handler func(Message) Result

// Register sets the function that handles every message. Call it from an init function.
func Register(h func(Message) Result) {
	handler = h
}

// Handle is called by the generated glue for each message.
func Handle(msg Message) Result {
	return handler(msg)
}
