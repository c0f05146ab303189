//! What a handler sends to output topics during one call (`producer.send`), and the per-call
//! bounds on it. Whether an attempt's outputs are published is the policy's business
//! ([`crate::policy::Settlement::publishes_outputs`]); writing them is `crate::output_writer`'s
//! (at least once) or `crate::transactions`' (exactly once).

use crate::bindings::ackbar::plugin::producer::SendError;
use std::sync::Arc;

pub use crate::bindings::ackbar::plugin::producer::OutputRecord;

/// Records one call may send unless the pipeline says otherwise (`max_outputs_per_call`): an
/// enrichment or a fan-out of a few records is the common case; a guest that loops on `send`
/// gets an error long before the host holds much.
pub(crate) const DEFAULT_MAX_OUTPUTS_PER_CALL: usize = 100;

/// Bytes (topics, keys, values, headers) one call may send unless the pipeline says otherwise
/// (`max_output_bytes_per_call`): Kafka's default largest record (1 MiB) fits once.
pub(crate) const DEFAULT_MAX_OUTPUT_BYTES_PER_CALL: usize = 1 << 20;

/// Where a pipeline's handler may write, and how much per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRules {
    /// The pipeline's `outputs`: topic names, or prefixes ending in `*`.
    pub topics: Vec<String>,
    /// Records one call may send.
    pub max_records: usize,
    /// Bytes one call may send, counted by `record_bytes`.
    pub max_bytes: usize,
}

impl Default for OutputRules {
    /// No outputs: every send is refused.
    fn default() -> Self {
        OutputRules {
            topics: Vec::new(),
            max_records: DEFAULT_MAX_OUTPUTS_PER_CALL,
            max_bytes: DEFAULT_MAX_OUTPUT_BYTES_PER_CALL,
        }
    }
}

impl OutputRules {
    /// Whether `topic` is among the declared outputs.
    pub(crate) fn allows(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| pattern_matches(p, topic))
    }
}

/// `orders` matches only `orders`; `orders.*` matches every topic starting with `orders.`.
pub(crate) fn pattern_matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// The size a record counts for against `max_output_bytes_per_call`.
pub(crate) fn record_bytes(record: &OutputRecord) -> usize {
    let optional = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);
    record.topic.len()
        + optional(&record.key)
        + optional(&record.payload)
        + record
            .headers
            .iter()
            .map(|h| h.key.len() + optional(&h.value))
            .sum::<usize>()
}

/// Sends refused during one call, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendRefusals {
    /// To a topic not among the pipeline's `outputs`.
    pub undeclared_topic: u32,
    /// Past the per-call record or byte bound.
    pub over_limit: u32,
    /// A negative partition or an empty topic.
    pub invalid: u32,
}

impl SendRefusals {
    /// All refusals of the call.
    pub fn total(&self) -> u32 {
        self.undeclared_topic + self.over_limit + self.invalid
    }
}

/// What one call sent: the records accepted, in order, and what was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// Accepted records, in the order the handler sent them.
    pub records: Vec<OutputRecord>,
    /// Their size by `record_bytes`.
    pub bytes: usize,
    /// Sends that returned an error to the guest.
    pub refused: SendRefusals,
}

impl Outputs {
    /// Accepts `record` if `rules` allow it; the error is what the guest's `send` returns.
    pub fn accept(&mut self, record: OutputRecord, rules: &OutputRules) -> Result<(), SendError> {
        if record.topic.is_empty() || record.partition.is_some_and(|p| p < 0) {
            self.refused.invalid += 1;
            return Err(SendError::Invalid(if record.topic.is_empty() {
                "the topic is empty".into()
            } else {
                format!("partition {} is negative", record.partition.unwrap_or(-1))
            }));
        }
        if !rules.allows(&record.topic) {
            self.refused.undeclared_topic += 1;
            return Err(SendError::TopicNotAllowed(format!(
                "`{}` is not among this pipeline's outputs ({})",
                crate::text::truncate(&record.topic, 256),
                if rules.topics.is_empty() {
                    "it has none".to_string()
                } else {
                    rules.topics.join(", ")
                }
            )));
        }
        if self.records.len() >= rules.max_records {
            self.refused.over_limit += 1;
            return Err(SendError::LimitExceeded(format!(
                "this call already sent {} records, the most a call may send (max_outputs_per_call)",
                rules.max_records
            )));
        }
        let size = record_bytes(&record);
        if self.bytes + size > rules.max_bytes {
            self.refused.over_limit += 1;
            return Err(SendError::LimitExceeded(format!(
                "a record of {size} bytes would take this call past {} bytes, the most a call may send (max_output_bytes_per_call); {} bytes sent so far",
                rules.max_bytes, self.bytes
            )));
        }
        self.bytes += size;
        self.records.push(record);
        Ok(())
    }
}

/// Rules shared by every call of a pipeline.
pub(crate) type SharedOutputRules = Arc<OutputRules>;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, payload: &[u8]) -> OutputRecord {
        OutputRecord {
            topic: topic.into(),
            key: None,
            payload: Some(payload.to_vec()),
            headers: Vec::new(),
            partition: None,
        }
    }

    #[test]
    fn sends_outside_the_outputs_or_past_the_bounds_are_refused_and_counted() {
        let rules = OutputRules {
            topics: vec!["orders.enriched".into(), "audit.*".into()],
            max_records: 2,
            max_bytes: 64,
        };
        let mut outputs = Outputs::default();
        assert!(outputs
            .accept(record("orders.enriched", b"a"), &rules)
            .is_ok());
        let refused = outputs
            .accept(record("payments", b"b"), &rules)
            .unwrap_err();
        assert!(
            matches!(&refused, SendError::TopicNotAllowed(m) if m.contains("`payments`") && m.contains("audit.*")),
            "{refused:?}"
        );
        let too_big = outputs
            .accept(record("audit.x", &[0; 64]), &rules)
            .unwrap_err();
        assert!(
            matches!(too_big, SendError::LimitExceeded(m) if m.contains("max_output_bytes_per_call"))
        );
        assert!(outputs.accept(record("audit.x", b"c"), &rules).is_ok());
        let third = outputs.accept(record("audit.x", b"d"), &rules).unwrap_err();
        assert!(matches!(third, SendError::LimitExceeded(m) if m.contains("max_outputs_per_call")));
        let mut negative = record("audit.x", b"e");
        negative.partition = Some(-3);
        assert!(matches!(
            outputs.accept(negative, &rules),
            Err(SendError::Invalid(_))
        ));
        assert_eq!(outputs.records.len(), 2);
        assert_eq!(
            outputs.bytes,
            "orders.enriched".len() + 1 + "audit.x".len() + 1
        );
        assert_eq!(
            outputs.refused,
            SendRefusals {
                undeclared_topic: 1,
                over_limit: 2,
                invalid: 1
            }
        );
    }
}
