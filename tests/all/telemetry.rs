//! OpenTelemetry export from `ackbar run`, received by a real OTLP/HTTP receiver: a record
//! produced with a `traceparent` is one trace through a pipeline, its output, the next pipeline
//! and a dead letter, with the messaging attributes; sampling follows the producer's decision;
//! the exported metrics are the ones `/metrics` serves.

use crate::support::{ackbar, guest, http_get, text, RunningAckbar};
use ackbar_tests::otlp::{OtlpReceiver, ReceivedSpan};
use rdkafka::message::Headers as _;
use rdkafka::Message as _;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Three pipelines on the embedded broker: `first` (NACK_ON_ERROR, one attempt, dead letters to
/// `dlq`) sends to `mid`, which `second` reads; `dead` reads `dlq`.
fn config(endpoint: &str, telemetry: &str) -> String {
    let plugin = guest("fixture");
    let plugin = plugin.display();
    format!(
        r#"brokers = "embedded"
[run]
summary_interval_secs = 0
metrics_addr = "127.0.0.1:0"
[embedded]
partitions = 1
[telemetry]
endpoint = "{endpoint}"
metrics_interval_ms = 200
{telemetry}
[[pipeline]]
name = "first"
topics = ["in"]
group_id = "first"
ack_policy = "NACK_ON_ERROR"
max_attempts = 1
dead_letter_topic = "dlq"
outputs = ["mid"]
plugin = "{plugin}"
[[pipeline]]
name = "second"
topics = ["mid"]
group_id = "second"
ack_policy = "ACK"
plugin = "{plugin}"
[[pipeline]]
name = "dead"
topics = ["dlq"]
group_id = "dead"
ack_policy = "ACK"
plugin = "{plugin}"
"#
    )
}

fn start(dir: &std::path::Path, config: &str) -> (RunningAckbar, String, String) {
    let mut run = RunningAckbar::start_env(config, dir, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let broker = run.broker_address();
    let ops = run.ops_address();
    (run, broker, ops)
}

fn produce(broker: &str, topic: &str, headers: &[&str], payload: &str) {
    let mut args = vec!["produce", "--brokers", broker, "--topic", topic];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(payload);
    let out = ackbar(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    f: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}\nall spans: {spans:#?}");
    found[0]
}

fn attr<'a>(span: &'a ReceivedSpan, key: &str) -> &'a str {
    span.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("span {} has no {key}: {:?}", span.name, span.attributes))
}

