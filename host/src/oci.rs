//! Handler components in OCI registries: publish a component under a tag, resolve a tag to the
//! digests that pin it, and fetch exactly those bytes again, checked.
//!
//! The layout is the Wasm OCI artifact that `wkg oci push` writes (via `oci-wasm`): an image
//! manifest whose config is `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`. A deploy pins a [`PinnedComponent`] (manifest digest and
//! component digest) once, so a tag moved later changes nothing for it: [`pull`] fetches the
//! manifest by its digest and checks both digests.
//!
//! Errors say whether a later try may work ([`OciError::Unreachable`]) or not
//! ([`OciError::Refused`]).

use crate::control::{PluginDigest, MAX_PLUGIN_BYTES};
use base64::Engine as _;
use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{
    ToConfig as _, WasmConfig, WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE,
    WASM_MANIFEST_MEDIA_TYPE,
};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A stopped registry refuses connections at once; this bounds a host that does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A registry that stops sending in the middle of a component.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What `oci://` references start with.
pub const SCHEME: &str = "oci://";

/// Where a component lives: `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OciReference {
    registry: String,
    repository: String,
    tag: String,
    digest: Option<String>,
}

impl OciReference {
    /// Parses `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`; without a tag the tag is
    /// `latest`. Errors name the part that is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |what: String| Err(format!("OCI reference {text:?}: {what}"));
        let Some(rest) = text.strip_prefix(SCHEME) else {
            return bad(format!(
                "must start with {SCHEME} (oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX])"
            ));
        };
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (rest, None),
        };
        let Some((registry, path)) = name.split_once('/') else {
            return bad("no repository after the registry (oci://HOST[:PORT]/REPOSITORY)".into());
        };
        if let Err(e) = check_registry_name(registry) {
            return bad(e);
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag)),
            None => (path, None),
        };
        if let Err(e) = check_repository(repository) {
            return bad(e);
        }
        if let Some(tag) = tag {
            if let Err(e) = check_tag(tag) {
                return bad(e);
            }
        }
        if let Some(digest) = digest {
            if let Err(e) = check_manifest_digest(digest) {
                return bad(e);
            }
        }
        Ok(OciReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.unwrap_or("latest").to_string(),
            digest: digest.map(str::to_string),
        })
    }

    /// `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository's path in the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag (`latest` when the text named none).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The manifest digest this reference is pinned to, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same reference pinned to `manifest_digest` (`sha256:<hex>`).
    pub fn pinned(&self, manifest_digest: &str) -> Self {
        OciReference {
            digest: Some(manifest_digest.to_string()),
            ..self.clone()
        }
    }

    /// The reference as oci-client takes it: by digest when pinned, else by tag.
    fn client_reference(&self) -> Reference {
        match &self.digest {
            Some(digest) => Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            None => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.tag.clone(),
            ),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/{}:{}",
            self.registry, self.repository, self.tag
        )?;
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for OciReference {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        OciReference::parse(text)
    }
}

impl TryFrom<String> for OciReference {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        OciReference::parse(&text)
    }
}

impl From<OciReference> for String {
    fn from(reference: OciReference) -> String {
        reference.to_string()
    }
}

/// Checks `HOST[:PORT]` (a bracketed IPv6 address as `[::1]:5000`), as a reference or an
/// insecure-registry entry names a registry: no scheme, no path.
pub fn check_registry_name(registry: &str) -> Result<(), String> {
    if registry.contains("://") {
        return Err(format!(
            "registry {registry:?} is not HOST[:PORT]: give it without a scheme"
        ));
    }
    let (host, port) = split_host_port(registry);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
            && !host.starts_with(['.', '-'])
            && !host.ends_with(['.', '-'])
    };
    if !host_ok {
        return Err(format!(
            "registry {registry:?} is not HOST[:PORT] (a host name or IP address, no scheme or path)"
        ));
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!(
                "registry {registry:?}: port {port:?} is not a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

/// (host, port) of `HOST[:PORT]`; an IPv6 host keeps its brackets.
fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => match registry[end + 1..].strip_prefix(':') {
                Some(port) => (&registry[..=end], Some(port)),
                None => (registry, None),
            },
            None => (registry, None),
        }
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    }
}

