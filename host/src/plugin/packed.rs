//! World `packed-batch-handler`: a batch's messages packed into one buffer, so the batch
//! crosses into the sandbox as one `list<u8>` (one allocation in the guest, one copy) instead
//! of being lowered field by field with an allocation in the guest per key, payload, header and
//! string. The layout is the contract's (`wit/ackbar.wit`); the SDKs decode it.

use crate::bindings::{Message, MessageFields};

/// The export of world `packed-batch-handler`.
pub const PACKED_EXPORT: &str = "handle-packed-batch";

/// A length that stands for "absent": no key, no payload, a header without a value.
const ABSENT: u32 = u32::MAX;

/// The timestamp of a record without one.
const NO_TIMESTAMP: i64 = i64::MIN;

/// Bytes of a message's fixed fields: offset, timestamp, attempt, key and payload lengths and
/// the header count.
const FIXED: usize = 8 + 8 + 4 + 4 + 4 + 4;

/// A batch's messages in the form the plugin takes them.
#[derive(Clone, Copy)]
pub enum BatchMessages<'a> {
    /// Packed into one buffer, for `handle-packed-batch`.
    Packed(&'a PackedBatch),
    /// As they are, for `handle-batch`.
    Listed(&'a [Message]),
}

impl BatchMessages<'_> {
    /// The offset of the batch's first message.
    pub(super) fn first_offset(&self) -> Option<i64> {
        match self {
            BatchMessages::Packed(packed) => packed.first_offset,
            BatchMessages::Listed(messages) => messages.first().map(|m| m.offset),
        }
    }
}

/// Messages of one partition packed for `handle-packed-batch`; the worker keeps the messages
/// themselves, so they need not be copied again when the guest has handled them.
#[derive(Debug)]
pub struct PackedBatch {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) count: u32,
    pub(super) records: Vec<u8>,
    first_offset: Option<i64>,
}

impl PackedBatch {
    /// `messages` of `topic`'s `partition` packed, each copied once, straight from where it is
    /// kept.
    pub fn of<M: MessageFields>(topic: &str, partition: i32, messages: &[M]) -> Self {
        PackedBatch {
            topic: topic.to_string(),
            partition,
            count: u32::try_from(messages.len()).expect("a batch is bounded"),
            records: pack(messages),
            first_offset: messages.first().map(M::offset),
        }
    }
}

#[cfg(test)]
impl PackedBatch {
    pub(crate) fn records(&self) -> &[u8] {
        &self.records
    }
}

/// `messages` in the layout of `handle-packed-batch`.
fn pack<M: MessageFields>(messages: &[M]) -> Vec<u8> {
    let mut out = Vec::with_capacity(messages.iter().map(packed_len).sum());
    for message in messages {
        out.extend_from_slice(&message.offset().to_le_bytes());
        out.extend_from_slice(&message.timestamp().unwrap_or(NO_TIMESTAMP).to_le_bytes());
        out.extend_from_slice(&message.attempt().to_le_bytes());
        put_optional(&mut out, message.key());
        put_optional(&mut out, message.payload());
        // The count goes before the headers; it is written once they are.
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut count = 0;
        message.for_each_header(&mut |name, value| {
            put_optional(&mut out, Some(String::from_utf8_lossy(name).as_bytes()));
            put_optional(&mut out, value);
            count += 1;
        });
        out[count_at..count_at + 4].copy_from_slice(&length(count).to_le_bytes());
    }
    out
}

/// How many bytes `message` takes in the layout (a header name that is not UTF-8 may take a
/// few more).
fn packed_len<M: MessageFields>(message: &M) -> usize {
    let mut headers = 0;
    message.for_each_header(&mut |_, _| headers += 1);
    FIXED + message.bytes() + 8 * headers
}

fn put_optional(into: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            into.extend_from_slice(&length(bytes.len()).to_le_bytes());
            into.extend_from_slice(bytes);
        }
        None => into.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Kafka encodes every length in a record as a signed 32-bit varint, and a batch is bounded far
/// below that, so a length never reaches [`ABSENT`].
fn length(len: usize) -> u32 {
    u32::try_from(len)
        .ok()
        .filter(|&len| len != ABSENT)
        .expect("a Kafka record's lengths fit in 31 bits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Header;

    fn message(offset: i64) -> Message {
        Message {
            topic: "orders".into(),
            partition: 3,
            offset,
            timestamp: Some(1_700_000_000_123),
            key: Some(b"k".to_vec()),
            payload: Some(b"payload".to_vec()),
            headers: vec![],
            attempt: 1,
        }
    }

    #[test]
    fn the_layout_is_the_one_the_contract_describes_byte_for_byte() {
        let absent = Message {
            timestamp: None,
            key: None,
            payload: None,
            headers: vec![
                Header {
                    key: "h".into(),
                    value: None,
                },
                Header {
                    key: "é".into(),
                    value: Some(vec![]),
                },
            ],
            attempt: 2,
            ..message(-1)
        };
        let messages = [message(7), absent];
        let packed = pack(&messages);
        let mut expected = Vec::new();
        expected.extend_from_slice(&7i64.to_le_bytes());
        expected.extend_from_slice(&1_700_000_000_123i64.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&[1, 0, 0, 0, b'k']);
        expected.extend_from_slice(&[7, 0, 0, 0]);
        expected.extend_from_slice(b"payload");
        expected.extend_from_slice(&[0, 0, 0, 0]);
        expected.extend_from_slice(&(-1i64).to_le_bytes());
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80]);
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&[0xFF; 8]);
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(&[1, 0, 0, 0, b'h', 0xFF, 0xFF, 0xFF, 0xFF]);
        expected.extend_from_slice(&[2, 0, 0, 0, 0xC3, 0xA9, 0, 0, 0, 0]);
        assert_eq!(packed, expected);
        let reserved: usize = messages.iter().map(packed_len).sum();
        assert_eq!(
            reserved,
            packed.len(),
            "the reserve is what the layout takes"
        );
    }
}
