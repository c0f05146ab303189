package order

import (
	"strings"
	"testing"
)

func TestValidOrder(t *testing.T) {
	o, err := Parse([]byte(`{"id":"o1","item":"book","quantity":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Summary(); got != "order o1: 2 x book" {
		t.Errorf("summary %q", got)
	}
	if o.WarehouseOffline(1) {
		t.Error("no warehouse is not offline")
	}
}

func TestMalformed(t *testing.T) {
	for _, payload := range []string{
		``,
		`not json`,
		`null`,
		`[1,2]`,
		`{"id":"o1","item":"book"}`,
		`{"id":"o1","item":"book","quantity":null}`,
		`{"id":"o1","item":"book","quantity":-1}`,
		`{"id":"o1","item":"book","quantity":2.5}`,
		`{"id":"o1","item":"book","quantity":"2"}`,
		`{"id":1,"item":"book","quantity":2}`,
		`{"ID":"o1","item":"book","quantity":2}`,
		`{"id":"o1","item":"book","quantity":2,"warehouse":7}`,
		`{"id":"o1","item":"book","quantity":2} trailing`,
		`{"id":"o1","item":"book","quantity":0}`,
	} {
		if o, err := Parse([]byte(payload)); err == nil {
			t.Errorf("%q parsed as %+v", payload, o)
		}
	}
}

func TestWarehouseIsOptional(t *testing.T) {
	o, err := Parse([]byte(`{"id":"o1","item":"book","quantity":2,"warehouse":null,"extra":true}`))
	if err != nil || o.Warehouse != "" {
		t.Fatalf("%+v, %v", o, err)
	}
}

func TestOfflineWarehouseRecoversOnThirdAttempt(t *testing.T) {
	o, err := Parse([]byte(`{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !o.WarehouseOffline(1) || !o.WarehouseOffline(2) || o.WarehouseOffline(3) {
		t.Error("offline until attempt 3")
	}
}

func TestPoisonPanicsBeforeTheQuantityCheck(t *testing.T) {
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "poison") {
			t.Errorf("panic %q", msg)
		}
	}()
	Parse([]byte(`{"id":"o3","item":"poison","quantity":0}`))
	t.Error("no panic")
}

func TestEnrich(t *testing.T) {
	id, enriched, err := Enrich([]byte(`{"id":"o1","item":"book","quantity":12,"warehouse":"north"}`))
	if err != nil {
		t.Fatal(err)
	}
	if id != "o1" {
		t.Errorf("id %q", id)
	}
	want := `{"id":"o1","item":"book","quantity":12,"size":"bulk","warehouse":"north"}`
	if string(enriched) != want {
		t.Errorf("enriched %s, want %s", enriched, want)
	}
	if _, small, _ := Enrich([]byte(`{"id":"o2","item":"pen","quantity":1}`)); !strings.Contains(string(small), `"size":"standard"`) {
		t.Errorf("a small order: %s", small)
	}
	for _, payload := range []string{`not json`, `{"id":"o1","item":"book","quantity":0}`} {
		if _, _, err := Enrich([]byte(payload)); err == nil {
			t.Errorf("%q enriched", payload)
		}
	}
}
