//! `ackbar invoke`: feed a plugin messages without a broker and show what each delivery did.
//!
//! Every message is handled exactly as a pipeline would handle it: the same runtime, limits and
//! sandbox, the same policy decision, and redelivery (attempt + 1) after a nack, up to a cap.

use crate::bindings::{Header, Message};
use crate::outcome::{CallEnd, Outcome};
use crate::plugin::{CallContext, GuestLogBudget, InstancePool, PluginLimits, PluginRuntime};
use crate::policy::{AckPolicy, DeliveryRules, Verdict};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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
    /// The error text or trap reason, with the guest's captured stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn detail(outcome: &Outcome) -> Option<String> {
    match &outcome.end {
        CallEnd::Failed { message, .. } => Some(message.clone()),
        CallEnd::Trapped { detail, stderr, .. } => {
            let reason = detail.lines().next().unwrap_or_default();
            let output: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
                .collect();
            Some(match output.as_slice() {
                [] => reason.to_string(),
                lines => format!("{reason}; stderr: {}", lines.join(" | ")),
            })
        }
        _ => None,
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
}

impl Invoker {
    pub fn new(
        runtime: &PluginRuntime,
        plugin: &Path,
        policy: AckPolicy,
        limits: PluginLimits,
        max_attempts: u32,
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
        for attempt in 1.. {
            let message = input.to_guest(index, attempt);
            let context = CallContext {
                tenant: Arc::from(crate::config::DEFAULT_TENANT),
                pipeline: Arc::from("invoke"),
                plugin_version: version.clone(),
                topic: Arc::from(message.topic.as_str()),
                partition: message.partition,
                offset: message.offset,
                guest_log: self.guest_log.clone(),
            };
            let outcome = self.pool.call(&message, context).await;
            let settled = self.rules.settle(&outcome, attempt, attempt);
            report(Delivery {
                message: index,
                attempt,
                outcome: outcome.label(),
                action: settled.action.name().to_string(),
                verdict: settled.verdict.name().to_string(),
                detail: detail(&outcome),
            });
            if !matches!(settled.verdict, Verdict::RedeliverAfter(_)) {
                return;
            }
        }
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message {} attempt {}: {} -> {}",
            self.message, self.attempt, self.outcome, self.action
        )?;
        if self.verdict == Verdict::Pause.name() {
            write!(f, ", pause (max_attempts used up)")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}
