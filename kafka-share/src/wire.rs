//! Hand-written codecs for ShareFetch and ShareAcknowledge, and record-batch helpers.
//!
//! kafka-protocol 0.18 generates these messages for version 1 only, but Kafka 4.2+ offers
//! version 2 (KIP-1206 ShareAcquireMode, KIP-1222 IsRenewAck / RENEW acknowledgements). The
//! request encoders below speak both versions; unit tests check that their version-1 bytes
//! equal kafka-protocol's. ShareFetchResponse v2 has the same layout as v1, so that response is
//! decoded with kafka-protocol; ShareAcknowledgeResponse v2 adds AcquisitionLockTimeoutMs and is
//! decoded here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// Acknowledge type 0: an offset inside an acquired range that holds no record for the
/// application (a control record or a compacted-away offset).
pub(crate) const ACK_GAP: i8 = 0;

/// One AcknowledgementBatch: offsets `first..=last`, either one type for all of them or one
/// type per offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AckBatch {
    pub first: i64,
    pub last: i64,
    pub types: Vec<i8>,
}

/// Packs acknowledgements (sorted by offset) into batches of consecutive offsets.
pub(crate) fn ack_batches(acks: impl IntoIterator<Item = (i64, i8)>) -> Vec<AckBatch> {
    let mut out: Vec<AckBatch> = Vec::new();
    for (offset, ty) in acks {
        match out.last_mut() {
            Some(b) if b.last + 1 == offset => {
                b.last = offset;
                b.types.push(ty);
            }
            _ => out.push(AckBatch {
                first: offset,
                last: offset,
                types: vec![ty],
            }),
        }
    }
    // A single type stands for the whole range, which keeps long runs small on the wire.
    for b in &mut out {
        if b.types.iter().all(|t| *t == b.types[0]) {
            b.types.truncate(1);
        }
    }
    out
}

/// Acknowledgements for one partition.
#[derive(Clone, Debug)]
pub(crate) struct PartitionAcks {
    pub partition: i32,
    pub batches: Vec<AckBatch>,
}

/// Topics of a ShareFetch/ShareAcknowledge request: topic id -> partitions.
pub(crate) type TopicAcks = Vec<(Uuid, Vec<PartitionAcks>)>;

pub(crate) struct FetchParams<'a> {
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub session_epoch: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub max_records: i32,
    pub batch_size: i32,
    /// v2+: 0 batch-optimized, 1 record-limit.
    pub acquire_mode: i8,
}

struct W(BytesMut);

impl W {
    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.0.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.put_u8(v as u8);
    }
    fn compact_len(&mut self, n: usize) {
        self.uvarint(n as u32 + 1);
    }
    fn nullable_str(&mut self, s: Option<&str>) {
        match s {
            None => self.uvarint(0),
            Some(s) => {
                self.compact_len(s.len());
                self.0.put_slice(s.as_bytes());
            }
        }
    }
    fn uuid(&mut self, id: &Uuid) {
        self.0.put_slice(id.as_bytes());
    }
    fn no_tags(&mut self) {
        self.uvarint(0);
    }
    fn ack_partitions(&mut self, partitions: &[PartitionAcks]) {
        self.compact_len(partitions.len());
        for p in partitions {
            self.0.put_i32(p.partition);
            self.compact_len(p.batches.len());
            for b in &p.batches {
                self.0.put_i64(b.first);
                self.0.put_i64(b.last);
                self.compact_len(b.types.len());
                for t in &b.types {
                    self.0.put_i8(*t);
                }
                self.no_tags();
            }
            self.no_tags();
        }
    }
}

/// ShareFetchRequest body, version 1 or 2.
pub(crate) fn encode_share_fetch(
    version: i16,
    p: &FetchParams<'_>,
    topics: &TopicAcks,
    forgotten: &[(Uuid, Vec<i32>)],
) -> BytesMut {
    let mut w = W(BytesMut::with_capacity(128));
    w.nullable_str(Some(p.group_id));
    w.nullable_str(Some(p.member_id));
    w.0.put_i32(p.session_epoch);
    w.0.put_i32(p.max_wait_ms);
    w.0.put_i32(p.min_bytes);
    w.0.put_i32(p.max_bytes);
    w.0.put_i32(p.max_records);
    w.0.put_i32(p.batch_size);
    if version >= 2 {
        w.0.put_i8(p.acquire_mode);
        // Renewals go in ShareAcknowledge: a ShareFetch with IsRenewAck may not fetch.
        w.0.put_u8(0);
    }
    w.compact_len(topics.len());
    for (id, parts) in topics {
        w.uuid(id);
        w.ack_partitions(parts);
        w.no_tags();
    }
    w.compact_len(forgotten.len());
    for (id, parts) in forgotten {
        w.uuid(id);
        w.compact_len(parts.len());
        for p in parts {
            w.0.put_i32(*p);
        }
        w.no_tags();
    }
    w.no_tags();
    w.0
}

