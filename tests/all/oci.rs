//! Handler components in a real OCI registry (`docker-registry`, Distribution 2.8, on loopback):
//! `ackbar push` writes the Wasm artifact layout, read back over the registry's own HTTP API;
//! resolve and pull give back the same bytes and digests, a pinned component even after its tag
//! moved; wrong digests and manifests that are not Wasm components are refused; a stopped
//! registry is unreachable, and usable again once restarted.

use crate::support::{guest, text};
use ackbar::control::PluginDigest;
use ackbar::oci::{self, OciError, OciReference, PinnedComponent, Registries};
use ackbar_tests::registry::Registry;
use sha2::{Digest as _, Sha256};
use std::path::Path;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const WASM_LAYER: &str = "application/wasm";

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Credentials from an empty file of the test's own, whatever the machine's Docker config holds.
struct Setup {
    registry: Registry,
    registries: Registries,
    docker_config: tempfile::TempDir,
}

fn setup() -> Setup {
    let registry = Registry::start().expect("start the OCI registry");
    let docker_config = tempfile::tempdir().unwrap();
    let auth_file = docker_config.path().join("config.json");
    std::fs::write(&auth_file, r#"{"auths": {}}"#).unwrap();
    Setup {
        registry,
        registries: Registries::new(Some(auth_file), Vec::new()),
        docker_config,
    }
}

impl Setup {
    fn reference(&self, repository_and_tag: &str) -> OciReference {
        OciReference::parse(&format!(
            "oci://{}/{repository_and_tag}",
            self.registry.address()
        ))
        .unwrap()
    }

    /// `ackbar push ARGS...` with this test's credentials file.
    fn ackbar_push(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
            .arg("push")
            .args(args)
            .env("ACKBAR_LOG", "error")
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .expect("run ackbar push")
    }

    async fn push_file(&self, path: &Path, repository_and_tag: &str) -> PinnedComponent {
        let bytes = std::fs::read(path).unwrap();
        oci::push(&self.registries, &self.reference(repository_and_tag), bytes)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Uploads `bytes` as a blob of `repository` through the registry's API (an upload session,
    /// then one PUT with the bytes); its digest.
    fn upload_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let session = self
            .registry
            .request(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                b"",
            )
            .unwrap();
        assert_eq!(session.status, 202, "blob upload: {}", session.text());
        let location = session.header("location").expect("an upload location");
        // The location may be absolute; the request needs its path.
        let path = match location.split_once("://") {
            Some((_, rest)) => &rest[rest.find('/').unwrap()..],
            None => location,
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let response = self
            .registry
            .request(
                "PUT",
                &format!("{path}{separator}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                bytes,
            )
            .unwrap();
        assert_eq!(response.status, 201, "blob upload: {}", response.text());
        digest
    }

    /// Puts `manifest` (an OCI image manifest) at `repository:tag`; its digest.
    fn put_manifest(&self, repository: &str, tag: &str, manifest: &serde_json::Value) -> String {
        let body = serde_json::to_vec(manifest).unwrap();
        let response = self
            .registry
            .request(
                "PUT",
                &format!("/v2/{repository}/manifests/{tag}"),
                &[("Content-Type", OCI_MANIFEST)],
                &body,
            )
            .unwrap();
        assert_eq!(response.status, 201, "manifest put: {}", response.text());
        sha256(&body)
    }
}

fn refused(result: Result<impl std::fmt::Debug, OciError>) -> String {
    match result {
        Err(e @ OciError::Refused { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn unreachable(result: Result<impl std::fmt::Debug, OciError>) -> String {
    match result {
        Err(e @ OciError::Unreachable { .. }) => e.to_string(),
        other => panic!("expected the registry to be unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_writes_the_wasm_layout_that_resolve_and_pull_read_back() {
    let s = setup();
    let plugin = guest("fixture");
    let bytes = std::fs::read(&plugin).unwrap();
    let reference = s.reference("shop/fixture:v1");

    let out = s.ackbar_push(&[plugin.to_str().unwrap(), &reference.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let printed = OciReference::parse(stdout.trim()).expect("a pinned reference on stdout");
    let manifest_digest = printed.digest().expect("pinned to a digest").to_string();
    assert_eq!(stdout, format!("{reference}@{manifest_digest}\n"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("to {reference}: component {}", sha256(&bytes))),
        "{stderr}"
    );

    // The layout, as any registry client sees it.
    let manifest = s
        .registry
        .request(
            "GET",
            "/v2/shop/fixture/manifests/v1",
            &[("Accept", OCI_MANIFEST)],
            b"",
        )
        .unwrap();
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    assert_eq!(sha256(&manifest.body), manifest_digest);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(manifest_digest.as_str())
    );
    let json: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(json["schemaVersion"], 2);
    assert_eq!(json["mediaType"], OCI_MANIFEST);
    assert_eq!(json["config"]["mediaType"], WASM_CONFIG);
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{json}");
    assert_eq!(layers[0]["mediaType"], WASM_LAYER);
    assert_eq!(layers[0]["digest"], sha256(&bytes));
    assert_eq!(layers[0]["size"], bytes.len());

    let config_digest = json["config"]["digest"].as_str().unwrap();
    let config = s
        .registry
        .request(
            "GET",
            &format!("/v2/shop/fixture/blobs/{config_digest}"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(config.status, 200);
    let config: serde_json::Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"], serde_json::json!([sha256(&bytes)]));
    let exports = config["component"]["exports"].as_array().unwrap();
    assert!(exports.iter().any(|e| e == "handle"), "{config}");

    let layer = s
        .registry
        .request(
            "GET",
            &format!("/v2/shop/fixture/blobs/{}", sha256(&bytes)),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(layer.status, 200);
    assert!(layer.body == bytes, "the layer is the component's bytes");

    // Resolving the tag pins what was pushed; pulling that gives the same bytes.
    let pinned = oci::resolve(&s.registries, &reference).await.unwrap();
    assert_eq!(pinned.reference, printed);
    assert_eq!(pinned.component, PluginDigest::of(&bytes));
    let pulled = oci::pull(&s.registries, &pinned).await.unwrap();
    assert!(pulled == bytes, "pull returns the pushed bytes");
    // A reference pinned by digest resolves to itself.
    assert_eq!(oci::resolve(&s.registries, &printed).await.unwrap(), pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_component_is_pulled_after_its_tag_moved() {
    let s = setup();
    let (first, second) = (guest("fixture"), guest("orders"));
    s.push_file(&first, "shop/orders:stable").await;
    let before = oci::resolve(&s.registries, &s.reference("shop/orders:stable"))
        .await
        .unwrap();
    let moved = s.push_file(&second, "shop/orders:stable").await;
    assert_ne!(before.reference, moved.reference);

    let now = oci::resolve(&s.registries, &s.reference("shop/orders:stable"))
        .await
        .unwrap();
    assert_eq!(now, moved);
    let old = oci::pull(&s.registries, &before).await.unwrap();
    assert!(old == std::fs::read(&first).unwrap(), "the old bytes");
    let new = oci::pull(&s.registries, &now).await.unwrap();
    assert!(new == std::fs::read(&second).unwrap(), "the new bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digests_and_unknown_tags_are_refused() {
    let s = setup();
    let pinned = s.push_file(&guest("fixture"), "shop/fixture:v1").await;

    let other = PluginDigest::of(b"another component");
    let wrong_component = PinnedComponent {
        reference: pinned.reference.clone(),
        component: other.clone(),
    };
    let message = refused(oci::pull(&s.registries, &wrong_component).await);
    assert!(
        message.starts_with(&pinned.reference.to_string())
            && message.contains(&format!(
                "the manifest's component is {}, not the pinned component {other}",
                pinned.component
            )),
        "{message}"
    );

    let wrong_manifest = PinnedComponent {
        reference: pinned.reference.pinned(&sha256(b"another manifest")),
        component: pinned.component.clone(),
    };
    let message = refused(oci::pull(&s.registries, &wrong_manifest).await);
    assert!(
        message.starts_with(&wrong_manifest.reference.to_string())
            && message.contains("MANIFEST_UNKNOWN"),
        "{message}"
    );

    let unknown = s.reference("shop/fixture:v9");
    let message = refused(oci::resolve(&s.registries, &unknown).await);
    assert!(
        message.starts_with(&unknown.to_string()) && message.contains("MANIFEST_UNKNOWN"),
        "{message}"
    );

    let unpinned = PinnedComponent {
        reference: s.reference("shop/fixture:v1"),
        component: pinned.component.clone(),
    };
    let message = refused(oci::pull(&s.registries, &unpinned).await);
    assert!(
        message.contains("not pinned to a manifest digest"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_is_not_a_wasm_component_is_refused() {
    let s = setup();
    // A container image's layout: an image config and a tar layer.
    let image_config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = s.upload_blob("shop/image", image_config);
    let layer_digest = s.upload_blob("shop/image", b"not a tar, as it happens");
    let image = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": image_config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": 24}],
    });
    let image_digest = s.put_manifest("shop/image", "v1", &image);
    let reference = s.reference("shop/image:v1");
    let message = refused(oci::resolve(&s.registries, &reference).await);
    assert_eq!(
        message,
        format!(
            "{reference}: not a Wasm component: config media type \
             application/vnd.oci.image.config.v1+json, not {WASM_CONFIG}"
        )
    );
    // Pinned to that manifest's exact digest, a pull refuses it all the same.
    let pinned = PinnedComponent {
        reference: reference.pinned(&image_digest),
        component: PluginDigest::parse(&layer_digest).unwrap(),
    };
    let message = refused(oci::pull(&s.registries, &pinned).await);
    assert!(message.contains("not a Wasm component"), "{message}");

    // The Wasm config, but two layers.
    let wasm_config = br#"{"architecture":"wasm","os":"wasip2","layerDigests":[]}"#;
    let wasm_config_digest = s.upload_blob("shop/image", wasm_config);
    let two_layers = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": WASM_CONFIG, "digest": wasm_config_digest,
                   "size": wasm_config.len()},
        "layers": [{"mediaType": WASM_LAYER, "digest": layer_digest, "size": 24},
                   {"mediaType": WASM_LAYER, "digest": layer_digest, "size": 24}],
    });
    s.put_manifest("shop/image", "two", &two_layers);
    let message = refused(oci::resolve(&s.registries, &s.reference("shop/image:two")).await);
    assert!(
        message.contains(&format!(
            "not a Wasm component: 2 layers; a Wasm component has exactly one, {WASM_LAYER}"
        )),
        "{message}"
    );

    // `ackbar push` checks the file before it publishes anything.
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let target = s.reference("shop/core:v1").to_string();
    let out = s.ackbar_push(&[core.to_str().unwrap(), &target]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: plugin {}: is a core WebAssembly module",
            core.display()
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let tags = s
        .registry
        .request("GET", "/v2/shop/core/tags/list", &[], b"")
        .unwrap();
    assert_eq!(tags.status, 404, "nothing was published: {}", tags.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_registry_is_unreachable_and_used_again_once_restarted() {
    let mut s = setup();
    let plugin = guest("fixture");
    let pinned = s.push_file(&plugin, "shop/fixture:v1").await;
    let tag = s.reference("shop/fixture:v1");

    s.registry.stop();
    let message = unreachable(oci::resolve(&s.registries, &tag).await);
    assert!(
        message.starts_with(&format!("{tag}: cannot reach the registry: ")),
        "{message}"
    );
    let message = unreachable(oci::pull(&s.registries, &pinned).await);
    assert!(
        message.starts_with(&format!(
            "{}: cannot reach the registry: ",
            pinned.reference
        )),
        "{message}"
    );
    let out = s.ackbar_push(&[plugin.to_str().unwrap(), &tag.to_string()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("error: {tag}: cannot reach the registry: ")),
        "{stderr}"
    );

    s.registry.restart().expect("restart the registry");
    assert_eq!(oci::resolve(&s.registries, &tag).await.unwrap(), pinned);
    let pulled = oci::pull(&s.registries, &pinned).await.unwrap();
    assert!(pulled == std::fs::read(&plugin).unwrap(), "the same bytes");
}

#[test]
fn push_names_what_is_wrong_with_its_arguments() {
    let s = setup();
    let help = s.ackbar_push(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--insecure-registry"));

    let plugin = guest("fixture");
    let plugin = plugin.to_str().unwrap();
    let error = |args: &[&str]| {
        let out = s.ackbar_push(args);
        assert!(!out.status.success(), "{args:?}");
        text(&out.stderr)
    };
    let scheme = error(&[plugin, "docker://127.0.0.1:5000/a:b"]);
    assert!(
        scheme.starts_with(
            "error: OCI reference \"docker://127.0.0.1:5000/a:b\": must start with oci://"
        ),
        "{scheme}"
    );
    let digest = format!("oci://127.0.0.1:5000/a:b@{}", sha256(b"x"));
    assert!(error(&[plugin, &digest]).contains("a push names a tag, not a digest"));
    let insecure = error(&[
        plugin,
        "oci://127.0.0.1:5000/a:b",
        "--insecure-registry",
        "http://build.internal",
    ]);
    assert!(
        insecure.contains("--insecure-registry: registry"),
        "{insecure}"
    );
}
