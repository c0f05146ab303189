//! Operations: dead-letter topics, retry caps, readiness. Metrics and JSON logs over the CLI are
//! in `cli.rs`.

use crate::support::{guest, runtime, Cluster};
use ackbar::kafka::{self, Record};
use ackbar::plugin::PluginLimits;
use ackbar::policy::{AckPolicy, Action};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message as _;
use std::collections::HashMap;
use std::time::Duration;

fn headers(m: &OwnedMessage) -> HashMap<String, String> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                    (h.key.to_string(), value.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn dead_letter_topic(cluster: &Cluster) -> String {
    let topic = format!("{}-dlq", cluster.topic);
    cluster.add_topic(&topic, 1).await;
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_dead_lettered_with_its_key_headers_and_what_happened() {
    let cluster = Cluster::new(1);
    let dlq = dead_letter_topic(&cluster).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let rejected = Record {
        partition: Some(0),
        key: Some(b"order-17".to_vec()),
        payload: b"reject".to_vec(),
        headers: vec![
            ("traceparent".into(), traceparent.as_bytes().to_vec()),
            ("source".into(), b"shop".to_vec()),
        ],
    };
    let records = [rejected, Record::new(0, "error"), Record::new(0, "ok")];
    kafka::produce(&cluster.bootstrap, &cluster.topic, &records)
        .await
        .unwrap();
    let mut config = cluster.config(AckPolicy::RejectOnError);
    config.dead_letter_topic = Some(dlq.clone());
    config.tenant = "shop-team".into();
    let pipeline = config.name.clone();
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| seen.len() >= 3)
        .await;
    run.stop().await;
    let version = run.seen[0].plugin_version.to_string();

    let letters =
        ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, Duration::from_secs(10)).unwrap();
    assert_eq!(
        letters.len(),
        2,
        "the explicit reject and the error under REJECT_ON_ERROR"
    );
    let first = &letters[0];
    assert_eq!(first.key(), Some(&b"order-17"[..]));
    assert_eq!(first.payload(), Some(&b"reject"[..]));
    let h = headers(first);
    assert_eq!(h["traceparent"], traceparent);
    assert_eq!(h["source"], "shop");
    assert_eq!(h["ackbar-original-topic"], cluster.topic);
    assert_eq!(h["ackbar-original-partition"], "0");
    assert_eq!(h["ackbar-original-offset"], "0");
    assert!(h.contains_key("ackbar-original-timestamp"));
    assert_eq!(h["ackbar-outcome"], "reject+ok");
    assert_eq!(h["ackbar-reason"], "settled with reject by the handler");
    assert_eq!(h["ackbar-attempts"], "1");
    assert_eq!(h["ackbar-plugin-version"], version);
    assert_eq!(h["ackbar-tenant"], "shop-team");
    assert_eq!(h["ackbar-pipeline"], pipeline);

    let second = headers(&letters[1]);
    assert_eq!(second["ackbar-original-offset"], "1");
    assert_eq!(second["ackbar-outcome"], "error");
    assert_eq!(second["ackbar-reason"], "requested error");
    assert_eq!(cluster.committed(), vec![Some(3)]);
}

