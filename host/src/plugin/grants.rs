//! Capabilities a tenant's guests may be granted. The default grants nothing: no files, no
//! environment, no network.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// What a guest may reach beyond its message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// A host directory the guest may read (never write), mounted at a guest path.
    pub read_only_dir: Option<DirGrant>,
    /// Environment variables the guest sees, with their values resolved when the config loads.
    pub env: Vec<(String, String)>,
    /// Hosts (`name` or `name:port`, `*.suffix` for subdomains) the guest may send HTTP
    /// requests to through `wasi:http`. Empty: every request is denied.
    pub http_hosts: Vec<String>,
}

/// A host directory the guest may read, mounted read-only at a guest path.
#[derive(Debug, Clone, PartialEq)]
pub struct DirGrant {
    /// The directory on the host, resolved against the config file's folder; it must exist.
    pub host: PathBuf,
    /// Where the guest sees it: an absolute guest path such as `/data`.
    pub guest: String,
}

impl Grants {
    /// Adds the directory and environment grants to a WASI context under construction.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        if let Some(dir) = &self.read_only_dir {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| anyhow::anyhow!("granted directory {}: {e:#}", dir.host.display()))?;
        }
        wasi.envs(&self.env);
        Ok(())
    }

    /// Whether `authority` (`host` or `host:port` from a request URI) is on the allow-list.
    pub(crate) fn allows_http(&self, authority: &str, default_port: u16) -> bool {
        let (host, port) = split_authority(authority, default_port);
        self.http_hosts.iter().any(|pattern| {
            let (pattern_host, pattern_port) = match pattern.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().ok()),
                None => (pattern.as_str(), None),
            };
            let host_matches = match pattern_host.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                None => host.eq_ignore_ascii_case(pattern_host),
            };
            host_matches && pattern_port.is_none_or(|p| p == port)
        })
    }
}

fn split_authority(authority: &str, default_port: u16) -> (String, u16) {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            match port.parse() {
                Ok(port) => (host.to_ascii_lowercase(), port),
                Err(_) => (authority.to_ascii_lowercase(), default_port),
            }
        }
        _ => (authority.to_ascii_lowercase(), default_port),
    }
}

/// The `wasi:http` gate of one instance: requests to hosts off the allow-list are denied before
/// any connection is made, and every timeout is capped by the call's deadline, because a host
/// call cannot be interrupted by the epoch.
pub(crate) struct HttpGate {
    pub grants: Arc<Grants>,
    pub deadline: Duration,
}

type ResponseFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let default_port = match request.uri().scheme_str() {
            Some("http") => 80,
            _ => 443,
        };
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        if !self.grants.allows_http(&authority, default_port) {
            tracing::debug!(%authority, "guest HTTP request denied: host not granted");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let cap = |t: Option<Duration>| Some(t.map_or(self.deadline, |t| t.min(self.deadline)));
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        let _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_allow_list_matches_host_port_and_subdomains() {
        let grants = Grants {
            http_hosts: vec![
                "api.example.com".into(),
                "127.0.0.1:8080".into(),
                "*.internal.net".into(),
            ],
            ..Grants::default()
        };
        let allowed = |a: &str| grants.allows_http(a, 443);
        assert!(allowed("api.example.com"));
        assert!(allowed("API.example.com:8443"));
        assert!(allowed("127.0.0.1:8080"));
        assert!(!allowed("127.0.0.1:8081"));
        assert!(!allowed("127.0.0.1"));
        assert!(allowed("db.internal.net"));
        assert!(!allowed("internal.net"));
        assert!(!allowed("evilinternal.net"));
        assert!(!allowed("api.example.com.evil.org"));
        assert!(!allowed("user@evil.org"));
        assert!(!Grants::default().allows_http("api.example.com", 443));
    }
}
