// Package harness connects the SDK's native calls to the ackbartest harness: package ackbar
// records each call into the current Recorder, ackbartest starts a recording and reads it.
// Values are held as any because ackbar cannot import ackbartest (which imports ackbar).
package harness

import "sync"

// Recorder holds what one handler call did, in call order.
type Recorder struct {
	Decisions []any // ackbar.Decision
	Logs      []Log
	Sent      []any // ackbar.OutputRecord
}

// Log is one Log call.
type Log struct {
	Level any // ackbar.Level
	Text  string
}

// Interrupt is the panic value that carries an Interrupt out of the handler.
type Interrupt struct {
	Decision any // ackbar.Decision
}

var (
	running sync.Mutex // one recorded call at a time, even from parallel tests
	mu      sync.Mutex // guards current: a handler may call from several goroutines
	current *Recorder
)

// Begin starts recording; every call made until End goes into the returned Recorder.
func Begin() {
	running.Lock()
	mu.Lock()
	current = &Recorder{}
	mu.Unlock()
}

// End stops recording and returns what was recorded.
func End() Recorder {
	mu.Lock()
	r := *current
	current = nil
	mu.Unlock()
	running.Unlock()
	return r
}

// Record applies f to the current Recorder.
func Record(f func(*Recorder)) {
	mu.Lock()
	defer mu.Unlock()
	if current == nil {
		panic("ackbar: Ack, Nack, Reject, Interrupt, Log and Send need ackbartest.Run outside Wasm")
	}
	f(current)
}

// Clone copies b, keeping nil apart from empty: the host copies what a handler sends.
func Clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