/// A dead letter carries the message as the guest got it, so it shows what the host copied out
/// of the broker's records: here 60 records already waiting, taken in batches (and, after each
/// reject ends a batch, alone), with keys absent, empty and set, headers absent, repeated,
/// empty and without a value, and their own timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_a_message_taken_in_a_batch_reaches_the_guest_as_produced() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let cluster = Cluster::new(1);
    let dlq = dead_letter_topic(&cluster).await;
    type Produced = (
        Option<Vec<u8>>,
        Vec<u8>,
        Vec<(String, Option<Vec<u8>>)>,
        i64,
    );
    let produced: Vec<Produced> = (0..60i64)
        .map(|i| {
            let key = match i % 3 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("key-{i}").into_bytes()),
            };
            let payload = if i % 2 == 0 { "reject" } else { "ok" };
            let headers = match i % 4 {
                0 => vec![],
                1 => vec![("h".to_string(), Some(format!("v{i}").into_bytes()))],
                2 => vec![
                    ("dup".to_string(), Some(b"first".to_vec())),
                    ("none".to_string(), None),
                    ("dup".to_string(), Some(b"second".to_vec())),
                    ("empty".to_string(), Some(Vec::new())),
                ],
                _ => vec![("none".to_string(), None)],
            };
            (
                key,
                payload.as_bytes().to_vec(),
                headers,
                1_700_000_000_000 + i,
            )
        })
        .collect();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .create()
        .unwrap();
    for (key, payload, headers, timestamp) in &produced {
        let headers = headers.iter().fold(OwnedHeaders::new(), |all, (k, v)| {
            all.insert(Header {
                key: k,
                value: v.as_deref(),
            })
        });
        let mut record = FutureRecord::<[u8], [u8]>::to(&cluster.topic)
            .partition(0)
            .payload(payload)
            .headers(headers)
            .timestamp(*timestamp);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let mut config = cluster.config(AckPolicy::Ack);
    config.dead_letter_topic = Some(dlq.clone());
    config.backoff.initial_ms = 1;
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| seen.len() >= 60)
        .await;
    cluster
        .until_committed(&[Some(60)], Duration::from_secs(120))
        .await;
    run.stop().await;
    let stats = run.final_stats.expect("stopped");
    assert!(stats.batch_calls > 0, "no batch was taken: {stats:?}");

    let letters =
        ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, Duration::from_secs(10)).unwrap();
    let rejected: Vec<&Produced> = produced.iter().step_by(2).collect();
    assert_eq!(letters.len(), rejected.len());
    for (letter, (key, payload, headers, timestamp)) in letters.iter().zip(rejected) {
        assert_eq!(letter.key(), key.as_deref());
        assert_eq!(letter.payload(), Some(payload.as_slice()));
        assert_eq!(letter.timestamp().to_millis(), Some(*timestamp));
        let own: Vec<(String, Option<Vec<u8>>)> = letter
            .headers()
            .map(|hs| {
                hs.iter()
                    .filter(|h| !h.key.starts_with("ackbar-"))
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(&own, headers, "offset {:?}", letter.offset());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offset_waits_for_a_failing_dead_letter_write_and_nothing_is_lost() {
    let cluster = Cluster::new(1);
    let dlq = dead_letter_topic(&cluster).await;
    cluster.produce(&[(0, "reject"), (0, "ok")]).await;
    // Every produce request now fails until these errors are used up.
    let broker = cluster.embedded.as_ref().unwrap();
    broker
        .request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 12],
        )
        .unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.dead_letter_topic = Some(dlq.clone());
    config.dead_letter_timeout = Duration::from_millis(1000);
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| !seen.is_empty())
        .await;
    assert_eq!(run.seen[0].action, Action::Reject);

    let handle = run.handle.as_ref().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while handle.stats().dead_letter_errors == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed dead-letter write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Commits run every 100 ms; the rejected message must not be among them while its dead
    // letter is not written. The offset is read first: if the letter was still unwritten
    // after that read, nothing can have committed past it before.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let committed = cluster.committed();
    if handle.stats().dead_letters == 0 {
        assert_eq!(committed, vec![None], "committed before its dead letter");
    }
    run.until(Duration::from_secs(120), |seen| seen.len() >= 2)
        .await;
    run.stop().await;
    let stats = run_stats(&run);
    assert!(stats.0 >= 1, "failed writes: {stats:?}");
    assert_eq!(stats.1, 1, "one dead letter written");
    let letters =
        ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, Duration::from_secs(10)).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload(), Some(&b"reject"[..]));
    assert_eq!(cluster.committed(), vec![Some(2)]);
}

