package main

import (
	"strings"
	"testing"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
	"github.com/ackbar-io/ackbar/sdk/go/ackbartest"
)

func TestValidOrderIsForwarded(t *testing.T) {
	msg := ackbartest.Message(`{"id":"o1","item":"book","quantity":12}`)
	msg.Topic = "orders"
	call := ackbartest.Run(handle, msg)
	if r, ok := call.Returned(); !ok || r != ackbar.Ok() {
		t.Fatalf("%v", call)
	}
	sent := call.SentTo("orders.enriched")
	if len(sent) != 1 || !strings.Contains(string(sent[0]), `"size":"bulk"`) || string(call.Sent[0].Key) != "o1" {
		t.Errorf("sent %+v", call.Sent)
	}
}

func TestMalformedOrderIsRejectedAndNothingSent(t *testing.T) {
	call := ackbartest.Run(handle, ackbartest.Message("not an order"))
	if d, ok := call.Settled(); !ok || d != ackbar.DecisionReject || len(call.Sent) != 0 {
		t.Errorf("%v", call)
	}
}
