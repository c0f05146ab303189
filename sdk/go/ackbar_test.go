package ackbar_test

import (
	"errors"
	"testing"

	ackbar "github.com/ackbar-io/ackbar/sdk/go"
)

func TestResult(t *testing.T) {
	if ackbar.Ok() != (ackbar.Result{}) {
		t.Error("the zero Result is Ok")
	}
	if d, ok := ackbar.Settle(ackbar.DecisionNack).Decision(); !ok || d != ackbar.DecisionNack {
		t.Errorf("%v, %v", d, ok)
	}
	if _, ok := ackbar.Ok().Decision(); ok {
		t.Error("Ok settles nothing")
	}
	if e, ok := ackbar.Fatal("bad").Failure(); !ok || !e.Fatal || e.Error() != "fatal: bad" {
		t.Errorf("%+v, %v", e, ok)
	}
	for r, want := range map[ackbar.Result]string{
		ackbar.Ok():                          "ok",
		ackbar.Settle(ackbar.DecisionReject): "ok(reject)",
		ackbar.Retry("later"):                `err(retry("later"))`,
		ackbar.Fatal("never"):                `err(fatal("never"))`,
		ackbar.Fail(ackbar.HandlerError{}):   `err(retry(""))`,
	} {
		if r.String() != want {
			t.Errorf("%q, want %q", r.String(), want)
		}
	}
}

func TestSendError(t *testing.T) {
	var err error = &ackbar.SendError{Reason: ackbar.ErrTopicNotAllowed, Detail: "`x` is not among this pipeline's outputs (it has none)"}
	if !errors.Is(err, ackbar.ErrTopicNotAllowed) || errors.Is(err, ackbar.ErrInvalid) {
		t.Error("errors.Is tells the reason")
	}
	if err.Error() != "`x` is not among this pipeline's outputs (it has none)" {
		t.Error(err)
	}
	if (&ackbar.SendError{Reason: ackbar.ErrNoMessage}).Error() != ackbar.ErrNoMessage.Error() {
		t.Error("without a detail the reason speaks")
	}
}

func TestNames(t *testing.T) {
	if ackbar.DecisionReject.String() != "reject" || ackbar.LevelWarn.String() != "warn" || ackbar.Decision(9).String() != "Decision(9)" {
		t.Error("names")
	}
}
