//! The messages of a `handle-packed-batch` call (world `packed-batch-handler`), decoded from the
//! host's buffer one at a time, as the batch reaches them: a batch the host stops early never
//! decodes the rest. The layout is described in the WIT, beside the world.

use crate::bindings::ackbar::plugin::types::Header;
use crate::Message;

/// The length that stands for "absent" (no key, no payload, a header without a value).
const ABSENT: u32 = u32::MAX;

/// The timestamp of a record without one.
const NO_TIMESTAMP: i64 = i64::MIN;

/// The messages packed in one `handle-packed-batch` call, in order.
///
/// A buffer that does not follow the layout is a broken host, not bad input: decoding it panics
/// (a trap), naming the field.
pub struct PackedMessages<'a> {
    topic: &'a str,
    partition: i32,
    left: u32,
    rest: &'a [u8],
}

impl<'a> PackedMessages<'a> {
    /// The `count` messages of `partition` of `topic` packed in `records`.
    pub fn new(topic: &'a str, partition: i32, count: u32, records: &'a [u8]) -> Self {
        PackedMessages {
            topic,
            partition,
            left: count,
            rest: records,
        }
    }

    fn take(&mut self, len: usize, field: &str) -> &'a [u8] {
        assert!(
            self.rest.len() >= len,
            "handle-packed-batch: the buffer ends inside a message's {field}"
        );
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        taken
    }

    fn u32(&mut self, field: &str) -> u32 {
        u32::from_le_bytes(self.take(4, field).try_into().expect("4 bytes"))
    }

    fn i64(&mut self, field: &str) -> i64 {
        i64::from_le_bytes(self.take(8, field).try_into().expect("8 bytes"))
    }

    fn optional(&mut self, field: &str) -> Option<&'a [u8]> {
        match self.u32(field) {
            ABSENT => None,
            len => Some(self.take(len as usize, field)),
        }
    }
}

impl Iterator for PackedMessages<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let offset = self.i64("offset");
        let timestamp = Some(self.i64("timestamp")).filter(|&t| t != NO_TIMESTAMP);
        let attempt = self.u32("attempt");
        let key = self.optional("key").map(<[u8]>::to_vec);
        let payload = self.optional("payload").map(<[u8]>::to_vec);
        let count = self.u32("header count");
        let headers = (0..count)
            .map(|_| {
                let name = self.optional("header name").unwrap_or_default();
                Header {
                    key: String::from_utf8_lossy(name).into_owned(),
                    value: self.optional("header value").map(<[u8]>::to_vec),
                }
            })
            .collect();
        Some(Message {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset,
            timestamp,
            key,
            payload,
            headers,
            attempt,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }

    /// Two messages in the layout the WIT describes, written field by field.
    fn two() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&7i64.to_le_bytes());
        out.extend_from_slice(&1_700_000_000_123i64.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, Some(b"k"));
        put(&mut out, Some(b"payload"));
        out.extend_from_slice(&0u32.to_le_bytes());

        out.extend_from_slice(&8i64.to_le_bytes());
        out.extend_from_slice(&NO_TIMESTAMP.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        put(&mut out, None);
        put(&mut out, Some(b""));
        out.extend_from_slice(&3u32.to_le_bytes());
        put(&mut out, Some(b"trace"));
        put(&mut out, None);
        put(&mut out, Some("é".as_bytes()));
        put(&mut out, Some(b""));
        put(&mut out, Some(b"trace"));
        put(&mut out, Some(b"2"));
        out
    }

    #[test]
    fn decodes_every_field_as_the_host_packed_it() {
        let records = two();
        let got: Vec<Message> = PackedMessages::new("orders", 3, 2, &records).collect();
        let header = |key: &str, value: Option<&[u8]>| Header {
            key: key.into(),
            value: value.map(<[u8]>::to_vec),
        };
        assert_eq!(
            got,
            [
                Message {
                    topic: "orders".into(),
                    partition: 3,
                    offset: 7,
                    timestamp: Some(1_700_000_000_123),
                    key: Some(b"k".to_vec()),
                    payload: Some(b"payload".to_vec()),
                    headers: vec![],
                    attempt: 1,
                },
                Message {
                    topic: "orders".into(),
                    partition: 3,
                    offset: 8,
                    timestamp: None,
                    key: None,
                    payload: Some(vec![]),
                    headers: vec![
                        header("trace", None),
                        header("é", Some(b"")),
                        header("trace", Some(b"2")),
                    ],
                    attempt: 3,
                },
            ]
        );
    }

    #[test]
    fn decodes_only_what_the_batch_reaches() {
        let records = two();
        let mut messages = PackedMessages::new("orders", 3, 2, &records);
        assert_eq!(messages.next().map(|m| m.offset), Some(7));
        assert_eq!(messages.size_hint(), (1, Some(1)));
        // The second message is still bytes.
        assert_eq!(
            messages.rest.len(),
            records.len() - (8 + 8 + 4 + 5 + 11 + 4)
        );
    }

    #[test]
    #[should_panic(expected = "the buffer ends inside a message's payload")]
    fn a_buffer_cut_short_names_the_field() {
        let records = two();
        PackedMessages::new("orders", 3, 2, &records[..30]).for_each(drop);
    }
}
