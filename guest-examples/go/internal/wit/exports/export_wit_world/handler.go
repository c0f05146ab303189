// Package export_wit_world is where wit-bindgen's generated glue (../wit_exports) delivers the
// world's exported `handle` call. Both example components share one set of generated bindings,
// so the function that handles the call is registered by each component's main package.
package export_wit_world

import (
	"runtime"
	"runtime/debug"

	. "ackbar.example/handlers/internal/wit/imports/wit_world"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Result is what `handle` returns: result<option<decision>, handler-error>.
type Result = witTypes.Result[witTypes.Option[Decision], HandlerError]

var handler func(Message) Result

// The garbage collector must not run on its own: the host copies each message in through
// `cabi_realloc`, and a collection started by that allocation calls WASI imports, which the
// component model forbids during a realloc (the call traps with "cannot leave component
// instance"). So automatic collection is off and Handle collects between messages instead,
// once roughly gcEveryBytes of payload has been handled since the last collection.
const gcEveryBytes = 4 << 20

var sinceGC int

func init() {
	debug.SetGCPercent(-1)
}

// Register sets the function that handles every message. Call it from an init function.
func Register(h func(Message) Result) {
	handler = h
}

// Handle is called by the generated glue for each message.
func Handle(msg Message) Result {
	sinceGC += len(msg.Payload.SomeOr(nil)) + 4096 // + what parsing and logging allocate
	result := handler(msg)
	if sinceGC >= gcEveryBytes {
		sinceGC = 0
		runtime.GC()
	}
	return result
}