/// (failed dead-letter writes, dead letters written), summed from the reports' pipeline stats.
fn run_stats(run: &crate::support::Running) -> (u64, u64) {
    run.final_stats
        .map(|s| (s.dead_letter_errors, s.dead_letters))
        .expect("stopped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_sends_an_exhausted_message_to_the_dead_letter_topic() {
    let cluster = Cluster::new(1);
    let dlq = dead_letter_topic(&cluster).await;
    cluster.produce(&[(0, "error"), (0, "ok")]).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.dead_letter_topic = Some(dlq.clone());
    config.max_attempts = Some(3);
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| seen.len() >= 4)
        .await;
    run.stop().await;
    let actions: Vec<(i64, u32, Action)> = run
        .seen
        .iter()
        .map(|r| (r.offset, r.attempt, r.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            (0, 1, Action::Redeliver),
            (0, 2, Action::Redeliver),
            (0, 3, Action::Reject),
            (1, 1, Action::Commit)
        ]
    );
    let letters =
        ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, Duration::from_secs(10)).unwrap();
    assert_eq!(letters.len(), 1, "one dead letter");
    let h = headers(&letters[0]);
    assert_eq!(h["ackbar-attempts"], "3");
    assert_eq!(
        h["ackbar-reason"],
        "3 deliveries failed (max_attempts); last: requested error"
    );
    assert_eq!(cluster.committed(), vec![Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_topic_an_exhausted_message_pauses_its_partition_until_a_new_version()
{
    let cluster = Cluster::new(1);
    cluster.produce(&[(0, "error"), (0, "ok")]).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.max_attempts = Some(2);
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| seen.len() >= 2)
        .await;
    run.settle(Duration::from_millis(1000)).await;
    assert_eq!(run.seen.len(), 2, "paused: {:?}", run.summary());
    let handle = run.handle.as_ref().unwrap();
    let problems = handle.health().problems("p", Duration::from_secs(3600));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("paused at offset 0"), "{problems:?}");
    assert_eq!(cluster.committed(), vec![None], "never skipped");

    // A fixed plugin (here: `orders`, which rejects this payload as malformed) resumes it.
    handle.switch_plugin(guest("orders")).await.unwrap();
    run.until(Duration::from_secs(120), |seen| seen.len() >= 4)
        .await;
    assert_eq!(run.seen[2].offset, 0);
    assert_eq!(run.seen[2].attempt, 3);
    assert_eq!(run.seen[2].outcome.label(), "returned:reject");
    let handle = run.handle.as_ref().unwrap();
    assert!(handle.health().problems("p", Duration::ZERO).is_empty());
    run.stop().await;
    assert_eq!(cluster.committed(), vec![Some(2)]);
}

/// Each delivery is handled by the version current when it starts: a version swapped in while
/// a nacked message waits out its backoff handles the redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_a_reload_is_handled_by_the_new_version() {
    let cluster = Cluster::new(1);
    // Compiled beforehand, so the swap below is a cache hit: far shorter than the backoff.
    tokio::task::spawn_blocking(|| runtime().load(&guest("orders"), PluginLimits::default()))
        .await
        .unwrap()
        .unwrap();
    cluster.produce(&[(0, "error"), (0, "ok")]).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    // Far longer than the swap takes, so the redelivery comes after it.
    config.backoff.initial_ms = 10_000;
    config.backoff.max_ms = 10_000;
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| !seen.is_empty())
        .await;
    let handle = run.handle.as_ref().unwrap();
    handle.switch_plugin(guest("orders")).await.unwrap();
    run.settle(Duration::ZERO).await;
    assert_eq!(run.seen.len(), 1, "swapped before the redelivery");
    run.until(Duration::from_secs(120), |seen| seen.len() >= 3)
        .await;
    run.stop().await;
    let (first, second, next) = (&run.seen[0], &run.seen[1], &run.seen[2]);
    assert_eq!(
        (first.offset, first.attempt, first.action),
        (0, 1, Action::Redeliver)
    );
    assert_eq!((second.offset, second.attempt), (0, 2));
    assert_ne!(second.plugin_version, first.plugin_version);
    // `orders` rejects the fixture's payload as malformed.
    assert_eq!(second.outcome.label(), "returned:reject");
    assert_eq!(next.offset, 1);
    assert_eq!(next.plugin_version, second.plugin_version);
    assert_eq!(cluster.committed(), vec![Some(2)]);
}
