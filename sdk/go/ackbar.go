// Package ackbar writes Ackbar message handlers in Go and tests them natively.
//
// A handler is a function from a Message to a Result, registered from an init function:
//
//	func init() { ackbar.Handle(handle) }
//
//	func handle(msg ackbar.Message) ackbar.Result {
//		if len(msg.Payload) == 0 {
//			return ackbar.Settle(ackbar.DecisionReject)
//		}
//		ackbar.Log(ackbar.LevelInfo, "hello")
//		return ackbar.Ok() // the ack policy decides
//	}
//
//	func main() {} // a component has no main; the host calls the handler
//
// Built with GOOS=wasip1 (see build-component.sh), Ack, Nack, Reject, Interrupt, Log and Send are
// the host's imports. Built natively they are recorded by the ackbartest harness, which runs a
// handler on a message and returns everything it did.
package ackbar

import (
	"fmt"
	"time"
)

// Message is one Kafka record, as delivered to the handler.
type Message struct {
	// Topic is the topic the record was read from.
	Topic string
	// Partition is the record's partition of Topic.
	Partition int32
	// Offset is the record's offset in its partition.
	Offset int64
	// Timestamp is the record's create or log-append time (millisecond precision); the zero
	// Time when the broker has none.
	Timestamp time.Time
	// Key is nil for a record without a key.
	Key []byte
	// Payload is the record's value: nil for a record without one (a tombstone), empty but not
	// nil for an empty value.
	Payload []byte
	// Headers are the record's headers, in the order the producer gave them.
	Headers []Header
	// Attempt is 1 on first delivery, +1 each time the host redelivers the message after a nack.
	Attempt uint32
}

// Header is a Kafka record header. Kafka allows several headers with the same key.
type Header struct {
	Key string
	// Value is nil for a header without a value, which is not the same as an empty value.
	Value []byte
}

// Decision is how a message is settled.
type Decision uint8

const (
	// DecisionAck: done, commit this offset (and everything before it in the partition).
	DecisionAck Decision = iota
	// DecisionNack: not done, deliver the message again after a backoff, before anything after it.
	DecisionNack
	// DecisionReject: done but unprocessable, commit it (and dead-letter it where configured).
	DecisionReject
)

func (d Decision) String() string {
	switch d {
	case DecisionAck:
		return "ack"
	case DecisionNack:
		return "nack"
	case DecisionReject:
		return "reject"
	}
	return fmt.Sprintf("Decision(%d)", uint8(d))
}

func (d Decision) check() {
	if d > DecisionReject {
		panic(fmt.Sprintf("ackbar: invalid decision %d", uint8(d)))
	}
}

// Level is how severe a log line is. The host's log filter (ACKBAR_LOG, default info) decides
// which levels are written.
type Level uint8

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

func (l Level) String() string {
	switch l {
	case LevelTrace:
		return "trace"
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	case LevelError:
		return "error"
	}
	return fmt.Sprintf("Level(%d)", uint8(l))
}

// HandlerError is a handler failure. Both kinds count as "handler failed" for the ack policy.
type HandlerError struct {
	// Fatal marks a permanent failure that redelivery cannot help (under NACK_ON_ERROR the
	// message is rejected instead of redelivered); otherwise the failure is transient (retry).
	Fatal   bool
	Message string
}

func (e HandlerError) Error() string {
	if e.Fatal {
		return "fatal: " + e.Message
	}
	return "retry: " + e.Message
}

// Result is what a handler returns: Ok (the ack policy decides), Settle (a decision) or a
// failure (Retry, Fatal). The zero Result is Ok. Results compare with ==.
type Result struct {
	settled  bool
	decision Decision
	failed   bool
	err      HandlerError
}

// Ok leaves the decision to the pipeline's ack policy.
func Ok() Result { return Result{} }

// Settle settles the message with d, unless an Ack, Nack or Reject call decided first.
func Settle(d Decision) Result {
	d.check()
	return Result{settled: true, decision: d}
}

// Retry is a transient failure: redelivery may succeed (NACK_ON_ERROR redelivers).
func Retry(text string) Result { return Fail(HandlerError{Message: text}) }

// Fatal is a permanent failure: NACK_ON_ERROR rejects the message instead of redelivering it.
func Fatal(text string) Result { return Fail(HandlerError{Fatal: true, Message: text}) }

// Fail returns err as the handler's failure.
func Fail(err HandlerError) Result { return Result{failed: true, err: err} }

// Decision is the decision the handler returned, if it settled the message with Settle.
func (r Result) Decision() (Decision, bool) { return r.decision, r.settled }

// Failure is the handler's failure, if it returned Retry, Fatal or Fail.
func (r Result) Failure() (HandlerError, bool) { return r.err, r.failed }

func (r Result) String() string {
	switch {
	case r.failed && r.err.Fatal:
		return fmt.Sprintf("err(fatal(%q))", r.err.Message)
	case r.failed:
		return fmt.Sprintf("err(retry(%q))", r.err.Message)
	case r.settled:
		return fmt.Sprintf("ok(%s)", r.decision)
	}
	return "ok"
}

// Handle registers the function that handles every message. Call it from an init function: a
// component runs package initialization but never main.
func Handle(handler func(Message) Result) {
	registered = handler
}

var registered func(Message) Result

// Ack settles the current message as acknowledged. The first decision made for a message wins;
// the handler goes on.
func Ack() { hostSettle(DecisionAck) }

// Nack settles the current message as not acknowledged: it is delivered again after a backoff.
func Nack() { hostSettle(DecisionNack) }

// Reject settles the current message as rejected (committed; dead-lettered where configured).
func Reject() { hostSettle(DecisionReject) }

// Interrupt settles the current message with d and ends the handler call at once, from any depth
// (FastStream's AckMessage / NackMessage). It never returns: in a component nothing after it
// runs, not even deferred functions, and the instance is replaced afterwards. Where Go needs a
// return value after it, write panic("unreachable").
func Interrupt(d Decision) {
	d.check()
	hostInterrupt(d)
	panic("ackbar: the host returned from Interrupt")
}

// Log writes text to the host's log at level, tagged with the pipeline, topic, partition and
// offset.
func Log(level Level, text string) {
	if level > LevelError {
		level = LevelError
	}
	hostLog(level, text)
}

// Logf is Log with fmt.Sprintf formatting.
func Logf(level Level, format string, args ...any) {
	Log(level, fmt.Sprintf(format, args...))
}