/// ShareAcknowledgeRequest body, version 1 or 2.
pub(crate) fn encode_share_ack(
    version: i16,
    group_id: &str,
    member_id: &str,
    session_epoch: i32,
    is_renew_ack: bool,
    topics: &TopicAcks,
) -> BytesMut {
    let mut w = W(BytesMut::with_capacity(128));
    w.nullable_str(Some(group_id));
    w.nullable_str(Some(member_id));
    w.0.put_i32(session_epoch);
    if version >= 2 {
        w.0.put_u8(is_renew_ack as u8);
    }
    w.compact_len(topics.len());
    for (id, parts) in topics {
        w.uuid(id);
        w.ack_partitions(parts);
        w.no_tags();
    }
    w.no_tags();
    w.0
}

#[derive(Debug, Default)]
pub(crate) struct AckPartitionResult {
    pub topic_id: Uuid,
    pub partition: i32,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub leader_id: i32,
}

#[derive(Debug, Default)]
pub(crate) struct AckResponse {
    pub error_code: i16,
    pub error_message: Option<String>,
    /// v2+ only.
    pub lock_timeout_ms: Option<i32>,
    pub partitions: Vec<AckPartitionResult>,
    /// Endpoints of new leaders named in NOT_LEADER_OR_FOLLOWER answers: (node, host, port).
    pub node_endpoints: Vec<(i32, String, i32)>,
}

struct R(Bytes);

impl R {
    fn need(&self, n: usize) -> Result<(), String> {
        if self.0.remaining() < n {
            Err(format!(
                "truncated: {n} bytes needed, {} left",
                self.0.remaining()
            ))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn uvarint(&mut self) -> Result<u32, String> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            self.need(1)?;
            let b = self.0.get_u8();
            v |= ((b & 0x7f) as u32) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("unsigned varint longer than 5 bytes".into())
    }
    /// A compact array length; None for a null array.
    fn compact_len(&mut self) -> Result<Option<usize>, String> {
        Ok(self.uvarint()?.checked_sub(1).map(|n| n as usize))
    }
    fn nullable_str(&mut self, what: &str) -> Result<Option<String>, String> {
        let Some(n) = self.compact_len()? else {
            return Ok(None);
        };
        self.need(n)?;
        let raw = self.0.split_to(n);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| format!("{what} is not UTF-8"))
    }
    fn uuid(&mut self) -> Result<Uuid, String> {
        self.need(16)?;
        let mut b = [0u8; 16];
        self.0.copy_to_slice(&mut b);
        Ok(Uuid::from_bytes(b))
    }
    fn skip_tags(&mut self) -> Result<(), String> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.need(size)?;
            self.0.advance(size);
        }
        Ok(())
    }
}

/// ShareAcknowledgeResponse body, version 1 or 2.
pub(crate) fn decode_share_ack_response(body: Bytes, version: i16) -> Result<AckResponse, String> {
    let mut r = R(body);
    let mut out = AckResponse::default();
    let _throttle_ms = r.i32()?;
    out.error_code = r.i16()?;
    out.error_message = r.nullable_str("ErrorMessage")?;
    if version >= 2 {
        out.lock_timeout_ms = Some(r.i32()?);
    }
    for _ in 0..r.compact_len()?.unwrap_or(0) {
        let topic_id = r.uuid()?;
        for _ in 0..r.compact_len()?.unwrap_or(0) {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let error_message = r.nullable_str("ErrorMessage")?;
            let leader_id = r.i32()?;
            let _leader_epoch = r.i32()?;
            r.skip_tags()?;
            r.skip_tags()?;
            out.partitions.push(AckPartitionResult {
                topic_id,
                partition,
                error_code,
                error_message,
                leader_id,
            });
        }
        r.skip_tags()?;
    }
    for _ in 0..r.compact_len()?.unwrap_or(0) {
        let node = r.i32()?;
        let host = r.nullable_str("Host")?.unwrap_or_default();
        let port = r.i32()?;
        let _rack = r.nullable_str("Rack")?;
        r.skip_tags()?;
        out.node_endpoints.push((node, host, port));
    }
    r.skip_tags()?;
    Ok(out)
}

/// One complete record batch of a fetch response, with its offset span.
pub(crate) struct RawBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Bytes,
}

/// Splits the records of a fetch response into whole batches. A response may end with a
/// truncated batch (the broker cuts at the byte limit); that tail is dropped.
pub(crate) fn split_batches(mut records: Bytes) -> Vec<RawBatch> {
    const HEADER: usize = 61; // v2 batch header size, up to and including the record count
    let mut out = Vec::new();
    while records.len() >= 12 {
        let base_offset = i64::from_be_bytes(records[0..8].try_into().unwrap());
        let len = i32::from_be_bytes(records[8..12].try_into().unwrap());
        if len < 0 {
            break;
        }
        let total = 12 + len as usize;
        if records.len() < total || total < HEADER {
            break;
        }
        let delta = i32::from_be_bytes(records[23..27].try_into().unwrap());
        out.push(RawBatch {
            base_offset,
            last_offset: base_offset + delta as i64,
            bytes: records.split_to(total),
        });
    }
    out
}

#[cfg(test)]
mod tests;
