//! Canary deploys on Apache Kafka, three members and 8 partitions: a version that traps on 5%
//! of messages is rolled back by the fleet on its own and every message is still handled once;
//! a good version is promoted; each decision is recorded with both sides' rates.

use crate::fleet::{handled, run_ackbar, running_version, until_handled, Fleet, Member};
use crate::support::*;
use ackbar::canary::Verdict;
use ackbar::control::{decisions_topic, Decisions};
use ackbar_tests::wasm::{tag_component, variant_component};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const PARTITIONS: i32 = 8;
/// Messages per round: 1 in 20 of each partition's says `trap-in-variant:1`.
const ROUND: i64 = 4_000;

/// Message `i` goes to partition `i % 8` at offset `i / 8`.
fn traps(i: i64) -> bool {
    (i / PARTITIONS as i64) % 20 == 0
}

fn payload(i: i64) -> String {
    match traps(i) {
        true => "trap-in-variant:1".into(),
        false => "ok".into(),
    }
}

/// Deploys `plugin` as a canary on 25% (partitions 0 and 4) in the background, waits until
/// every member runs it beside the deployed version, produces a round of messages, and
/// returns the command's output.
async fn canary_round(fleet: &Fleet, plugin: &Path, from: i64) -> std::process::Output {
    let extra = [
        "--canary",
        "25%",
        "--canary-messages",
        "300",
        "--canary-max-minutes",
        "30",
    ];
    let args = fleet.command_line(&Fleet::deploy_args(plugin, &extra));
    let deploy = tokio::task::spawn_blocking(move || run_ackbar(args));
    fleet
        .until("every member runs the canary", |members| {
            members.len() == 3
                && members.iter().all(|m| {
                    m.pipeline("shop", "orders")
                        .is_some_and(|p| p.canary.is_some())
                })
        })
        .await;
    fleet.produce_with(from, from + ROUND, payload).await;
    deploy.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_traps_on_5_percent_is_rolled_back_and_a_good_one_is_promoted() {
    let fleet = Fleet::with_partitions(PARTITIONS).await;
    // A trapped message is redelivered until a version handles it, while the messages after
    // it go on: the canary sees its 5%, not one message delivered again and again.
    let spec = format!(
        "{}ordering = \"unordered\"\nmax_in_flight = 64\n[backoff]\ninitial_ms = 500\nmax_ms = 2000\n",
        std::fs::read_to_string(&fleet.spec)
            .unwrap()
            .replace("\"ACK\"", "\"NACK_ON_ERROR\"")
    );
    std::fs::write(&fleet.spec, spec).unwrap();
    let fixture = std::fs::read(guest("fixture")).unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let path = fleet.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // v1 and v3 handle every message; v2 traps on `trap-in-variant:1`.
    let v1 = write("v1.wasm", tag_component(&fixture, 1));
    let v2 = write("v2.wasm", variant_component(&fixture, b'1'));
    let v3 = write("v3.wasm", tag_component(&fixture, 3));

    let members: Vec<Member> = (0..3).map(|_| Member::start(&fleet.config)).collect();
    fleet.until("three members live", |m| m.len() == 3).await;
    let first = fleet.deploy(&v1, &["--spec", fleet.spec.to_str().unwrap()]);
    assert!(first.status.success(), "deploy v1");
    let v1_version = running_version(&fleet.until_assigned(3).await).expect("one version");
    fleet.produce_with(0, ROUND, payload).await;
    let refs: Vec<&Member> = members.iter().collect();
    until_handled(&refs, ROUND as usize).await;

    // The trapping canary: rolled back, and the command says so.
    let rolled_back = canary_round(&fleet, &v2, ROUND).await;
    let said = text(&rolled_back.stderr);
    assert!(!rolled_back.status.success(), "a rollback fails the deploy");
    assert!(said.contains("the canary was rolled back"), "{said}");
    let shown = text(&rolled_back.stdout);
    assert!(
        shown.contains("rolled back") && shown.contains("trap rate worse"),
        "{shown}"
    );
    let members_now = fleet.members();
    assert_eq!(
        running_version(&members_now).as_deref(),
        Some(v1_version.as_str())
    );
    assert!(members_now
        .iter()
        .all(|m| m.pipeline("shop", "orders").unwrap().canary.is_none()));
    until_handled(&refs, 2 * ROUND as usize).await;

    // What the canary handled, it handled on its partitions only; everything was handled once.
    let all = handled(&refs);
    assert_eq!(all.len(), 2 * ROUND as usize, "every message handled");
    let twice: Vec<_> = all.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "handled twice: {:?}",
        &twice[..twice.len().min(10)]
    );
    let canary_partitions: BTreeSet<i32> = all
        .iter()
        .filter(|(_, v)| v[0] != v1_version)
        .map(|((p, _), _)| *p)
        .collect();
    assert!(
        canary_partitions.is_subset(&BTreeSet::from([0, 4])),
        "the canary ran on {canary_partitions:?}"
    );
    // The messages it trapped on were handled by v1 after the rollback: 1 in 20 of the round,
    // so 200, of which the 50 on partitions 0 and 4 reached the canary first.
    let offsets_of_traps: Vec<(i32, i64)> = (ROUND..2 * ROUND)
        .filter(|&i| traps(i))
        .map(|i| ((i % PARTITIONS as i64) as i32, i / PARTITIONS as i64))
        .collect();
    assert_eq!(offsets_of_traps.len(), 200);
    for at in &offsets_of_traps {
        assert_eq!(all[at], std::slice::from_ref(&v1_version), "{at:?}");
    }

    // The good canary is promoted everywhere.
    let promoted = canary_round(&fleet, &v3, 2 * ROUND).await;
    let said = text(&promoted.stderr);
    assert!(promoted.status.success(), "{said}");
    assert!(said.contains("every member (3) applied it"), "{said}");
    assert!(text(&promoted.stdout).contains("promoted"));
    let members_now = fleet.members();
    let v3_version = running_version(&members_now).expect("one version");
    assert_ne!(v3_version, v1_version);
    until_handled(&refs, 3 * ROUND as usize).await;
    let all = handled(&refs);
    assert_eq!(all.len(), 3 * ROUND as usize, "every message handled");
    assert!(all.values().all(|v| v.len() == 1), "none handled twice");

    // Both decisions are recorded with the counts and rates they compared.
    let decisions = Decisions::new(
        decisions_topic(&fleet.prefix),
        BTreeMap::from([(
            "bootstrap.servers".to_string(),
            fleet.cluster.bootstrap.clone(),
        )]),
    )
    .read()
    .unwrap();
    let rollback = decisions
        .get("shop", "orders", 2)
        .expect("deploy 2's decision");
    assert_eq!(rollback.verdict, Verdict::RollBack);
    assert!(rollback.canary_tally.deliveries >= 300, "{rollback:?}");
    // About the 5% of its messages, and redeliveries of them: not one message stuck.
    let rate = rollback.canary_rates.trap;
    assert!((0.03..0.9).contains(&rate), "{rollback:?}");
    assert_eq!(rollback.stable_rates.trap, 0.0, "{rollback:?}");
    let promotion = decisions
        .get("shop", "orders", 3)
        .expect("deploy 3's decision");
    assert_eq!(promotion.verdict, Verdict::Promote);
    assert!(promotion.canary_tally.deliveries >= 300, "{promotion:?}");
    assert_eq!(promotion.canary_rates.trap, 0.0, "{promotion:?}");
    let status = fleet.command(&["status"]);
    let shown = text(&status.stdout);
    assert!(
        shown.contains("canary decisions:")
            && shown.contains("shop/orders deploy 2: rolled back")
            && shown.contains("shop/orders deploy 3: promoted"),
        "{shown}"
    );
}
