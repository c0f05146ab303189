//! Hostile guests beside a well-behaved pipeline in one process, on one broker: every attack is
//! contained in its own instance, settled by the policy with a precise reason, and the
//! well-behaved pipeline handles all its messages meanwhile.

use crate::support::{guest, unique, Cluster};
use ackbar::outcome::CallEnd;
use ackbar::policy::{AckPolicy, Action};
use std::time::Duration;

/// (payload, expected outcome label, text the error or trap reason must contain)
const ATTACKS: [(&str, &str, &str); 10] = [
    ("loop", "trap:deadline", "interrupt"),
    ("clock-loop", "trap:deadline", "interrupt"),
    ("recurse", "trap:stack-overflow", "call stack exhausted"),
    ("alloc:64", "trap:memory-limit", "memory limit exceeded"),
    ("big-error:4", "error", "xxxx"),
    ("ack-many:10000", "ack+ok", ""),
    ("open:/etc/passwd", "error", "refused"),
    ("env", "error", "refused"),
    ("connect:127.0.0.1:22", "error", "refused"),
    ("trap", "trap:panic", "unreachable"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_contained_and_the_neighbour_keeps_going() {
    let hostile = Cluster::new(1);
    let broker = hostile.embedded.as_ref().unwrap();
    let good_topic = unique("good");
    broker.create_topic(&good_topic, 2).unwrap();

    let attacks: Vec<(i32, &str)> = ATTACKS.iter().map(|(p, _, _)| (0, *p)).collect();
    hostile.produce(&attacks).await;
    let good_orders: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"id":"o{i}","item":"book","quantity":1}}"#))
        .collect();
    let records: Vec<ackbar::tools::Record> = good_orders
        .iter()
        .enumerate()
        .map(|(i, o)| ackbar::tools::Record::new(i as i32 % 2, o.as_bytes()))
        .collect();
    ackbar::tools::produce(&hostile.bootstrap, &good_topic, &records)
        .await
        .unwrap();

    let mut config = hostile.config(AckPolicy::Ack);
    config.limits.deadline = Duration::from_millis(300);
    config.limits.memory_bytes = 16 << 20;
    let mut attacked = hostile.start(config);

    let mut good_config = hostile.config(AckPolicy::Ack);
    good_config.topics = vec![good_topic.clone()];
    good_config.group_id = Some(unique("good-group"));
    good_config.plugin = guest("orders");
    let good_group = good_config.group_id.clone().unwrap();
    let mut good = hostile.start(good_config);

    good.until(Duration::from_secs(60), |seen| seen.len() >= 2000)
        .await;
    attacked
        .until(Duration::from_secs(60), |seen| seen.len() >= ATTACKS.len())
        .await;
    attacked.settle(Duration::from_millis(300)).await;
    good.stop().await;
    attacked.stop().await;

    for (offset, (payload, label, reason)) in ATTACKS.iter().enumerate() {
        let reports = attacked.deliveries(0, offset as i64);
        assert_eq!(reports.len(), 1, "{payload}: delivered once");
        let report = reports[0];
        assert_eq!(report.outcome.label(), *label, "{payload}");
        assert_eq!(report.action, Action::Commit, "{payload}: settled by ACK");
        let text = match &report.outcome.end {
            CallEnd::Trapped { detail, .. } => detail.clone(),
            CallEnd::Failed { message, .. } => message.clone(),
            _ => String::new(),
        };
        assert!(text.contains(reason), "{payload}: {text:.200}");
        assert!(text.len() <= 2048, "{payload}: report text is bounded");
    }
    assert!(good
        .seen
        .iter()
        .all(|r| r.outcome.label() == "ok" && r.action == Action::Commit));
    assert_eq!(hostile.committed(), vec![Some(ATTACKS.len() as i64)]);
    let committed =
        ackbar::tools::committed_offsets(&hostile.bootstrap, &good_group, &good_topic, &[0, 1])
            .unwrap();
    assert_eq!(committed, vec![(0, Some(1000)), (1, Some(1000))]);
}
