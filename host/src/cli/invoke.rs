//! `ackbar invoke`: feed a plugin messages without a broker and show what each delivery did.
//!
//! Every message is handled exactly as a pipeline would handle it: the same runtime, limits and
//! sandbox, the same policy decision, and redelivery (attempt + 1) after a nack, up to a cap.

use crate::bindings::{Header, Message};
use crate::consumer::{settle_call, SettledCall};
use crate::events::DeliveryEvent;
use crate::offsets::TopicPartition;
use crate::outcome::CallEnd;
use crate::outputs::{OutputRecord, OutputRules, Outputs};
use crate::plugin::{
    CallContext, Finished, GuestLogBudget, InstancePool, PluginLimits, PluginRuntime,
};
use crate::policy::{AckPolicy, DeliveryRules, Verdict};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One input message. In JSON-lines input every field but `payload` is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub partition: Option<i32>,
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

impl InputMessage {
    pub fn text(payload: &str) -> Self {
        InputMessage {
            payload: Some(payload.to_string()),
            ..Default::default()
        }
    }

    /// Parses one line of JSON-lines input; `line` is 1-based, for the error.
    pub fn from_json_line(line: &str, number: usize, origin: &str) -> Result<Self> {
        serde_json::from_str(line).with_context(|| {
            format!(
                "{origin}: line {number}: expected a JSON object like \
                 {{\"payload\": \"...\", \"key\": \"...\", \"headers\": {{\"k\": \"v\"}}}}"
            )
        })
    }

    fn to_guest(&self, index: usize, attempt: u32) -> Message {
        Message {
            topic: self.topic.clone().unwrap_or_else(|| "invoke".into()),
            partition: self.partition.unwrap_or(0),
            offset: self.offset.unwrap_or(index as i64),
            timestamp: self.timestamp,
            key: self.key.clone().map(String::into_bytes),
            payload: self.payload.clone().map(String::into_bytes),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| Header {
                    key: k.clone(),
                    value: Some(v.clone().into_bytes()),
                })
                .collect(),
            attempt,
        }
    }
}

