package main

import (
	"reflect"
	"testing"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
	"github.com/ackbar-io/ackbar/sdk/go/ackbartest"
)

func settled(t *testing.T, payload string, attempt uint32) (ackbartest.Call, ackbar.Decision) {
	t.Helper()
	msg := ackbartest.Message(payload)
	msg.Attempt = attempt
	call := ackbartest.Run(handle, msg)
	d, ok := call.Settled()
	if !ok {
		t.Fatalf("%s attempt %d settled nothing: %v", payload, attempt, call)
	}
	return call, d
}

func TestValidOrderIsAcked(t *testing.T) {
	call, d := settled(t, `{"id":"o1","item":"book","quantity":2}`, 1)
	if d != ackbar.DecisionAck || !call.Logged("order o1: 2 x book") {
		t.Errorf("%v", call)
	}
}

func TestMalformedOrderIsRejected(t *testing.T) {
	call, d := settled(t, "not json", 1)
	if d != ackbar.DecisionReject || !reflect.DeepEqual(call.Decisions, []ackbar.Decision{ackbar.DecisionReject}) {
		t.Errorf("%v", call)
	}
}

func TestDuplicateIsAckedFromTwoCallsDeep(t *testing.T) {
	call, d := settled(t, `{"id":"o5","item":"duplicate","quantity":1}`, 1)
	if d != ackbar.DecisionAck || call.End.Kind != ackbartest.Interrupted || len(call.Decisions) != 0 {
		t.Errorf("%v", call)
	}
}

func TestBusyWarehouseIsNackedOnce(t *testing.T) {
	order := `{"id":"o6","item":"lamp","quantity":3,"warehouse":"busy"}`
	if call, d := settled(t, order, 1); d != ackbar.DecisionNack || call.End.Kind != ackbartest.Interrupted {
		t.Errorf("attempt 1: %v", call)
	}
	if call, d := settled(t, order, 2); d != ackbar.DecisionAck {
		t.Errorf("attempt 2: %v", call)
	}
}

func TestOfflineWarehouseIsNackedUntilTheThirdAttempt(t *testing.T) {
	order := `{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}`
	for attempt, want := range []ackbar.Decision{1: ackbar.DecisionNack, 2: ackbar.DecisionNack, 3: ackbar.DecisionAck} {
		if attempt == 0 {
			continue
		}
		if call, d := settled(t, order, uint32(attempt)); d != want {
			t.Errorf("attempt %d: %v", attempt, call)
		}
	}
}
