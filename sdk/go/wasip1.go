//go:build wasip1

// In a component every call goes to the host through the generated bindings (internal/wit).

package ackbar

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	witTypes "github.com/ackbar-io/ackbar/sdk/go/internal/gopkg/wit/types"
	"github.com/ackbar-io/ackbar/sdk/go/internal/wit/exports/export_wit_world"
	_ "github.com/ackbar-io/ackbar/sdk/go/internal/wit/exports/wit_exports" // exports `handle`, `handle-packed-batch`
	"github.com/ackbar-io/ackbar/sdk/go/internal/wit/imports/ackbar_plugin_acker"
	"github.com/ackbar-io/ackbar/sdk/go/internal/wit/imports/ackbar_plugin_batch"
	"github.com/ackbar-io/ackbar/sdk/go/internal/wit/imports/ackbar_plugin_log"
	"github.com/ackbar-io/ackbar/sdk/go/internal/wit/imports/ackbar_plugin_producer"
	"github.com/ackbar-io/ackbar/sdk/go/internal/wit/imports/ackbar_plugin_types"
)

// The garbage collector must not run on its own: the host copies each message in through
// `cabi_realloc`, and a collection started by that allocation calls WASI imports, which the
// component model forbids during a realloc (the call traps with "cannot leave component
// instance"). So automatic collection is off and dispatch collects between messages instead,
// once roughly gcEveryBytes of payload has been handled since the last collection.
const gcEveryBytes = 4 << 20

var sinceGC int

func init() {
	debug.SetGCPercent(-1)
	export_wit_world.Handler = dispatch
	export_wit_world.PackedBatchHandler = dispatchPacked
}

// dispatchPacked handles the messages of a `handle-packed-batch` call in order, each decoded
// from the batch's buffer when it is reached, reporting each result through batch.finish as soon
// as it has it; the host's answer says whether to go on. One call for many messages saves
// entering the component and Go's runtime once per message, and one buffer saves an allocation
// per field.
func dispatchPacked(topic string, partition int32, count uint32, records []uint8) {
	batch := packedBatch{topic: topic, partition: partition, left: count, rest: records}
	for {
		msg, ok := batch.next()
		if !ok || !ackbar_plugin_batch.Finish(handleOne(msg)) {
			return
		}
	}
}

func dispatch(m ackbar_plugin_types.Message) export_wit_world.Result {
	msg := Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       bytesFrom(m.Key),
		Payload:   bytesFrom(m.Payload),
		Attempt:   m.Attempt,
	}
	if m.Timestamp.IsSome() {
		msg.Timestamp = time.UnixMilli(m.Timestamp.Some()).UTC()
	}
	if len(m.Headers) > 0 {
		msg.Headers = make([]Header, len(m.Headers))
		for i, h := range m.Headers {
			msg.Headers[i] = Header{Key: h.Key, Value: bytesFrom(h.Value)}
		}
	}
	return handleOne(msg)
}

// handleOne runs the registered handler on msg, collecting garbage between messages.
func handleOne(msg Message) export_wit_world.Result {
	if registered == nil {
		panic("ackbar: no handler: call ackbar.Handle from an init function")
	}
	sinceGC += len(msg.Payload) + len(msg.Key) + 4096 // + what handling allocates
	result := lowerResult(registered(msg))
	if sinceGC >= gcEveryBytes {
		sinceGC = 0
		runtime.GC()
	}
	return result
}

func lowerResult(r Result) export_wit_world.Result {
	type decision = witTypes.Option[ackbar_plugin_types.Decision]
	if e, failed := r.Failure(); failed {
		var err ackbar_plugin_types.HandlerError
		if e.Fatal {
			err = ackbar_plugin_types.MakeHandlerErrorFatal(validText(e.Message))
		} else {
			err = ackbar_plugin_types.MakeHandlerErrorRetry(validText(e.Message))
		}
		return witTypes.Err[decision](err)
	}
	if d, ok := r.Decision(); ok {
		return witTypes.Ok[decision, ackbar_plugin_types.HandlerError](witTypes.Some(lowerDecision(d)))
	}
	return witTypes.Ok[decision, ackbar_plugin_types.HandlerError](witTypes.None[ackbar_plugin_types.Decision]())
}

func lowerDecision(d Decision) ackbar_plugin_types.Decision {
	switch d {
	case DecisionAck:
		return ackbar_plugin_types.Decision_Ack
	case DecisionNack:
		return ackbar_plugin_types.Decision_Nack
	}
	return ackbar_plugin_types.Decision_Reject
}

func hostSettle(d Decision) {
	switch d {
	case DecisionAck:
		ackbar_plugin_acker.Ack()
	case DecisionNack:
		ackbar_plugin_acker.Nack()
	case DecisionReject:
		ackbar_plugin_acker.Reject()
	default:
		d.check()
	}
}

func hostInterrupt(d Decision) {
	ackbar_plugin_acker.Interrupt(lowerDecision(d))
}

var levels = [...]ackbar_plugin_log.Level{
	LevelTrace: ackbar_plugin_log.Level_Trace,
	LevelDebug: ackbar_plugin_log.Level_Debug,
	LevelInfo:  ackbar_plugin_log.Level_Info,
	LevelWarn:  ackbar_plugin_log.Level_Warn,
	LevelError: ackbar_plugin_log.Level_Error,
}

func hostLog(level Level, text string) {
	ackbar_plugin_log.Log(levels[level], validText(text))
}

func hostSend(record OutputRecord) *SendError {
	out := ackbar_plugin_producer.OutputRecord{
		Topic:     validText(record.Topic),
		Key:       bytesTo(record.Key),
		Payload:   bytesTo(record.Payload),
		Headers:   make([]ackbar_plugin_types.Header, len(record.Headers)),
		Partition: witTypes.None[int32](),
	}
	for i, h := range record.Headers {
		out.Headers[i] = ackbar_plugin_types.Header{Key: validText(h.Key), Value: bytesTo(h.Value)}
	}
	if record.Partition != nil {
		out.Partition = witTypes.Some(*record.Partition)
	}
	sent := ackbar_plugin_producer.Send(out)
	if !sent.IsErr() {
		return nil
	}
	switch e := sent.Err(); e.Tag() {
	case ackbar_plugin_producer.SendError_TopicNotAllowed:
		return &SendError{Reason: ErrTopicNotAllowed, Detail: e.TopicNotAllowed()}
	case ackbar_plugin_producer.SendError_LimitExceeded:
		return &SendError{Reason: ErrLimitExceeded, Detail: e.LimitExceeded()}
	case ackbar_plugin_producer.SendError_Invalid:
		return &SendError{Reason: ErrInvalid, Detail: e.Invalid()}
	}
	return &SendError{Reason: ErrNoMessage}
}

// bytesFrom keeps an empty value apart from none: the bindings may lift an empty list as nil.
func bytesFrom(o witTypes.Option[[]uint8]) []byte {
	if o.IsNone() {
		return nil
	}
	if b := o.Some(); b != nil {
		return b
	}
	return []byte{}
}

func bytesTo(b []byte) witTypes.Option[[]uint8] {
	if b == nil {
		return witTypes.None[[]uint8]()
	}
	return witTypes.Some(b)
}

// validText makes text a valid WIT string: the host traps on invalid UTF-8.
func validText(text string) string {
	if utf8.ValidString(text) {
		return text
	}
	return strings.ToValidUTF8(text, "\uFFFD")
}
