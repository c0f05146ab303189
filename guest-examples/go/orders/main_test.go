package main

import (
	"testing"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
	"github.com/ackbar-io/ackbar/sdk/go/ackbartest"
)

func TestValidOrderIsLeftToThePolicy(t *testing.T) {
	call := ackbartest.Run(handle, ackbartest.Message(`{"id":"o1","item":"book","quantity":2}`))
	if r, ok := call.Returned(); !ok || r != ackbar.Ok() || !call.Logged("order o1: 2 x book") {
		t.Errorf("%v", call)
	}
}

func TestMalformedOrderIsRejected(t *testing.T) {
	for _, payload := range []string{"not json", `{"id":"o4","item":"pen","quantity":0}`} {
		call := ackbartest.Run(handle, ackbartest.Message(payload))
		if d, ok := call.Settled(); !ok || d != ackbar.DecisionReject || !call.Logged("rejecting malformed order") {
			t.Errorf("%s: %v", payload, call)
		}
	}
}

func TestOfflineWarehouseRetriesUntilTheThirdAttempt(t *testing.T) {
	msg := ackbartest.Message(`{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}`)
	msg.Attempt = 2
	if r, _ := ackbartest.Run(handle, msg).Returned(); r != ackbar.Retry("warehouse offline (attempt 2)") {
		t.Errorf("attempt 2: %v", r)
	}
	msg.Attempt = 3
	if r, _ := ackbartest.Run(handle, msg).Returned(); r != ackbar.Ok() {
		t.Errorf("attempt 3: %v", r)
	}
}

func TestPoisonTraps(t *testing.T) {
	call := ackbartest.Run(handle, ackbartest.Message(`{"id":"o3","item":"poison","quantity":1}`))
	if call.End.Kind != ackbartest.Trapped {
		t.Errorf("%v", call)
	}
}
