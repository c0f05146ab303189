package main

import (
	"testing"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
	"github.com/ackbar-io/ackbar/sdk/go/ackbartest"
)

func TestEmptyMessageIsRejected(t *testing.T) {
	for _, payload := range [][]byte{nil, {}} {
		call := ackbartest.Run(handle, ackbartest.Message(payload))
		if d, ok := call.Settled(); !ok || d != ackbar.DecisionReject || !call.Logged("empty message") {
			t.Errorf("payload %q: %v", payload, call)
		}
	}
}

func TestRetryUntilTheThirdAttempt(t *testing.T) {
	msg := ackbartest.Message("retry later")
	msg.Attempt = 2
	if r, _ := ackbartest.Run(handle, msg).Returned(); r != ackbar.Retry("asked to retry (attempt 2)") {
		t.Errorf("attempt 2: %v", r)
	}
	msg.Attempt = 3
	call := ackbartest.Run(handle, msg)
	if r, ok := call.Returned(); !ok || r != ackbar.Ok() || !call.Logged("retry later") {
		t.Errorf("attempt 3: %v", call)
	}
}

func TestOtherMessagesAreLeftToThePolicy(t *testing.T) {
	msg := ackbartest.Message("hello")
	msg.Offset = 42
	call := ackbartest.Run(handle, msg)
	if r, ok := call.Returned(); !ok || r != ackbar.Ok() {
		t.Errorf("%v", call)
	}
	if !call.Logged("handled test/0@42: hello") {
		t.Errorf("logs %v", call.Logs)
	}
}
