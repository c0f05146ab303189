package ackbartest_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
	"github.com/ackbar-io/ackbar/sdk/go/ackbartest"
)

func TestMessageDefaults(t *testing.T) {
	m := ackbartest.Message("hi")
	want := ackbar.Message{Topic: "test", Payload: []byte("hi"), Attempt: 1}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("%+v", m)
	}
	if m := ackbartest.Message(""); m.Payload == nil {
		t.Error(`Message("") has no payload; want an empty one`)
	}
	if m := ackbartest.Message([]byte(nil)); m.Payload != nil {
		t.Error("Message(nil) has a payload")
	}
}

func TestReturned(t *testing.T) {
	call := ackbartest.Run(func(ackbar.Message) ackbar.Result { return ackbar.Ok() }, ackbartest.Message("x"))
	if call.End.Kind != ackbartest.Returned || call.End.Result != ackbar.Ok() {
		t.Fatalf("%v", call)
	}
	if d, ok := call.Settled(); ok {
		t.Errorf("settled %v; want the policy to decide", d)
	}

	call = ackbartest.Run(func(ackbar.Message) ackbar.Result { return ackbar.Settle(ackbar.DecisionReject) }, ackbartest.Message("x"))
	if d, ok := call.Settled(); !ok || d != ackbar.DecisionReject {
		t.Errorf("settled %v, %v", d, ok)
	}

	call = ackbartest.Run(func(ackbar.Message) ackbar.Result { return ackbar.Retry("later") }, ackbartest.Message("x"))
	if e, ok := call.End.Result.Failure(); !ok || e.Fatal || e.Message != "later" {
		t.Errorf("failure %+v, %v", e, ok)
	}
	if call.End.Result != ackbar.Retry("later") || call.End.Result == ackbar.Fatal("later") {
		t.Errorf("%v", call.End.Result)
	}
	if _, ok := call.Settled(); ok {
		t.Error("a failure settles nothing itself")
	}
}

func TestDecisionsInOrderFirstWins(t *testing.T) {
	call := ackbartest.Run(func(ackbar.Message) ackbar.Result {
		ackbar.Nack()
		ackbar.Ack()
		ackbar.Reject()
		return ackbar.Settle(ackbar.DecisionAck)
	}, ackbartest.Message("x"))
	want := []ackbar.Decision{ackbar.DecisionNack, ackbar.DecisionAck, ackbar.DecisionReject}
	if !reflect.DeepEqual(call.Decisions, want) {
		t.Errorf("decisions %v", call.Decisions)
	}
	if d, _ := call.Settled(); d != ackbar.DecisionNack {
		t.Errorf("settled %v; want the first acker call", d)
	}
}

func TestInterruptStopsTheHandler(t *testing.T) {
	reached := false
	call := ackbartest.Run(func(ackbar.Message) ackbar.Result {
		deep := func() { ackbar.Interrupt(ackbar.DecisionNack) }
		deep()
		reached = true
		return ackbar.Ok()
	}, ackbartest.Message("x"))
	if reached || call.End.Kind != ackbartest.Interrupted || call.End.Decision != ackbar.DecisionNack {
		t.Fatalf("reached %v, %v", reached, call)
	}
	if d, ok := call.Settled(); !ok || d != ackbar.DecisionNack {
		t.Errorf("settled %v, %v", d, ok)
	}
	// An acker call before the interrupt wins.
	call = ackbartest.Run(func(ackbar.Message) ackbar.Result {
		ackbar.Ack()
		ackbar.Interrupt(ackbar.DecisionReject)
		panic("unreachable")
	}, ackbartest.Message("x"))
	if d, _ := call.Settled(); d != ackbar.DecisionAck || call.End.Kind != ackbartest.Interrupted {
		t.Errorf("%v", call)
	}
}

func TestPanicIsATrap(t *testing.T) {
	call := ackbartest.Run(func(ackbar.Message) ackbar.Result {
		ackbar.Log(ackbar.LevelInfo, "before")
		panic("cannot price item 'poison'")
	}, ackbartest.Message("x"))
	if call.End.Kind != ackbartest.Trapped || !strings.Contains(call.End.Panic, "poison") {
		t.Fatalf("%v", call)
	}
	if !call.Logged("before") {
		t.Error("what the handler did before the trap is recorded")
	}
	call = ackbartest.Run(func(m ackbar.Message) ackbar.Result {
		_ = m.Headers[3]
		return ackbar.Ok()
	}, ackbartest.Message("x"))
	if call.End.Kind != ackbartest.Trapped || !strings.Contains(call.End.Panic, "index out of range") {
		t.Errorf("%v", call)
	}
	if _, ok := call.Settled(); ok {
		t.Error("a trap settles nothing")
	}
}

