//! One TCP connection to one broker: framing, correlation ids, the ApiVersions handshake.
//!
//! A connection carries one request at a time. Share sessions are bound to the connection
//! they were opened on (the broker drops a session, and releases its records, when the
//! connection closes), so the consumer keeps exactly one connection per leader.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Largest response frame accepted; guards against reading garbage as a length.
const MAX_FRAME: usize = 512 * 1024 * 1024;

/// A request type of kafka-protocol together with its API key and response type.
/// (kafka-protocol's own `Request` trait needs its "broker" feature.)
pub(crate) trait Api: Encodable + HeaderVersion {
    const KEY: ApiKey;
    type Response: Decodable + HeaderVersion;
}

macro_rules! apis {
    ($($req:ty => $resp:ty, $key:ident;)*) => {
        $(impl Api for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        })*
    };
}

apis! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions;
    MetadataRequest => MetadataResponse, Metadata;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    ShareGroupHeartbeatRequest => ShareGroupHeartbeatResponse, ShareGroupHeartbeat;
    IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse, IncrementalAlterConfigs;
    DescribeShareGroupOffsetsRequest => DescribeShareGroupOffsetsResponse, DescribeShareGroupOffsets;
}

pub(crate) fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::ShareGroupHeartbeat => "ShareGroupHeartbeat",
        ApiKey::ShareFetch => "ShareFetch",
        ApiKey::ShareAcknowledge => "ShareAcknowledge",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeShareGroupOffsets => "DescribeShareGroupOffsets",
        _ => "other",
    }
}

