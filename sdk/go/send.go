package ackbar

import "errors"

// OutputRecord is one record to write to an output topic. The zero values mean "none": no key,
// no value (a tombstone), no headers, and the key chooses the partition.
type OutputRecord struct {
	// Topic must be one of the pipeline's outputs.
	Topic string
	// Key is nil for a record without a key. Records with the same key go to the same partition.
	Key []byte
	// Payload is nil for a record without a value (a tombstone).
	Payload []byte
	Headers []Header
	// Partition is a partition of Topic; nil lets the key choose (or spreads keyless records).
	Partition *int32
}

// Why the host refused a record; a *SendError wraps one of them (test with errors.Is).
var (
	// ErrTopicNotAllowed: the topic is not among the pipeline's outputs.
	ErrTopicNotAllowed = errors.New("topic not among the pipeline's outputs")
	// ErrLimitExceeded: the call already sent as many records or bytes as the pipeline allows
	// per call (max_outputs_per_call, max_output_bytes_per_call).
	ErrLimitExceeded = errors.New("per-call output limit exceeded")
	// ErrInvalid: a field is out of range (a negative partition, an empty topic).
	ErrInvalid = errors.New("invalid output record")
	// ErrNoMessage: Send was called outside a handler call.
	ErrNoMessage = errors.New("send outside a handler call")
)

// SendError is why a record was not accepted. The call goes on; the handler decides what it
// means.
type SendError struct {
	// Reason is ErrTopicNotAllowed, ErrLimitExceeded, ErrInvalid or ErrNoMessage.
	Reason error
	// Detail is the host's explanation, e.g. "`x` is not among this pipeline's outputs (y)".
	Detail string
}

func (e *SendError) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	return e.Reason.Error()
}

func (e *SendError) Unwrap() error { return e.Reason }

// Send adds record to what this delivery attempt publishes. It is written only if the attempt
// settles the message as handled (an ack, explicit or by the policy); a nack, reject, failure or
// trap drops everything the attempt sent. The error, a *SendError, is for the handler to deal
// with; the call goes on.
func Send(record OutputRecord) error {
	if err := hostSend(record); err != nil {
		return err
	}
	return nil
}

// SendTo sends payload to topic with key (nil for none), without headers, letting the key choose
// the partition.
func SendTo(topic string, key, payload []byte) error {
	if payload == nil {
		payload = []byte{} // a value, not a tombstone
	}
	return Send(OutputRecord{Topic: topic, Key: key, Payload: payload})
}
