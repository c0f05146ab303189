package ackbar

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

// two writes two messages field by field in the layout the WIT describes.
func two() []byte {
	var out []byte
	u32 := func(v uint32) { out = binary.LittleEndian.AppendUint32(out, v) }
	i64 := func(v int64) { out = binary.LittleEndian.AppendUint64(out, uint64(v)) }
	put := func(b []byte) {
		if b == nil {
			u32(absent)
			return
		}
		u32(uint32(len(b)))
		out = append(out, b...)
	}
	i64(7)
	i64(1_700_000_000_123)
	u32(1)
	put([]byte("k"))
	put([]byte("payload"))
	u32(0)

	i64(8)
	i64(noTimestamp)
	u32(3)
	put(nil)
	put([]byte{})
	u32(3)
	put([]byte("trace"))
	put(nil)
	put([]byte("é"))
	put([]byte{})
	put([]byte("trace"))
	put([]byte("2"))
	return out
}

func TestPackedBatchDecodesEveryField(t *testing.T) {
	batch := packedBatch{topic: "orders", partition: 3, left: 2, rest: two()}
	var got []Message
	for {
		msg, ok := batch.next()
		if !ok {
			break
		}
		got = append(got, msg)
	}
	want := []Message{
		{Topic: "orders", Partition: 3, Offset: 7, Timestamp: time.UnixMilli(1_700_000_000_123).UTC(),
			Key: []byte("k"), Payload: []byte("payload"), Attempt: 1},
		{Topic: "orders", Partition: 3, Offset: 8, Payload: []byte{}, Attempt: 3, Headers: []Header{
			{Key: "trace"}, {Key: "é", Value: []byte{}}, {Key: "trace", Value: []byte("2")},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got[1].Key != nil || got[1].Headers[0].Value != nil {
		t.Error("absent fields are nil")
	}
	if got[1].Payload == nil || got[1].Headers[1].Value == nil {
		t.Error("empty fields are not nil")
	}
	if len(batch.rest) != 0 {
		t.Errorf("%d bytes left", len(batch.rest))
	}
}

func TestPackedBatchFieldsCannotGrowIntoTheNextMessage(t *testing.T) {
	records := two()
	batch := packedBatch{topic: "orders", partition: 3, left: 2, rest: records}
	first, _ := batch.next()
	_ = append(first.Payload, "overwritten"...)
	second, _ := batch.next()
	if second.Offset != 8 || string(second.Headers[2].Value) != "2" {
		t.Fatalf("appending to a payload changed the next message: %+v", second)
	}
}

func TestPackedBatchCutShortNamesTheField(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "inside a message's payload") {
			t.Fatalf("panic: %v", r)
		}
	}()
	batch := packedBatch{topic: "orders", partition: 3, left: 2, rest: two()[:30]}
	batch.next()
}