#[test]
fn a_traced_record_is_one_trace_through_pipelines_outputs_and_dead_letters() {
    let otlp = OtlpReceiver::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, broker, ops) = start(dir.path(), &config(&otlp.endpoint, ""));

    let (trace, producer_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let (trap_trace, trap_producer) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    produce(
        &broker,
        "in",
        &[
            &format!("traceparent=00-{trace}-{producer_span}-01"),
            "other=kept",
        ],
        "send:mid/log:hello from the guest",
    );
    produce(
        &broker,
        "in",
        &[&format!("traceparent=00-{trap_trace}-{trap_producer}-01")],
        "trap",
    );
    let spans = otlp.wait_for_spans(WAIT, |spans| {
        let has = |name: &str, t: &str| spans.iter().any(|s| s.name == name && s.trace_id == t);

        // Every span looked at below. A `send` span (and the `process` span above it) ends
        // once the broker confirmed the write, which can come after the next pipeline handled
        // the record; each pipeline commits on its own schedule: the one looked at is `first`'s.
        has("process in", trace)
            && has("send mid", trace)
            && has("process mid", trace)
            && has("process in", trap_trace)
            && has("send dlq", trap_trace)
            && has("process dlq", trap_trace)
            && spans.iter().any(|s| {
                s.name == "commit"
                    && s.attributes.get("ackbar.pipeline").map(String::as_str) == Some("first")
            })
    });

    // The first pipeline's delivery: a child of the producer's span, with the conventions'
    // attributes and the guest's log line as an event.
    let process = one(&spans, "process in (traced)", |s| {
        s.name == "process in" && s.trace_id == trace
    });
    assert_eq!(process.parent_span_id, producer_span);
    assert_eq!(process.kind, "SPAN_KIND_CONSUMER");
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", "in"),
        ("messaging.consumer.group.name", "first"),
        ("messaging.destination.partition.id", "0"),
        ("messaging.kafka.offset", "0"),
        ("ackbar.tenant", "default"),
        ("ackbar.pipeline", "first"),
        ("ackbar.attempt", "1"),
        ("ackbar.verdict", "commit"),
    ] {
        assert_eq!(attr(process, key), value, "{key}");
    }
    assert!(attr(process, "ackbar.plugin.version").len() >= 8);
    assert!(!process.attributes.contains_key("error.type"));
    assert!(
        process.events.iter().any(|(name, a)| name == "log"
            && a.get("log.message").map(String::as_str) == Some("hello from the guest")),
        "{:?}",
        process.events
    );
    assert_eq!(
        process.resource.get("service.name").map(String::as_str),
        Some("ackbar")
    );

    // Its output: a `send` span under it, and the next pipeline's delivery under that.
    let send = one(&spans, "send mid", |s| {
        s.name == "send mid" && s.trace_id == trace
    });
    assert_eq!(send.parent_span_id, process.span_id);
    assert_eq!(send.kind, "SPAN_KIND_PRODUCER");
    assert_eq!(attr(send, "messaging.operation.type"), "send");
    assert_eq!(attr(send, "messaging.destination.name"), "mid");
    let next = one(&spans, "process mid", |s| {
        s.name == "process mid" && s.trace_id == trace
    });
    assert_eq!(next.parent_span_id, send.span_id);
    assert_eq!(attr(next, "ackbar.pipeline"), "second");
    assert_eq!(attr(next, "messaging.consumer.group.name"), "second");

    // The trap: an error span with the trap's kind, its dead letter's `send`, and the dead-letter
    // pipeline's delivery under that.
    let trapped = one(&spans, "process in (trap)", |s| {
        s.name == "process in" && s.trace_id == trap_trace
    });
    assert_eq!(trapped.parent_span_id, trap_producer);
    assert_eq!(attr(trapped, "error.type"), "panic");
    assert_eq!(attr(trapped, "ackbar.verdict"), "dead-letter");
    assert_eq!(trapped.status.0, "STATUS_CODE_ERROR");
    assert!(
        trapped.status.1.contains("requested trap"),
        "{:?}",
        trapped.status
    );
    let dead_letter = one(&spans, "send dlq", |s| s.name == "send dlq");
    assert_eq!(dead_letter.trace_id, trap_trace);
    assert_eq!(dead_letter.parent_span_id, trapped.span_id);
    assert_eq!(attr(dead_letter, "ackbar.dead_letter"), "true");
    let dead = one(&spans, "process dlq", |s| s.name == "process dlq");
    assert_eq!(dead.parent_span_id, dead_letter.span_id);

    // Offset commits are spans of their own.
    let commit = spans
        .iter()
        .find(|s| {
            s.name == "commit"
                && s.attributes.get("ackbar.pipeline").map(String::as_str) == Some("first")
        })
        .unwrap_or_else(|| panic!("no commit span of `first`: {spans:#?}"));
    assert_eq!(commit.kind, "SPAN_KIND_CLIENT");
    assert!(attr(commit, "ackbar.offsets").starts_with("in/0@"));

    // The exported metrics are the served ones: `first` handled one message ok, one trapped.
    let served = http_get(&ops, "/metrics").1;
    for outcome in ["ok", "trap"] {
        let line = served
            .lines()
            .find(|l| {
                l.starts_with("ackbar_messages_total{")
                    && l.contains("pipeline=\"first\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .unwrap_or_else(|| panic!("no {outcome} series in /metrics:\n{served}"));
        assert!(line.ends_with(" 1"), "{line}");
    }
    run.signal("TERM");
    assert!(run.wait_exit().success());
    let points = otlp.points();
    for outcome in ["ok", "trap"] {
        let last = points
            .iter()
            .rfind(|p| {
                p.metric == "ackbar_messages_total"
                    && p.attributes.get("pipeline").map(String::as_str) == Some("first")
                    && p.attributes.get("outcome").map(String::as_str) == Some(outcome)
            })
            .unwrap_or_else(|| panic!("no exported {outcome} point: {points:#?}"));
        assert_eq!(last.value, 1.0, "{last:?}");
    }
    assert_eq!(otlp.malformed(), 0);
}

/// At `sample_ratio = 0` a record whose producer sampled its trace is still traced end to end,
/// one without a `traceparent` is not, and its output carries the unsampled decision on
/// (`-00`), so the next pipeline does not trace it either.
#[test]
fn sampling_follows_the_producer_and_passes_the_decision_on() {
    let otlp = OtlpReceiver::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, broker, _ops) = start(dir.path(), &config(&otlp.endpoint, "sample_ratio = 0.0"));
    let (trace, producer_span) = ("5cf92f3577b34da6a3ce929d0e0e4736", "11f067aa0ba902b7");
    produce(&broker, "in", &[], "send:mid/ok");
    produce(
        &broker,
        "in",
        &[&format!("traceparent=00-{trace}-{producer_span}-01")],
        "send:mid/ok",
    );
    otlp.wait_for_spans(WAIT, |spans| {
        spans
            .iter()
            .any(|s| s.name == "process mid" && s.trace_id == trace)
    });
    // Both outputs are in `mid` by now (the second's was read); each carries a traceparent.
    let records = ackbar_tests::kafka::read_topic(&broker, "mid", WAIT).unwrap();
    assert_eq!(records.len(), 2);
    let traceparent = |m: &rdkafka::message::OwnedMessage| {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("output without traceparent")
    };
    let (untraced, traced) = (traceparent(&records[0]), traceparent(&records[1]));
    assert!(
        untraced.ends_with("-00") && !untraced.contains(trace),
        "{untraced}"
    );
    assert!(
        traced.starts_with(&format!("00-{trace}-")) && traced.ends_with("-01"),
        "{traced}"
    );

    run.signal("TERM");
    assert!(run.wait_exit().success());
    let spans = otlp.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(
        spans.iter().all(|s| s.trace_id == trace),
        "only the producer's sampled trace is recorded: {names:?}"
    );
    let mut seen = names.clone();
    seen.sort_unstable();
    assert_eq!(seen, ["process in", "process mid", "send mid"]);
}

/// Messages a batch call takes are traced as single calls are: each is its own `process` span,
/// a child of its own producer's span, at its own offset. The records are all waiting before
/// the pipeline starts, so its first calls take them in batches.
#[test]
fn each_message_a_batch_takes_is_traced_on_its_own() {
    let otlp = OtlpReceiver::start().unwrap();
    let cluster = crate::support::Cluster::new(1);
    let trace_of = |i: usize| {
        (
            format!("{:032x}", 0xabc0_0000 + i),
            format!("{:016x}", 0x5100 + i),
        )
    };
    let records: Vec<ackbar::kafka::Record> = (0..20)
        .map(|i| {
            let (trace, span) = trace_of(i);
            let mut record = ackbar::kafka::Record::new(0, b"ok");
            record.headers = vec![("traceparent".into(), format!("00-{trace}-{span}-01").into())];
            record
        })
        .collect();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ackbar::kafka::produce(
            &cluster.bootstrap,
            &cluster.topic,
            &records,
        ))
        .unwrap();
    let config = format!(
        r#"brokers = "{bootstrap}"
[run]
summary_interval_secs = 0
metrics_addr = "127.0.0.1:0"
[telemetry]
endpoint = "{endpoint}"
[[pipeline]]
name = "batched"
topics = ["{topic}"]
group_id = "{group}"
ack_policy = "ACK"
plugin = "{plugin}"
"#,
        bootstrap = cluster.bootstrap,
        endpoint = otlp.endpoint,
        topic = cluster.topic,
        group = cluster.group,
        plugin = guest("fixture").display(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut run =
        RunningAckbar::start_env(&config, dir.path(), &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let ops = run.ops_address();
    let spans = otlp.wait_for_spans(WAIT, |spans| {
        (0..20).all(|i| spans.iter().any(|s| s.trace_id == trace_of(i).0))
    });
    for i in 0..20 {
        let (trace, producer_span) = trace_of(i);
        let process = one(&spans, &format!("process of record {i}"), |s| {
            s.trace_id == trace
        });
        assert_eq!(process.name, format!("process {}", cluster.topic));
        assert_eq!(process.parent_span_id, producer_span);
        assert_eq!(attr(process, "messaging.kafka.offset"), i.to_string());
        assert_eq!(attr(process, "ackbar.verdict"), "commit");
    }
    let served = http_get(&ops, "/metrics").1;
    let batch_calls = served
        .lines()
        .find(|l| l.starts_with("ackbar_batch_calls_total{") && l.contains("pipeline=\"batched\""))
        .unwrap_or_else(|| panic!("no batch calls in /metrics:\n{served}"));
    assert!(
        !batch_calls.ends_with(" 0"),
        "no batch was taken: {batch_calls}"
    );
    run.signal("TERM");
    assert!(run.wait_exit().success());
}
