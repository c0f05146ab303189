// Package ackbartest runs an Ackbar handler natively, without Wasm or a broker, and reports
// everything it did:
//
//	call := ackbartest.Run(handle, ackbartest.Message(`{"id":"o1"}`))
//	if d, ok := call.Settled(); !ok || d != ackbar.DecisionAck {
//		t.Errorf("settled %v, %v: %v", d, ok, call)
//	}
//	if !call.Logged("o1") { ... }
package ackbartest

import (
	"fmt"
	"runtime"
	"strings"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
	"github.com/ackbar-io/ackbar/sdk/go/internal/harness"
)

// Message is a message with payload and defaults for everything else: topic "test", partition 0,
// offset 0, attempt 1, no timestamp, no key, no headers. Change its fields for other cases.
func Message[P string | []byte](payload P) ackbar.Message {
	return ackbar.Message{
		Topic:   "test",
		Payload: []byte(payload), // a string, even "", gives a value; only a nil []byte is none
		Attempt: 1,
	}
}

// EndKind is how a handler call ended.
type EndKind uint8

const (
	// Returned: the handler returned End.Result.
	Returned EndKind = iota
	// Interrupted: the handler called ackbar.Interrupt(End.Decision).
	Interrupted
	// Trapped: the handler panicked, a trap for the host; End.Panic is the panic value as text.
	Trapped
)

// End is how a handler call ended.
type End struct {
	Kind     EndKind
	Result   ackbar.Result   // when Returned
	Decision ackbar.Decision // when Interrupted
	Panic    string          // when Trapped
}

func (e End) String() string {
	switch e.Kind {
	case Returned:
		return "returned " + e.Result.String()
	case Interrupted:
		return "interrupted " + e.Decision.String()
	}
	return fmt.Sprintf("trapped %q", e.Panic)
}

// Log is one ackbar.Log call.
type Log struct {
	Level ackbar.Level
	Text  string
}

// Call is everything one handler call did.
type Call struct {
	End End
	// Decisions are the Ack, Nack and Reject calls, in order (the host keeps only the first).
	Decisions []ackbar.Decision
	Logs      []Log
	// Sent are the records sent, in order (the host publishes them only if the attempt
	// settles the message as handled).
	Sent []ackbar.OutputRecord
}

// Run calls handler(msg) natively, recording its Ack, Nack, Reject, Log and Send calls. An
// Interrupt ends the call as in a component (deferred functions still run natively); a panic is
// reported as a trap. One Run records at a time.
func Run(handler func(ackbar.Message) ackbar.Result, msg ackbar.Message) (c Call) {
	if runtime.GOOS == "wasip1" {
		// It compiles there for vet and editors, but the SDK's calls go to a host.
		panic("ackbartest: Run works natively only (go test without GOOS=wasip1)")
	}
	harness.Begin()
	defer func() { // also when the handler ends its goroutine (runtime.Goexit, t.FailNow)
		r := harness.End()
		for _, d := range r.Decisions {
			c.Decisions = append(c.Decisions, d.(ackbar.Decision))
		}
		for _, l := range r.Logs {
			c.Logs = append(c.Logs, Log{Level: l.Level.(ackbar.Level), Text: l.Text})
		}
		for _, s := range r.Sent {
			c.Sent = append(c.Sent, s.(ackbar.OutputRecord))
		}
	}()
	c.End = call(handler, msg)
	return c
}

func call(handler func(ackbar.Message) ackbar.Result, msg ackbar.Message) (end End) {
	defer func() {
		if v := recover(); v != nil {
			if signal, ok := v.(harness.Interrupt); ok {
				end = End{Kind: Interrupted, Decision: signal.Decision.(ackbar.Decision)}
			} else {
				end = End{Kind: Trapped, Panic: fmt.Sprint(v)}
			}
		}
	}()
	return End{Kind: Returned, Result: handler(msg)}
}

// Returned is the Result the handler returned, if it returned (no Interrupt, no panic).
func (c Call) Returned() (ackbar.Result, bool) {
	return c.End.Result, c.End.Kind == Returned
}

// Settled is the decision the host would settle the message with, if the handler made one: the
// first Ack, Nack or Reject call, else an Interrupt, else a returned Settle. false leaves it to
// the ack policy.
func (c Call) Settled() (ackbar.Decision, bool) {
	if len(c.Decisions) > 0 {
		return c.Decisions[0], true
	}
	switch c.End.Kind {
	case Interrupted:
		return c.End.Decision, true
	case Returned:
		return c.End.Result.Decision()
	}
	return 0, false
}

// Logged says whether any log line contains text.
func (c Call) Logged(text string) bool {
	for _, l := range c.Logs {
		if strings.Contains(l.Text, text) {
			return true
		}
	}
	return false
}

// SentTo is the payloads sent to topic, in order.
func (c Call) SentTo(topic string) [][]byte {
	var payloads [][]byte
	for _, r := range c.Sent {
		if r.Topic == topic && r.Payload != nil {
			payloads = append(payloads, r.Payload)
		}
	}
	return payloads
}

func (c Call) String() string {
	var b strings.Builder
	b.WriteString(c.End.String())
	for _, d := range c.Decisions {
		fmt.Fprintf(&b, "; %s()", d)
	}
	for _, l := range c.Logs {
		fmt.Fprintf(&b, "; log %s %q", l.Level, l.Text)
	}
	for _, r := range c.Sent {
		fmt.Fprintf(&b, "; sent %d bytes to %s", len(r.Payload), r.Topic)
	}
	return b.String()
}
