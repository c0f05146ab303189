//! Record batches (magic v2) as fetched: the records of one batch, every header in order.
//!
//! `kafka-protocol` decodes a record's headers into a map, which keeps only the last value of a
//! repeated key. Kafka allows repeated keys, and a consumer must hand on what the producer
//! wrote, so the records are read here; decompression is still `kafka-protocol`'s.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{self as cmpr, Decompressor};

/// One record of a batch.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In the order written, repeated keys included.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A decoded batch.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Transaction markers: nothing for the application.
    pub control: bool,
    /// By offset.
    pub records: Vec<Record>,
}

/// Size of the v2 batch header, up to and including the record count.
const HEADER: usize = 61;

/// Decodes one whole batch (as split off by `wire::split_batches`).
pub(crate) fn decode(batch: &Bytes) -> Result<Batch, String> {
    if batch.len() < HEADER {
        return Err(format!(
            "a batch of {} bytes is shorter than its header",
            batch.len()
        ));
    }
    let magic = batch[16] as i8;
    if magic != 2 {
        return Err(format!(
            "record format v{magic} (Kafka 4 reads and writes v2 only)"
        ));
    }
    let mut header = batch.slice(0..HEADER);
    let base_offset = header.get_i64();
    header.advance(4 + 4 + 1 + 4); // length, leader epoch, magic, CRC
    let attributes = header.get_i16();
    header.advance(4); // last offset delta
    let base_timestamp = header.get_i64();
    let max_timestamp = header.get_i64();
    header.advance(8 + 2 + 4); // producer id and epoch, base sequence
    let count = header.get_i32();
    if count < 0 {
        return Err(format!("negative record count {count}"));
    }
    // With LogAppendTime (bit 3) every record carries the time the broker appended the batch.
    let log_append_time = attributes & (1 << 3) != 0;
    let control = attributes & (1 << 5) != 0;
    let mut body = batch.slice(HEADER..);
    let parse = |buf: &mut Bytes| -> anyhow::Result<Vec<Record>> {
        let mut records = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let mut record = read_record(buf, base_offset, base_timestamp)?;
            if log_append_time {
                record.timestamp = max_timestamp;
            }
            records.push(record);
        }
        Ok(records)
    };
    let records = match attributes & 0x7 {
        0 => cmpr::None::decompress(&mut body, parse),
        1 => cmpr::Gzip::decompress(&mut body, parse),
        2 => cmpr::Snappy::decompress(&mut body, parse),
        3 => cmpr::Lz4::decompress(&mut body, parse),
        4 => cmpr::Zstd::decompress(&mut body, parse),
        other => return Err(format!("unknown compression codec {other}")),
    }
    .map_err(|e| format!("{e:#}"))?;
    let mut records = records;
    records.sort_by_key(|r| r.offset);
    Ok(Batch { control, records })
}