/// Path components of lower-case letters and digits, joined inside by `.`, `_`, `__` or dashes
/// (the distribution spec's repository names).
fn check_repository(repository: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
    };
    if repository.is_empty() || !repository.split('/').all(component_ok) || repository.len() > 255 {
        return Err(format!(
            "repository {repository:?}: use lower-case letters and digits, separated by '.', '_', \
             '-' or '/'"
        ));
    }
    Ok(())
}

/// Up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if !ok {
        return Err(format!(
            "tag {tag:?}: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn check_manifest_digest(digest: &str) -> Result<(), String> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok {
        return Err(format!(
            "digest {digest:?}: expected sha256: and 64 lower-case hex digits"
        ));
    }
    Ok(())
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::text::hex(&Sha256::digest(bytes)))
}

/// A component pinned in a registry: the manifest (in `reference`, with its digest) and the
/// component's own digest, which is its layer's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinnedComponent {
    /// Where it is, pinned to the manifest's digest.
    pub reference: OciReference,
    /// `sha256:<hex>` of the component's bytes.
    pub component: PluginDigest,
}

/// What went wrong with a registry, and whether trying again later may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    /// The registry could not be reached or failed on its side (connection refused, timeout,
    /// 5xx, too many requests): a later try may work.
    #[error("{reference}: cannot reach the registry: {reason}")]
    Unreachable {
        /// The reference asked for.
        reference: String,
        /// What happened.
        reason: String,
    },
    /// The registry answered, and the answer will not do: not found, not authorized, not a
    /// Wasm component, or bytes that do not match their digest.
    #[error("{reference}: {reason}")]
    Refused {
        /// The reference asked for.
        reference: String,
        /// Why.
        reason: String,
    },
}

impl OciError {
    /// Whether a later try may work.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OciError::Unreachable { .. })
    }

    fn refused(reference: &OciReference, reason: impl Into<String>) -> Self {
        OciError::Refused {
            reference: reference.to_string(),
            reason: reason.into(),
        }
    }

    fn unreachable(reference: &OciReference, reason: impl Into<String>) -> Self {
        OciError::Unreachable {
            reference: reference.to_string(),
            reason: reason.into(),
        }
    }

    /// Sorts a client error into a retry or a refusal.
    fn from_client(reference: &OciReference, error: OciDistributionError) -> Self {
        let retry_status = |code: u16| code >= 500 || code == 408 || code == 429;
        match error {
            OciDistributionError::RequestError(e) => {
                let reason = error_chain(&e);
                match e.status() {
                    Some(status) if retry_status(status.as_u16()) => {
                        OciError::unreachable(reference, reason)
                    }
                    Some(_) => OciError::refused(reference, reason),
                    None if e.is_builder() || e.is_decode() => OciError::refused(reference, reason),
                    None => OciError::unreachable(reference, reason),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                let reason = format!("HTTP {code}: {}", message.trim());
                if retry_status(code) {
                    OciError::unreachable(reference, reason)
                } else {
                    OciError::refused(reference, reason)
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let busy = envelope
                    .errors
                    .iter()
                    .any(|e| e.code == OciErrorCode::Toomanyrequests);
                let reason = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        let code = serde_json::to_value(&e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| format!("{:?}", e.code));
                        format!("{code}: {}", e.message)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                if busy {
                    OciError::unreachable(reference, reason)
                } else {
                    OciError::refused(reference, reason)
                }
            }
            OciDistributionError::UnauthorizedError { .. } => OciError::refused(
                reference,
                format!(
                    "not authorized by {} (check the credentials for it)",
                    reference.registry()
                ),
            ),
            OciDistributionError::IoError(e) => OciError::unreachable(reference, e.to_string()),
            other => OciError::refused(reference, error_chain(&other)),
        }
    }
}

/// An error and its sources on one line: reqwest's own message is only "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Whether `registry` (`HOST[:PORT]`) is among `entries`, each `HOST:PORT`, or `HOST` for any
/// port.
pub fn listed(entries: &[String], registry: &str) -> bool {
    let (host, _) = split_host_port(registry);
    entries.iter().any(|entry| {
        entry.eq_ignore_ascii_case(registry)
            || (split_host_port(entry).1.is_none() && entry.eq_ignore_ascii_case(host))
    })
}

/// How to reach registries: the credentials file(s), and which registries are spoken to over
/// plain HTTP. Loopback registries (`127.0.0.0/8`, `::1`, `localhost`) always are, the
/// insecure registries listed here too, every other one over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registries {
    /// Credentials files in the Docker `config.json` format, the first one naming a registry
    /// wins. Read at each use, so rotated credentials are taken up.
    auth_files: Vec<PathBuf>,
    /// `HOST` (any port) or `HOST:PORT` entries.
    insecure: Vec<String>,
}