func TestLogs(t *testing.T) {
	call := ackbartest.Run(func(m ackbar.Message) ackbar.Result {
		ackbar.Log(ackbar.LevelWarn, "empty message")
		ackbar.Logf(ackbar.LevelDebug, "offset %d", m.Offset)
		return ackbar.Ok()
	}, ackbartest.Message(""))
	want := []ackbartest.Log{{Level: ackbar.LevelWarn, Text: "empty message"}, {Level: ackbar.LevelDebug, Text: "offset 0"}}
	if !reflect.DeepEqual(call.Logs, want) {
		t.Errorf("logs %+v", call.Logs)
	}
	if !call.Logged("empty") || call.Logged("nothing like this") {
		t.Error("Logged matches substrings of any line")
	}
}

func TestSend(t *testing.T) {
	partition := int32(2)
	call := ackbartest.Run(func(m ackbar.Message) ackbar.Result {
		payload := []byte("v1")
		if err := ackbar.SendTo("out", []byte("k"), payload); err != nil {
			t.Errorf("SendTo: %v", err)
		}
		payload[0] = 'X' // the record was copied at the call
		err := ackbar.Send(ackbar.OutputRecord{
			Topic:     "other",
			Payload:   []byte("v2"),
			Headers:   []ackbar.Header{{Key: "h", Value: nil}},
			Partition: &partition,
		})
		if err != nil {
			t.Errorf("Send: %v", err)
		}
		if err := ackbar.SendTo("out", nil, nil); err != nil {
			t.Errorf("SendTo: %v", err)
		}
		return ackbar.Ok()
	}, ackbartest.Message("x"))
	if len(call.Sent) != 3 || string(call.Sent[0].Key) != "k" || *call.Sent[1].Partition != 2 || call.Sent[1].Key != nil {
		t.Fatalf("sent %+v", call.Sent)
	}
	if got := call.SentTo("out"); len(got) != 2 || string(got[0]) != "v1" || got[1] == nil || len(got[1]) != 0 {
		t.Errorf("sent to out: %q", got)
	}
	if got := call.SentTo("other"); len(got) != 1 || string(got[0]) != "v2" {
		t.Errorf("sent to other: %q", got)
	}
	if call.SentTo("nowhere") != nil {
		t.Error("nothing was sent to nowhere")
	}
}

func TestSendRefusesWhatTheHostRefuses(t *testing.T) {
	negative := int32(-1)
	call := ackbartest.Run(func(m ackbar.Message) ackbar.Result {
		for _, r := range []ackbar.OutputRecord{{Topic: ""}, {Topic: "out", Partition: &negative}} {
			err := ackbar.Send(r)
			var sendErr *ackbar.SendError
			if !errors.Is(err, ackbar.ErrInvalid) || !errors.As(err, &sendErr) || sendErr.Detail == "" {
				t.Errorf("%+v: %v", r, err)
			}
		}
		return ackbar.Ok()
	}, ackbartest.Message("x"))
	if len(call.Sent) != 0 {
		t.Errorf("sent %+v", call.Sent)
	}
}

func TestCallsOutsideRunPanic(t *testing.T) {
	defer func() {
		if v, _ := recover().(string); !strings.Contains(v, "ackbartest.Run") {
			t.Errorf("panic %q", v)
		}
	}()
	ackbar.Ack()
}

func TestInvalidDecisionTraps(t *testing.T) {
	call := ackbartest.Run(func(ackbar.Message) ackbar.Result { return ackbar.Settle(ackbar.Decision(7)) }, ackbartest.Message("x"))
	if call.End.Kind != ackbartest.Trapped || !strings.Contains(call.End.Panic, "invalid decision") {
		t.Errorf("%v", call)
	}
}

func TestParallelRunsDoNotMix(t *testing.T) {
	for i := range 8 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			call := ackbartest.Run(func(m ackbar.Message) ackbar.Result {
				for range 50 {
					ackbar.Log(ackbar.LevelInfo, string(m.Payload))
				}
				return ackbar.Ok()
			}, ackbartest.Message(strings.Repeat("x", i+1)))
			for _, l := range call.Logs {
				if len(l.Text) != i+1 {
					t.Fatalf("a line of another run: %q", l.Text)
				}
			}
			if len(call.Logs) != 50 {
				t.Errorf("%d lines", len(call.Logs))
			}
		})
	}
}