/// What one delivery of one message did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivery {
    /// Index of the message in the input, from 0.
    pub message: usize,
    pub attempt: u32,
    /// `ok`, `error`, `trap:panic`, `ack+ok`, `interrupt:nack`, ...
    pub outcome: String,
    /// What the policy does with the offset: `commit`, `reject`, `redeliver` or `nothing`.
    pub action: String,
    /// What a pipeline does: `commit`, `redeliver`, `pause` (`max_attempts` used up) or `leave`.
    pub verdict: String,
    /// The action, and the verdict where it says more (`redeliver, pause (max_attempts used up)`).
    #[serde(skip)]
    pub settled_as: String,
    /// The error text or trap reason, with the guest's captured stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the call sent through `producer`, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<Sent>,
    /// Whether a pipeline would publish `sent` (the outputs table), or drop it with the attempt.
    pub published: bool,
    /// Sends refused to the handler (undeclared topic, over a per-call bound, invalid).
    #[serde(skip_serializing_if = "is_zero")]
    pub refused_sends: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One record a call sent, as `ackbar invoke` shows it (bytes as UTF-8, lossily).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sent {
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Sent {
    fn of(record: &OutputRecord) -> Self {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Sent {
            topic: record.topic.clone(),
            partition: record.partition,
            key: record.key.as_deref().map(text),
            payload: record.payload.as_deref().map(text),
            headers: record
                .headers
                .iter()
                .map(|h| {
                    (
                        h.key.clone(),
                        h.value.as_deref().map(text).unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }
}

impl Delivery {
    fn of(message: usize, event: &DeliveryEvent, outputs: &Outputs) -> Self {
        let outcome = &event.outcome;
        let detail = match &outcome.end {
            CallEnd::Returned(_) => None,
            CallEnd::Trapped { stderr, .. } => {
                let output: Vec<&str> = stderr
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
                    .collect();
                Some(match output.as_slice() {
                    [] => outcome.reason(),
                    lines => format!("{}; stderr: {}", outcome.reason(), lines.join(" | ")),
                })
            }
            CallEnd::Failed { .. } | CallEnd::Interrupted(_) => Some(outcome.reason()),
        };
        Delivery {
            message,
            attempt: event.attempt,
            outcome: outcome.label(),
            action: event.action.name().to_string(),
            verdict: event.verdict.name().to_string(),
            settled_as: event.settled_as(),
            detail,
            sent: outputs.records.iter().map(Sent::of).collect(),
            published: event.outputs_published,
            refused_sends: outputs.refused.total(),
        }
    }
}

/// Calls a plugin with each message in turn and settles each delivery with a pipeline's rules
/// ([`DeliveryRules::settle`]): a redelivered message is called again with the next attempt
/// number (without waiting its backoff), until it is settled or `max_attempts` deliveries were
/// made, where a pipeline without a dead-letter topic would pause.
pub struct Invoker {
    pool: InstancePool,
    guest_log: Arc<GuestLogBudget>,
    rules: DeliveryRules,
    outputs: Arc<OutputRules>,
}

impl Invoker {
    pub fn new(
        runtime: &PluginRuntime,
        plugin: &Path,
        policy: AckPolicy,
        limits: PluginLimits,
        max_attempts: u32,
        outputs: OutputRules,
    ) -> Result<Self> {
        if max_attempts == 0 {
            bail!("--max-attempts must be at least 1");
        }
        let plugin = runtime.load(plugin, limits)?;
        Ok(Invoker {
            pool: InstancePool::new(Arc::new(plugin)),
            guest_log: Arc::default(),
            rules: DeliveryRules {
                policy,
                max_attempts: Some(max_attempts),
                dead_letters: false,
                backoff: crate::config::Backoff::default(),
            },
            outputs: Arc::new(outputs),
        })
    }

    /// Delivers one message until it is settled (or out of attempts), reporting every delivery.
    pub async fn deliver(
        &self,
        index: usize,
        input: &InputMessage,
        mut report: impl FnMut(Delivery),
    ) {
        let version = self.pool.plugin().version_shared();
        let pipeline: Arc<str> = Arc::from("invoke");
        let mut context = None;
        for attempt in 1.. {
            let message = input.to_guest(index, attempt);
            let context = context.get_or_insert_with(|| {
                Arc::new(CallContext {
                    tenant: Arc::from(crate::config::DEFAULT_TENANT),
                    pipeline: pipeline.clone(),
                    topic: Arc::from(message.topic.as_str()),
                    partition: message.partition,
                    guest_log: self.guest_log.clone(),
                    outputs: self.outputs.clone(),
                    recent: None,
                })
            });
            let started = Instant::now();
            let (outcome, outputs) = self.pool.call_with_outputs(&message, context).await;
            let done = Finished {
                outcome,
                outputs,
                started,
                elapsed: started.elapsed(),
                batched: false,
            };
            let tp = TopicPartition::new(&message.topic, message.partition);
            // Settled exactly as a pipeline's worker settles it; only the recording differs.
            let SettledCall { event, outputs, .. } = settle_call(
                &self.rules,
                &pipeline,
                &tp,
                &message,
                version,
                attempt,
                done,
            );
            report(Delivery::of(index, &event, &outputs));
            if !matches!(event.verdict, Verdict::RedeliverAfter(_)) {
                return;
            }
        }
    }
}

/// Longest output value the text report shows (`--output-json` shows all of it).
const SHOWN_VALUE_BYTES: usize = 200;

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message {} attempt {}: {} -> {}",
            self.message, self.attempt, self.outcome, self.settled_as
        )?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        if self.refused_sends > 0 {
            write!(f, "; {} sends refused", self.refused_sends)?;
        }
        let fate = if self.published {
            "publishes to"
        } else {
            "not published:"
        };
        for sent in &self.sent {
            write!(f, "\n  {fate} {}", sent.topic)?;
            if let Some(p) = sent.partition {
                write!(f, "/{p}")?;
            }
            if let Some(key) = &sent.key {
                write!(f, " key={key}")?;
            }
            for (k, v) in &sent.headers {
                write!(f, " {k}={v}")?;
            }
            let value = sent.payload.as_deref().unwrap_or("(no value)");
            let shown = crate::text::truncate(value, SHOWN_VALUE_BYTES);
            let cut = if shown.len() < value.len() { "…" } else { "" };
            write!(f, ": {shown}{cut}")?;
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The plugin (.wasm component).
    pub plugin: PathBuf,
    /// A message payload (repeatable). Without --message or --file, stdin is read.
    #[arg(long = "message", short = 'm')]
    pub messages: Vec<String>,
    /// Read messages from a file, one per line (`-` for stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Input lines are JSON objects: {"payload", "key", "headers": {..}, "topic", "partition",
    /// "offset", "timestamp"}; otherwise each line is a payload.
    #[arg(long)]
    pub json: bool,
    /// The ack policy that turns outcomes into actions.
    #[arg(long, default_value = "ACK", value_parser = super::args::parse_policy)]
    pub policy: AckPolicy,
    /// Deliveries per message: a redelivered (nacked) message is called again up to this many times.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Wall-clock limit per call.
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Memory limit per instance.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: u64,
    /// Print one JSON object per delivery instead of text.
    #[arg(long)]
    pub output_json: bool,
    /// A topic (or prefix ending in `*`) the handler may send to, as a pipeline's `outputs`
    /// (repeatable). Without it, every topic is allowed.
    #[arg(long = "output")]
    pub outputs: Vec<String>,
}

pub fn run(args: InvokeArgs) -> Result<()> {
    let mut inputs: Vec<InputMessage> = args
        .messages
        .iter()
        .map(|m| InputMessage::text(m))
        .collect();
    let read_lines = |origin: &str, reader: &mut dyn BufRead| -> Result<Vec<InputMessage>> {
        let mut read = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("{origin}: line {}", i + 1))?;
            if args.json {
                if line.trim().is_empty() {
                    continue;
                }
                read.push(InputMessage::from_json_line(&line, i + 1, origin)?);
            } else {
                read.push(InputMessage::text(&line));
            }
        }
        Ok(read)
    };
    match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            inputs.extend(read_lines("stdin", &mut std::io::stdin().lock())?)
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            let origin = path.display().to_string();
            inputs.extend(read_lines(&origin, &mut std::io::BufReader::new(file))?)
        }
        None if args.messages.is_empty() => {
            inputs.extend(read_lines("stdin", &mut std::io::stdin().lock())?)
        }
        None => {}
    }
    let limits = crate::plugin::PluginLimits {
        deadline: Duration::from_millis(args.deadline_ms),
        memory_bytes: (args.memory_mib as usize) << 20,
        fuel: None,
    };
    let runtime = PluginRuntime::new()?;
    let invoker = Invoker::new(
        &runtime,
        &args.plugin,
        args.policy,
        limits,
        args.max_attempts,
        OutputRules {
            topics: if args.outputs.is_empty() {
                vec!["*".into()]
            } else {
                args.outputs.clone()
            },
            ..OutputRules::default()
        },
    )?;
    for (index, input) in inputs.iter().enumerate() {
        crate::plugin::block_on(invoker.deliver(index, input, |delivery| {
            if args.output_json {
                println!(
                    "{}",
                    serde_json::to_string(&delivery).expect("a delivery serializes")
                );
            } else {
                println!("{delivery}");
            }
        }));
    }
    Ok(())
}
