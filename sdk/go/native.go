//go:build !wasip1

// Natively every call is recorded for the ackbartest harness.

package ackbar

import (
	"fmt"

	"github.com/ackbar-io/ackbar/sdk/go/internal/harness"
)

func hostSettle(d Decision) {
	d.check()
	harness.Record(func(r *harness.Recorder) { r.Decisions = append(r.Decisions, d) })
}

func hostInterrupt(d Decision) {
	harness.Record(func(*harness.Recorder) {}) // outside ackbartest.Run: the usual panic
	panic(harness.Interrupt{Decision: d})
}

func hostLog(level Level, text string) {
	harness.Record(func(r *harness.Recorder) {
		r.Logs = append(r.Logs, harness.Log{Level: level, Text: text})
	})
}

// hostSend refuses what the host refuses whatever the pipeline (an empty topic, a negative
// partition) and records a copy of the rest: the host copies the record at the call.
func hostSend(record OutputRecord) *SendError {
	if record.Topic == "" {
		return &SendError{Reason: ErrInvalid, Detail: "the topic is empty"}
	}
	if record.Partition != nil && *record.Partition < 0 {
		return &SendError{Reason: ErrInvalid, Detail: fmt.Sprintf("partition %d is negative", *record.Partition)}
	}
	sent := record
	sent.Key = harness.Clone(record.Key)
	sent.Payload = harness.Clone(record.Payload)
	sent.Headers = nil
	for _, h := range record.Headers {
		sent.Headers = append(sent.Headers, Header{Key: h.Key, Value: harness.Clone(h.Value)})
	}
	if record.Partition != nil {
		p := *record.Partition
		sent.Partition = &p
	}
	harness.Record(func(r *harness.Recorder) { r.Sent = append(r.Sent, sent) })
	return nil
}