impl Registries {
    /// As `docker` and `podman` find credentials: `$REGISTRY_AUTH_FILE` (podman), then
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. Files that do not exist are
    /// skipped. No insecure registries.
    pub fn from_env() -> Self {
        let mut auth_files = Vec::new();
        if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
            auth_files.push(PathBuf::from(file));
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            auth_files.push(PathBuf::from(dir).join("config.json"));
        } else if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            auth_files.push(PathBuf::from(home).join(".docker/config.json"));
        }
        Registries {
            auth_files,
            insecure: Vec::new(),
        }
    }

    /// A member's settings (`[control]`): `auth_file` (Docker `config.json` format) if given,
    /// else the files [`Registries::from_env`] reads; `insecure` registries (`HOST` or
    /// `HOST:PORT`) are spoken to over plain HTTP.
    pub fn new(auth_file: Option<PathBuf>, insecure: Vec<String>) -> Self {
        let auth_files = match auth_file {
            Some(file) => vec![file],
            None => Registries::from_env().auth_files,
        };
        Registries {
            auth_files,
            insecure,
        }
    }

    /// These registries too over plain HTTP (`HOST` or `HOST:PORT`).
    pub fn with_insecure(mut self, registries: impl IntoIterator<Item = String>) -> Self {
        self.insecure.extend(registries);
        self
    }

    /// Whether `registry` (`HOST[:PORT]`) is spoken to over plain HTTP.
    pub fn plain_http(&self, registry: &str) -> bool {
        let (host, _) = split_host_port(registry);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback || listed(&self.insecure, registry)
    }

    /// The credentials for `registry` (`HOST[:PORT]`) in the first file that has them; `None`:
    /// anonymous. A file that exists but cannot be read or parsed is an error naming it.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, String> {
        for file in &self.auth_files {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: cannot read: {e}", file.display())),
            };
            let auths = parse_auth_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            if let Some(credentials) = auths
                .into_iter()
                .find(|(key, _)| same_registry(key, registry))
                .map(|(_, c)| c)
            {
                return Ok(Some(credentials));
            }
        }
        Ok(None)
    }

    /// A client for `reference`'s registry, and what it authenticates with.
    fn client(&self, reference: &OciReference) -> Result<(Client, RegistryAuth), OciError> {
        crate::tls::install_provider();
        let protocol = if self.plain_http(reference.registry()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // An image index is refused, not resolved to a platform's manifest.
            platform_resolver: None,
            user_agent: concat!("ackbar/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| OciError::refused(reference, format!("cannot set up the client: {e}")))?;
        let auth = match self
            .credentials(reference.registry())
            .map_err(|e| OciError::refused(reference, format!("credentials: {e}")))?
        {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        Ok((client, auth))
    }
}

/// Checks that `path` is a credentials file Ackbar can use (Docker `config.json` format).
pub fn check_auth_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_auth_file(&text)
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The `auths` of a Docker `config.json` (or podman `auth.json`): registry key → credentials,
/// from `auth` (base64 of `user:password`) or `username` and `password`. Entries with neither
/// (an `identitytoken`, or credentials kept by a helper) are left out.
fn parse_auth_file(text: &str) -> Result<Vec<(String, Credentials)>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let file: File =
        serde_json::from_str(text).map_err(|e| format!("not a Docker config file: {e}"))?;
    let mut out = Vec::new();
    for (key, entry) in file.auths {
        let credentials = match (entry.auth.filter(|a| !a.is_empty()), entry.username) {
            (Some(auth), _) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| format!("auths.{key:?}.auth is not base64 text"))?;
                let Some((username, password)) = decoded.split_once(':') else {
                    return Err(format!("auths.{key:?}.auth is not base64 of user:password"));
                };
                Credentials {
                    username: username.to_string(),
                    password: password.to_string(),
                }
            }
            (None, Some(username)) if !username.is_empty() => Credentials {
                username,
                password: entry.password.unwrap_or_default(),
            },
            _ => continue,
        };
        out.push((key, credentials));
    }
    Ok(out)
}