fn read_record(buf: &mut Bytes, base_offset: i64, base_timestamp: i64) -> anyhow::Result<Record> {
    let size = varint(buf)?;
    let mut r = take(buf, size, "record")?;
    r.advance(1.min(r.remaining())); // attributes: unused in v2
    let timestamp = base_timestamp + varlong(&mut r)?;
    let offset = base_offset + varint(&mut r)? as i64;
    let key = nullable(&mut r, "key")?;
    let value = nullable(&mut r, "value")?;
    let count = varint(&mut r)?;
    if count < 0 {
        anyhow::bail!("negative header count {count}");
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key_len = varint(&mut r)?;
        let key = take(&mut r, key_len, "header key")?;
        let value = nullable(&mut r, "header value")?;
        headers.push((String::from_utf8_lossy(&key).into_owned(), value));
    }
    Ok(Record {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}

/// `len` bytes, or an error naming `what` when the buffer is shorter or `len` negative.
fn take(buf: &mut Bytes, len: i32, what: &str) -> anyhow::Result<Bytes> {
    if len < 0 || buf.remaining() < len as usize {
        anyhow::bail!("{what} of {len} bytes with {} left", buf.remaining());
    }
    Ok(buf.split_to(len as usize))
}

/// A length-prefixed field where -1 means null.
fn nullable(buf: &mut Bytes, what: &str) -> anyhow::Result<Option<Bytes>> {
    match varint(buf)? {
        -1 => Ok(None),
        len => take(buf, len, what).map(Some),
    }
}

/// A zig-zag varint (at most 5 bytes).
fn varint(buf: &mut Bytes) -> anyhow::Result<i32> {
    let v = varlong(buf)?;
    i32::try_from(v).map_err(|_| anyhow::anyhow!("varint {v} out of range"))
}

/// A zig-zag varlong (at most 10 bytes).
fn varlong(buf: &mut Bytes) -> anyhow::Result<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            anyhow::bail!("truncated varint");
        }
        let byte = buf.get_u8();
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    anyhow::bail!("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::compression::Compressor;

    fn put_varlong(buf: &mut BytesMut, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            buf.put_u8((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        buf.put_u8(z as u8);
    }

    fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
        match b {
            None => put_varlong(buf, -1),
            Some(b) => {
                put_varlong(buf, b.len() as i64);
                buf.put_slice(b);
            }
        }
    }

    type Headers<'a> = &'a [(&'a str, Option<&'a [u8]>)];

    /// The records section: (offset delta, value, headers).
    fn records(recs: &[(i64, &[u8], Headers<'_>)]) -> BytesMut {
        let mut out = BytesMut::new();
        for (delta, value, headers) in recs {
            let mut r = BytesMut::new();
            r.put_i8(0);
            put_varlong(&mut r, *delta * 10); // timestamp delta
            put_varlong(&mut r, *delta);
            put_bytes(&mut r, None);
            put_bytes(&mut r, Some(value));
            put_varlong(&mut r, headers.len() as i64);
            for (k, v) in *headers {
                put_bytes(&mut r, Some(k.as_bytes()));
                put_bytes(&mut r, *v);
            }
            put_varlong(&mut out, r.len() as i64);
            out.put_slice(&r);
        }
        out
    }

    fn batch(base_offset: i64, codec: i16, count: i32, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i64(base_offset);
        b.put_i32((HEADER - 12 + body.len()) as i32);
        b.put_i32(0); // leader epoch
        b.put_i8(2);
        b.put_u32(0); // CRC, not checked here
        b.put_i16(codec);
        b.put_i32(count - 1);
        b.put_i64(1_000); // base timestamp
        b.put_i64(1_000 + 10 * (count as i64 - 1));
        b.put_i64(-1);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i32(count);
        b.put_slice(body);
        b.freeze()
    }

    const HEADERS: Headers<'static> = &[
        ("trace", Some(b"a")),
        ("tag", Some(b"x")),
        ("trace", Some(b"b")),
        ("empty", None),
    ];

    fn check(decoded: &Batch) {
        assert!(!decoded.control);
        assert_eq!(decoded.records.len(), 2);
        let r = &decoded.records[1];
        assert_eq!((r.offset, r.timestamp), (101, 1_010));
        assert_eq!(r.value.as_deref(), Some(&b"second"[..]));
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            headers, HEADERS,
            "every header, in order, repeated keys too"
        );
    }

    #[test]
    fn repeated_header_keys_are_kept_in_order() {
        let body = records(&[(0, b"first", &[]), (1, b"second", HEADERS)]);
        let decoded = decode(&batch(100, 0, 2, &body)).unwrap();
        assert_eq!(decoded.records[0].value.as_deref(), Some(&b"first"[..]));
        check(&decoded);
    }

    #[test]
    fn compressed_batches_are_decompressed() {
        fn compressed<C: Compressor<BytesMut, BufMut = BytesMut>>(body: &[u8]) -> BytesMut {
            let mut out = BytesMut::new();
            C::compress(&mut out, |buf: &mut BytesMut| {
                buf.put_slice(body);
                Ok(())
            })
            .unwrap();
            out
        }
        let body = records(&[(0, b"first", &[]), (1, b"second", HEADERS)]);
        check(&decode(&batch(100, 1, 2, &compressed::<cmpr::Gzip>(&body))).unwrap());
        check(&decode(&batch(100, 4, 2, &compressed::<cmpr::Zstd>(&body))).unwrap());
    }

    #[test]
    fn bad_batches_are_named() {
        let body = records(&[(0, b"first", &[])]);
        let e = decode(&batch(0, 0, 2, &body)).unwrap_err();
        assert!(e.contains("truncated varint"), "{e}");
        let e = decode(&batch(0, 6, 1, &body)).unwrap_err();
        assert!(e.contains("unknown compression codec 6"), "{e}");
        let mut old = batch(0, 0, 1, &body).to_vec();
        old[16] = 1;
        let e = decode(&Bytes::from(old)).unwrap_err();
        assert!(e.contains("record format v1"), "{e}");
        assert_eq!(varlong(&mut Bytes::from_static(&[0x01])).unwrap(), -1);
        assert_eq!(
            varlong(&mut Bytes::from_static(&[0xac, 0x02])).unwrap(),
            150
        );
    }
}