/// Who a connection talks to, for error messages: "node 1 (127.0.0.1:9092)".
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub node_id: Option<i32>,
    pub addr: String,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node_id {
            Some(id) => write!(f, "broker {id} ({})", self.addr),
            None => write!(f, "bootstrap broker {}", self.addr),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ConnOpts {
    pub client_id: String,
    pub request_timeout: Duration,
}

pub(crate) struct Conn {
    stream: TcpStream,
    pub peer: Peer,
    client_id: StrBytes,
    next_correlation: i32,
    request_timeout: Duration,
    /// API key -> (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
    /// Finalized feature levels (e.g. "share.version") from ApiVersions.
    pub features: HashMap<String, i16>,
    /// A request was written and its response not yet read.
    pending_response: bool,
}

impl Conn {
    /// Connects and performs the ApiVersions handshake.
    pub async fn connect(addr: &str, node_id: Option<i32>, opts: &ConnOpts) -> Result<Conn> {
        let peer = Peer {
            node_id,
            addr: addr.to_owned(),
        };
        let io_err = |e: std::io::Error| Error::Io {
            broker: peer.to_string(),
            api: "connect",
            kind: e.kind(),
            message: e.to_string(),
        };
        let stream = tokio::time::timeout(opts.request_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                broker: peer.to_string(),
                api: "connect",
                timeout_ms: opts.request_timeout.as_millis() as u64,
            })?
            .map_err(io_err)?;
        stream.set_nodelay(true).map_err(io_err)?;
        let mut conn = Conn {
            stream,
            peer,
            client_id: StrBytes::from_string(opts.client_id.clone()),
            next_correlation: 1,
            request_timeout: opts.request_timeout,
            versions: HashMap::new(),
            features: HashMap::new(),
            pending_response: false,
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from("kafka-share"))
            .with_client_software_version(StrBytes::from(env!("CARGO_PKG_VERSION")));
        let resp = conn.call(&req, 3).await?;
        if resp.error_code != 0 {
            return Err(Error::broker(
                &conn.peer,
                "ApiVersions",
                resp.error_code,
                "",
                None,
            ));
        }
        conn.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        conn.features = resp
            .finalized_features
            .iter()
            .map(|f| (f.name.as_str().to_owned(), f.max_version_level))
            .collect();
        Ok(conn)
    }

    /// The highest version of `key` that both the broker and this client (`ours`) support.
    pub fn version(&self, key: ApiKey, ours: (i16, i16)) -> Result<i16> {
        let Some(&(min, max)) = self.versions.get(&(key as i16)) else {
            return Err(Error::Unsupported {
                broker: self.peer.to_string(),
                detail: format!("the broker does not offer the {} API", api_name(key)),
            });
        };
        let (lo, hi) = (min.max(ours.0), max.min(ours.1));
        if lo > hi {
            return Err(Error::Unsupported {
                broker: self.peer.to_string(),
                detail: format!(
                    "{} versions {min}..={max} offered, this client speaks {}..={}",
                    api_name(key),
                    ours.0,
                    ours.1
                ),
            });
        }
        Ok(hi)
    }

    pub fn awaiting_response(&self) -> bool {
        self.pending_response
    }

    pub fn supports(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.versions.get(&(key as i16)).copied()
    }

    fn io_error(&self, api: &'static str, e: std::io::Error) -> Error {
        Error::Io {
            broker: self.peer.to_string(),
            api,
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// Writes one request frame whose body is already encoded; returns its correlation id.
    pub async fn send(&mut self, key: ApiKey, version: i16, body: &[u8]) -> Result<i32> {
        let api = api_name(key);
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::with_capacity(body.len() + 64);
        frame.put_i32(0);
        header
            .encode(&mut frame, key.request_header_version(version))
            .map_err(|e| self.protocol(api, format!("request header: {e}")))?;
        frame.extend_from_slice(body);
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.pending_response = true;
        let write = self.stream.write_all(&frame);
        match tokio::time::timeout(self.request_timeout, write).await {
            Err(_) => Err(self.timeout(api, self.request_timeout)),
            Ok(Err(e)) => Err(self.io_error(api, e)),
            Ok(Ok(())) => Ok(correlation_id),
        }
    }

    /// Reads the response to `correlation_id`, waiting at most `wait` beyond the request
    /// timeout (long-polling fetches pass their max wait here). Returns the body.
    pub async fn recv(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        wait: Duration,
    ) -> Result<Bytes> {
        let api = api_name(key);
        let limit = self.request_timeout + wait;
        let frame = match tokio::time::timeout(limit, self.read_frame(api)).await {
            Err(_) => return Err(self.timeout(api, limit)),
            Ok(r) => r?,
        };
        self.pending_response = false;
        let mut buf = frame;
        let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .map_err(|e| self.protocol(api, format!("response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol(
                api,
                format!(
                    "correlation id {} in response, {correlation_id} expected",
                    header.correlation_id
                ),
            ));
        }
        Ok(buf)
    }

    async fn read_frame(&mut self, api: &'static str) -> Result<Bytes> {
        let len = self
            .stream
            .read_i32()
            .await
            .map_err(|e| self.io_error(api, e))?;
        if len < 0 || len as usize > MAX_FRAME {
            return Err(self.protocol(api, format!("response frame length {len}")));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| self.io_error(api, e))?;
        Ok(Bytes::from(buf))
    }

    /// Sends a kafka-protocol request and decodes its response.
    pub async fn call<R: Api>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let api = api_name(R::KEY);
        let mut body = BytesMut::new();
        req.encode(&mut body, version)
            .map_err(|e| self.protocol(api, format!("encoding v{version}: {e}")))?;
        let correlation_id = self.send(R::KEY, version, &body).await?;
        let mut resp = self
            .recv(R::KEY, version, correlation_id, Duration::ZERO)
            .await?;
        let decoded = R::Response::decode(&mut resp, version)
            .map_err(|e| self.protocol(api, format!("decoding v{version}: {e}")))?;
        if resp.has_remaining() {
            tracing::debug!(
                api,
                remaining = resp.remaining(),
                "response has trailing bytes"
            );
        }
        Ok(decoded)
    }

    pub fn protocol(&self, api: &'static str, detail: String) -> Error {
        Error::Protocol {
            broker: self.peer.to_string(),
            api,
            detail,
        }
    }

    fn timeout(&self, api: &'static str, after: Duration) -> Error {
        Error::Timeout {
            broker: self.peer.to_string(),
            api,
            timeout_ms: after.as_millis() as u64,
        }
    }
}

/// Splits "host1:9092,host2:9092" into addresses.
pub(crate) fn bootstrap_addrs(bootstrap: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Err(Error::Usage("bootstrap: no broker address given".into()));
    }
    Ok(addrs)
}

/// Connects to the first bootstrap broker that answers.
pub(crate) async fn connect_any(addrs: &[String], opts: &ConnOpts) -> Result<Conn> {
    let mut last = None;
    for addr in addrs {
        match Conn::connect(addr, None, opts).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "bootstrap broker unreachable");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Usage("bootstrap: no broker address given".into())))
}