/// Whether a key of `auths` (`HOST[:PORT]`, maybe with a scheme and a path, as
/// `https://index.docker.io/v1/`) names `registry`.
fn same_registry(key: &str, registry: &str) -> bool {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.split('/').next().unwrap_or(key);
    let hub = |r: &str| {
        matches!(
            r.to_ascii_lowercase().as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    };
    key.eq_ignore_ascii_case(registry) || (hub(key) && hub(registry))
}

/// Publishes `bytes` (a component) at `reference`'s tag in the Wasm OCI artifact layout, and
/// returns it pinned.
pub async fn push(
    registries: &Registries,
    reference: &OciReference,
    bytes: Vec<u8>,
) -> Result<PinnedComponent, OciError> {
    if reference.digest().is_some() {
        return Err(OciError::refused(
            reference,
            "a push names a tag, not a digest",
        ));
    }
    let component = PluginDigest::of(&bytes);
    let (config, layer) = WasmConfig::from_raw_component(bytes, None)
        .map_err(|e| OciError::refused(reference, format!("not a Wasm component: {e:#}")))?;
    let config: Config = config
        .to_config()
        .map_err(|e| OciError::refused(reference, format!("Wasm config: {e:#}")))?;
    let layers: [ImageLayer; 1] = [layer];
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(WASM_MANIFEST_MEDIA_TYPE.to_string());
    // The manifest's bytes are ours, so its digest is known without asking the registry.
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| OciError::refused(reference, format!("manifest: {e}")))?;
    let manifest_digest = sha256(&manifest_bytes);

    let (client, auth) = registries.client(reference)?;
    let image = reference.client_reference();
    let fail = |e| OciError::from_client(reference, e);
    client
        .store_auth_if_needed(image.resolve_registry(), &auth)
        .await;
    let [layer] = layers;
    client
        .push_blob(&image, layer.data, component.as_str())
        .await
        .map_err(fail)?;
    client
        .push_blob(&image, config.data, &manifest.config.digest)
        .await
        .map_err(fail)?;
    client
        .push_manifest_raw(
            &image,
            manifest_bytes,
            http::HeaderValue::from_static(WASM_MANIFEST_MEDIA_TYPE),
        )
        .await
        .map_err(fail)?;
    Ok(PinnedComponent {
        reference: reference.pinned(&manifest_digest),
        component,
    })
}

/// The manifest `reference` names now (by tag, or by digest if it has one), checked to be a Wasm
/// component: the reference pinned to the manifest's digest, and the component's digest.
pub async fn resolve(
    registries: &Registries,
    reference: &OciReference,
) -> Result<PinnedComponent, OciError> {
    let (client, auth) = registries.client(reference)?;
    let (manifest_digest, layer) = fetch_manifest(&client, &auth, reference).await?;
    Ok(PinnedComponent {
        reference: reference.pinned(&manifest_digest),
        component: layer,
    })
}

