//! A fleet deploying from a real OCI registry (Debian's `docker-registry`, registry v2 on a
//! loopback port): `ackbar push`, a deploy by tag pinned to its digest that every member runs,
//! a tag moved after the deploy, the registry stopped mid-deploy, and a deploy whose digest
//! does not match the registry's.

use crate::fleet::{running_version, Fleet, Member};
use crate::support::*;
use ackbar::control::{pipelines_topic, DesiredState, MemberStatus, PluginDigest};
use ackbar_tests::registry::Registry;
use ackbar_tests::wasm::tag_component;
use std::collections::BTreeMap;
use std::process::Command;

/// Sends `signal` (`STOP`, `CONT`) to each member.
fn signal(members: &[&Member], signal: &str) {
    for m in members {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &m.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

fn orders(m: &MemberStatus) -> &ackbar::control::PipelineStatus {
    m.pipeline("shop", "orders").expect("the pipeline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_from_a_registry_is_pinned_pulled_by_every_member_and_survives_a_stopped_registry()
{
    let mut registry = Registry::start().expect("start the registry");
    let fleet = Fleet::with_partitions(6).await;
    // The member's file names the registries the tenant may pull from.
    let member = std::fs::read_to_string(&fleet.config).unwrap();
    std::fs::write(
        &fleet.config,
        format!("{member}registries = [\"{}\"]\n", registry.address()),
    )
    .unwrap();
    let fixture = std::fs::read(guest("fixture")).unwrap();
    let version = |tag: u32| {
        let path = fleet.dir.path().join(format!("v{tag}.wasm"));
        let bytes = tag_component(&fixture, tag);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    };
    let (v1, v1_bytes) = version(1);
    let (v2, _) = version(2);
    let (v3, _) = version(3);
    let (_, unseen) = version(4);
    let repo = format!("oci://{}/shop/orders", registry.address());
    let push = |path: &std::path::Path, tag: &str| {
        let out = crate::fleet::run_ackbar(vec![
            "push".into(),
            path.to_str().unwrap().into(),
            format!("{repo}:{tag}"),
        ]);
        assert!(out.status.success(), "push {tag}");
        text(&out.stdout).trim().to_string()
    };
    let v1_pinned = push(&v1, "stable");
    assert!(v1_pinned.starts_with(&repo) && v1_pinned.contains("@sha256:"));
    let v2_pinned = push(&v2, "v2");

    // A cache of this test's own: one a member has cached a digest in does not fetch it again.
    let cache = tempfile::tempdir().unwrap();
    let members: Vec<Member> = (0..3)
        .map(|_| {
            Member::start_with_env(
                &fleet.config,
                &[("ACKBAR_CACHE_DIR", cache.path().to_str().unwrap())],
            )
        })
        .collect();
    fleet.until("three members live", |m| m.len() == 3).await;
    let first = fleet.deploy(
        std::path::Path::new(&format!("{repo}:stable")),
        &["--spec", fleet.spec.to_str().unwrap()],
    );
    assert!(first.status.success(), "deploy by tag");
    let v1_version = running_version(&fleet.until_assigned(3).await).expect("one version");
    assert!(PluginDigest::of(&v1_bytes).as_str().contains(&v1_version));
    let properties = BTreeMap::from([(
        "bootstrap.servers".to_string(),
        fleet.cluster.bootstrap.clone(),
    )]);
    let desired = DesiredState::new(
        pipelines_topic(&fleet.prefix, "shop").unwrap(),
        properties.clone(),
    );
    let record = desired.read().unwrap().remove("orders").unwrap();
    assert_eq!(record.source.as_deref(), Some(v1_pinned.as_str()), "pinned");

    // The tag moves; a member that starts now with an empty cache pulls the pinned digest.
    push(&v3, "stable");
    let empty = tempfile::tempdir().unwrap();
    let fresh = Member::start_with_env(
        &fleet.config,
        &[("ACKBAR_CACHE_DIR", empty.path().to_str().unwrap())],
    );
    let four = fleet.until_assigned(4).await;
    assert_eq!(running_version(&four).as_deref(), Some(v1_version.as_str()));

    // Registry stopped mid-deploy: the members see the deploy only once it is gone.
    let everyone: Vec<&Member> = members.iter().chain([&fresh]).collect();
    signal(&everyone, "STOP");
    let recorded = fleet.deploy(
        std::path::Path::new(&format!("{repo}:v2")),
        &["--timeout", "0"],
    );
    registry.stop();
    signal(&everyone, "CONT");
    assert!(recorded.status.success(), "the deploy is recorded");
    let waiting = fleet
        .until("every member waits for the registry on v1", |members| {
            members.len() == 4
                && members.iter().all(|m| {
                    let p = orders(m);
                    p.plugin_version.as_deref() == Some(v1_version.as_str())
                        && p.waiting
                            .as_deref()
                            .is_some_and(|w| w.contains("cannot reach the registry"))
                })
        })
        .await;
    assert!(waiting.iter().all(|m| orders(m).refused.is_none()));
    let status = fleet.command(&["status"]);
    assert!(text(&status.stdout).contains("waiting: deploy 2:"));
    registry.restart().expect("restart the registry");
    let after = fleet
        .until("every member runs v2", |members| {
            members.len() == 4
                && members.iter().all(|m| {
                    let p = orders(m);
                    p.waiting.is_none() && p.deployed.as_ref().is_some_and(|d| d.generation == 2)
                })
                && running_version(members).is_some()
        })
        .await;
    let v2_version = running_version(&after).unwrap();
    assert_ne!(v2_version, v1_version);

    // A record whose digest is not the pinned manifest's component is refused everywhere;
    // v2 keeps running.
    let current = desired.read().unwrap().remove("orders").unwrap();
    let forged = current.next(
        current.plugin.clone(),
        PluginDigest::of(&unseen),
        Some(v2_pinned.clone()),
        current.spec.clone(),
    );
    desired.publish(&forged).await.unwrap();
    let refused = fleet
        .until("every member refuses the mismatch", |members| {
            members.len() == 4
                && members.iter().all(|m| {
                    orders(m).refused.as_ref().is_some_and(|r| {
                        r.generation == 3 && r.reason.contains("not the pinned component")
                    })
                })
        })
        .await;
    assert_eq!(
        running_version(&refused).as_deref(),
        Some(v2_version.as_str())
    );
}
