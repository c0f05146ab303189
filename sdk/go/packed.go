package ackbar

import (
	"encoding/binary"
	"math"
	"time"
)

// The layout of a `handle-packed-batch` call's buffer is described in the WIT, beside world
// `packed-batch-handler`.
const (
	// absent is the length of a key, payload or header value the record does not have.
	absent = math.MaxUint32
	// noTimestamp is the timestamp of a record without one.
	noTimestamp = math.MinInt64
)

// packedBatch reads the messages packed in one `handle-packed-batch` buffer, one at a time, when
// the batch reaches them. A message's key, payload and header values are slices of the buffer,
// not copies, each capped at its own length so that appending to one cannot overwrite the next.
// A buffer that does not follow the layout is a broken host: decoding it panics (a trap).
type packedBatch struct {
	topic     string
	partition int32
	left      uint32
	rest      []byte
}

// next decodes the next message; false after the last one.
func (b *packedBatch) next() (Message, bool) {
	if b.left == 0 {
		return Message{}, false
	}
	b.left--
	msg := Message{Topic: b.topic, Partition: b.partition}
	msg.Offset = int64(binary.LittleEndian.Uint64(b.take(8, "offset")))
	if ts := int64(binary.LittleEndian.Uint64(b.take(8, "timestamp"))); ts != noTimestamp {
		msg.Timestamp = time.UnixMilli(ts).UTC()
	}
	msg.Attempt = b.u32("attempt")
	msg.Key = b.optional("key")
	msg.Payload = b.optional("payload")
	if n := b.u32("header count"); n > 0 {
		msg.Headers = make([]Header, n)
		for i := range msg.Headers {
			name := b.optional("header name")
			msg.Headers[i] = Header{Key: string(name), Value: b.optional("header value")}
		}
	}
	return msg, true
}

func (b *packedBatch) take(n uint32, field string) []byte {
	if uint64(len(b.rest)) < uint64(n) {
		panic("ackbar: handle-packed-batch: the buffer ends inside a message's " + field)
	}
	taken := b.rest[:n:n]
	b.rest = b.rest[n:]
	return taken
}

func (b *packedBatch) u32(field string) uint32 {
	return binary.LittleEndian.Uint32(b.take(4, field))
}

// optional is nil for an absent field, and empty but not nil for an empty one.
func (b *packedBatch) optional(field string) []byte {
	n := b.u32(field)
	if n == absent {
		return nil
	}
	return b.take(n, field)
}