/// The component `pinned` names, fetched by the manifest's digest, and checked: the manifest's
/// bytes hash to the pinned digest, it is a Wasm component whose layer is the pinned component,
/// and the layer's bytes hash to that.
pub async fn pull(registries: &Registries, pinned: &PinnedComponent) -> Result<Vec<u8>, OciError> {
    let reference = &pinned.reference;
    if reference.digest().is_none() {
        return Err(OciError::refused(
            reference,
            "not pinned to a manifest digest (oci://…@sha256:…)",
        ));
    }
    let (client, auth) = registries.client(reference)?;
    let (_, layer) = fetch_manifest(&client, &auth, reference).await?;
    if layer != pinned.component {
        return Err(OciError::refused(
            reference,
            format!(
                "the manifest's component is {layer}, not the pinned component {}",
                pinned.component
            ),
        ));
    }
    let image = reference.client_reference();
    let descriptor = OciDescriptor {
        media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
        digest: layer.to_string(),
        ..OciDescriptor::default()
    };
    let fail = |e| OciError::from_client(reference, e);
    let mut stream = client
        .pull_blob_stream(&image, &descriptor)
        .await
        .map_err(fail)?;
    let mut bytes =
        Vec::with_capacity(stream.content_length.unwrap_or(0).min(MAX_PLUGIN_BYTES) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // The client checks the digest as the bytes arrive; a mismatch is the registry's.
            let digest_error = e
                .get_ref()
                .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
            if digest_error {
                OciError::refused(reference, format!("component {layer}: {e}"))
            } else {
                OciError::unreachable(reference, error_chain(&e))
            }
        })?;
        if (bytes.len() + chunk.len()) as u64 > MAX_PLUGIN_BYTES {
            return Err(OciError::refused(
                reference,
                format!("component {layer} is larger than {MAX_PLUGIN_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = PluginDigest::of(&bytes);
    if actual != pinned.component {
        return Err(OciError::refused(
            reference,
            format!(
                "the component's bytes hash to {actual}, not the pinned {}",
                pinned.component
            ),
        ));
    }
    Ok(bytes)
}

/// Fetches `reference`'s manifest, checks that its bytes hash to the digest asked for (if any)
/// and that it is a Wasm component: (manifest digest, component digest).
async fn fetch_manifest(
    client: &Client,
    auth: &RegistryAuth,
    reference: &OciReference,
) -> Result<(String, PluginDigest), OciError> {
    let image = reference.client_reference();
    // Every kind, so that an image index or a Docker manifest is named, not "not found".
    let accept = [
        OCI_IMAGE_MEDIA_TYPE,
        OCI_IMAGE_INDEX_MEDIA_TYPE,
        IMAGE_MANIFEST_MEDIA_TYPE,
        IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    ];
    let (body, _) = client
        .pull_manifest_raw(&image, auth, &accept)
        .await
        .map_err(|e| OciError::from_client(reference, e))?;
    let digest = sha256(&body);
    if let Some(pinned) = reference.digest() {
        if digest != pinned {
            return Err(OciError::refused(
                reference,
                format!("the manifest's bytes hash to {digest}, not the pinned {pinned}"),
            ));
        }
    }
    let layer = wasm_layer(&body).map_err(|e| OciError::refused(reference, e))?;
    Ok((digest, layer))
}

/// The component's digest if `manifest` is a Wasm component artifact, else why not.
fn wasm_layer(manifest: &[u8]) -> Result<PluginDigest, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let not_component = "not a Wasm component";
    let kind: Kind = serde_json::from_slice(manifest)
        .map_err(|e| format!("{not_component}: the manifest is not JSON: {e}"))?;
    if kind.manifests.is_some()
        || matches!(
            kind.media_type.as_deref(),
            Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE)
        )
    {
        return Err(format!(
            "{not_component}: an image index (a manifest per platform), not a Wasm component's \
             manifest"
        ));
    }
    if let Some(media_type) = kind.media_type.as_deref() {
        if media_type != OCI_IMAGE_MEDIA_TYPE {
            return Err(format!(
                "{not_component}: manifest media type {media_type}, not {OCI_IMAGE_MEDIA_TYPE}"
            ));
        }
    }
    let manifest: OciImageManifest = serde_json::from_slice(manifest)
        .map_err(|e| format!("{not_component}: not an OCI image manifest: {e}"))?;
    if manifest.config.media_type != WASM_MANIFEST_CONFIG_MEDIA_TYPE {
        return Err(format!(
            "{not_component}: config media type {}, not {WASM_MANIFEST_CONFIG_MEDIA_TYPE}",
            manifest.config.media_type
        ));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(format!(
            "{not_component}: {} layers; a Wasm component has exactly one, {WASM_LAYER_MEDIA_TYPE}",
            manifest.layers.len()
        ));
    };
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(format!(
            "{not_component}: layer media type {}, not {WASM_LAYER_MEDIA_TYPE}",
            layer.media_type
        ));
    }
    if u64::try_from(layer.size).map_or(true, |size| size > MAX_PLUGIN_BYTES) {
        return Err(format!(
            "the component is {} bytes; at most {MAX_PLUGIN_BYTES} are taken",
            layer.size
        ));
    }
    PluginDigest::parse(&layer.digest).map_err(|e| format!("{not_component}: layer: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> OciReference {
        OciReference::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn oci_reference_parts_and_display() {
        let r = parse("oci://registry.example.com:5000/shop/orders:1.2.0");
        assert_eq!(r.registry(), "registry.example.com:5000");
        assert_eq!(r.repository(), "shop/orders");
        assert_eq!(r.tag(), "1.2.0");
        assert_eq!(r.digest(), None);
        assert_eq!(
            r.to_string(),
            "oci://registry.example.com:5000/shop/orders:1.2.0"
        );

        let pinned = r.pinned(DIGEST);
        assert_eq!(pinned.digest(), Some(DIGEST));
        assert_eq!(parse(&pinned.to_string()), pinned);
    }

    #[test]
    fn oci_reference_without_tag_is_latest() {
        let r = parse("oci://ghcr.io/acme/handler");
        assert_eq!((r.registry(), r.tag()), ("ghcr.io", "latest"));
        assert_eq!(r.to_string(), "oci://ghcr.io/acme/handler:latest");
        let by_digest = parse(&format!("oci://127.0.0.1:5000/a@{DIGEST}"));
        assert_eq!(by_digest.digest(), Some(DIGEST));
        assert_eq!(by_digest.client_reference().digest(), Some(DIGEST));
        let ipv6 = parse("oci://[::1]:5000/a/b:v1");
        assert_eq!((ipv6.registry(), ipv6.repository()), ("[::1]:5000", "a/b"));
    }

    #[test]
    fn oci_reference_errors_name_the_part() {
        let err = |text: &str| OciReference::parse(text).unwrap_err();
        assert!(err("docker://h/r").contains("must start with oci://"));
        assert!(err("oci://h").contains("no repository"));
        assert!(err("oci://h:99999/r").contains("port"));
        assert!(err("oci://h:x/r").contains("port"));
        assert!(err("oci:///r").contains("registry"));
        assert!(err("oci://h/Shop/Orders").contains("repository \"Shop/Orders\""));
        assert!(err("oci://h/a//b").contains("repository"));
        assert!(err("oci://h/r:").contains("tag \"\""));
        assert!(err("oci://h/r:-x").contains("tag"));
        assert!(err("oci://h/r@sha256:abc").contains("digest \"sha256:abc\""));
        assert!(err(&format!("oci://h/r@{}", DIGEST.to_uppercase())).contains("digest"));
    }

    #[test]
    fn oci_reference_serde_is_its_text() {
        let r = parse(&format!("oci://localhost:5000/a:b@{DIGEST}"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, format!("\"oci://localhost:5000/a:b@{DIGEST}\""));
        assert_eq!(serde_json::from_str::<OciReference>(&json).unwrap(), r);
        assert!(serde_json::from_str::<OciReference>("\"oci://h\"").is_err());
    }

    #[test]
    fn oci_plain_http_only_for_loopback_and_listed_registries() {
        let registries = Registries::new(None, vec![])
            .with_insecure(["build.internal:5000".to_string(), "10.1.2.3".to_string()]);
        for plain in [
            "127.0.0.1:5000",
            "127.8.9.10",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "build.internal:5000",
            "10.1.2.3:443",
            "10.1.2.3",
        ] {
            assert!(registries.plain_http(plain), "{plain}");
        }
        for https in [
            "ghcr.io",
            "build.internal:5001",
            "build.internal",
            "10.1.2.4:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!registries.plain_http(https), "{https}");
        }
    }

    #[test]
    fn oci_registry_names_are_checked() {
        for ok in [
            "h",
            "h:1",
            "a.b-c.d:65535",
            "[::1]",
            "[::1]:5000",
            "10.0.0.1:80",
        ] {
            assert_eq!(check_registry_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "http://h", "h/p", "h:0", "h:", "[::1", "[zz]:1", "-h", "h_h",
        ] {
            assert!(check_registry_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oci_docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        let podman = dir.path().join("auth.json");
        let basic = base64::engine::general_purpose::STANDARD.encode("ci:s3cr:et");
        std::fs::write(
            &docker,
            format!(
                r#"{{
                    "auths": {{
                        "registry.example.com:5000": {{"auth": "{basic}"}},
                        "https://index.docker.io/v1/": {{"username": "hub", "password": "pw"}},
                        "helper.example.com": {{"identitytoken": "x"}},
                        "both.example.com": {{"auth": "{basic}"}}
                    }},
                    "credsStore": "desktop"
                }}"#
            ),
        )
        .unwrap();
        std::fs::write(
            &podman,
            r#"{"auths": {"both.example.com": {"username": "podman", "password": "p"}}}"#,
        )
        .unwrap();
        let registries = Registries {
            auth_files: vec![dir.path().join("missing.json"), podman, docker.clone()],
            insecure: vec![],
        };
        let user = |registry: &str| {
            registries
                .credentials(registry)
                .unwrap()
                .map(|c| (c.username, c.password))
        };
        assert_eq!(
            user("registry.example.com:5000"),
            Some(("ci".into(), "s3cr:et".into()))
        );
        assert_eq!(user("docker.io"), Some(("hub".into(), "pw".into())));
        // The first file naming a registry wins.
        assert_eq!(
            user("both.example.com"),
            Some(("podman".into(), "p".into()))
        );
        assert_eq!(user("helper.example.com"), None);
        assert_eq!(user("registry.example.com"), None);

        std::fs::write(&docker, r#"{"auths": {"h": {"auth": "not base64!"}}}"#).unwrap();
        let err = Registries::new(Some(docker.clone()), vec![])
            .credentials("h")
            .unwrap_err();
        assert!(
            err.contains("config.json") && err.contains("base64"),
            "{err}"
        );
        std::fs::write(&docker, r#"{"auths": ["h"]}"#).unwrap();
        assert!(check_auth_file(&docker)
            .unwrap_err()
            .contains("not a Docker config file"));
        assert!(check_auth_file(&dir.path().join("none.json"))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn oci_manifest_layout_is_checked() {
        let manifest = |config: &str, layers: &[(&str, &str)]| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_IMAGE_MEDIA_TYPE,
                "config": {"mediaType": config, "digest": DIGEST, "size": 2},
                "layers": layers.iter().map(|(media_type, digest)| serde_json::json!({
                    "mediaType": media_type, "digest": digest, "size": 10
                })).collect::<Vec<_>>(),
            })
            .to_string()
        };
        let wasm = manifest(
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, DIGEST)],
        );
        assert_eq!(wasm_layer(wasm.as_bytes()).unwrap().as_str(), DIGEST);

        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &[("application/vnd.oci.image.layer.v1.tar+gzip", DIGEST)],
        );
        assert!(wasm_layer(image.as_bytes())
            .unwrap_err()
            .contains("config media type application/vnd.oci.image.config.v1+json"));
        let two = manifest(
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            &[
                (WASM_LAYER_MEDIA_TYPE, DIGEST),
                (WASM_LAYER_MEDIA_TYPE, DIGEST),
            ],
        );
        assert!(wasm_layer(two.as_bytes()).unwrap_err().contains("2 layers"));
        let tar = manifest(
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            &[("application/vnd.oci.image.layer.v1.tar", DIGEST)],
        );
        assert!(wasm_layer(tar.as_bytes())
            .unwrap_err()
            .contains("layer media type"));
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": []
        })
        .to_string();
        assert!(wasm_layer(index.as_bytes())
            .unwrap_err()
            .contains("image index"));
    }
}
