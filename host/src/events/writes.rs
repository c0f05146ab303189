//! Writes to the broker on a message's behalf: its outputs and its dead letter.

use super::{Observers, Recorder};
use crate::offsets::TopicPartition;
use crate::outputs::{OutputRecord, SendRefusals};

/// An attempt's outputs are on the broker (at least once).
pub(crate) struct OutputsWritten<'a> {
    pub(crate) records: &'a [OutputRecord],
}

impl OutputsWritten<'_> {
    /// Counts the records and their bytes per topic, and ends an episode of failing writes.
    pub(crate) fn emit(self, to: &Recorder) {
        to.outputs.published_records(self.records);
        to.output_faults.recovered();
    }
}

/// Writing an attempt's outputs failed; it is retried, and the message's offset waits.
pub(crate) struct OutputWriteFailed<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) attempt: u32,
    pub(crate) error: &'a anyhow::Error,
}

impl OutputWriteFailed<'_> {
    /// Counts the failure, logs it once per episode, and marks the partition stuck on the
    /// message until a write succeeds.
    pub(crate) fn emit(self, to: &Recorder) {
        to.outputs.write_errors.increment(1);
        to.output_faults.fault(&format_args!(
            "{}: offset {}: {:#}; retrying, the offset waits",
            self.tp, self.offset, self.error
        ));
        to.health.failing(self.tp, self.offset, self.attempt);
    }
}

/// `producer.send` calls refused to the guest during one handler call.
pub(crate) struct SendsRefused<'a> {
    pub(crate) refused: &'a SendRefusals,
}

impl SendsRefused<'_> {
    /// Counts them by reason.
    pub(crate) fn emit(self, to: &Recorder) {
        if self.refused.total() > 0 {
            to.outputs.refused(self.refused);
        }
    }
}

/// A message's dead letter is on the broker (at least once), or in its partition's open
/// transaction (exactly once); its offset may now be committed.
pub(crate) struct DeadLettered<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) dead_letter_topic: &'a str,
    /// `(partition, offset)` of the dead letter in `dead_letter_topic`; `None` inside a
    /// transaction, where it is known only once the transaction commits.
    pub(crate) written_to: Option<(i32, i64)>,
    /// Why the message was dead-lettered ([`DeliveryEvent::settle_reason`](super::DeliveryEvent::settle_reason)).
    pub(crate) reason: &'a str,
}

impl DeadLettered<'_> {
    /// Counts the dead letter, ends a dead-letter fault episode, and logs it at info level.
    pub(crate) fn emit(self, to: &Observers<'_>) {
        let r = to.recorder;
        to.topic.dead_letters.increment(1);
        r.dead_letter_faults.recovered();
        r.in_span(|| match self.written_to {
            Some((partition, at)) => tracing::info!(
                partition = %self.tp, offset = self.offset,
                "dead-lettered to {}/{partition} at offset {at}: {}", self.dead_letter_topic, self.reason
            ),
            None => tracing::info!(
                partition = %self.tp, offset = self.offset,
                "dead-lettered to {} in the partition's transaction: {}", self.dead_letter_topic, self.reason
            ),
        })
    }
}

/// Writing a dead letter failed; it is retried, and the offset stays uncommitted meanwhile.
pub(crate) struct DeadLetterFailed<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) attempts: u32,
    pub(crate) error: &'a anyhow::Error,
}

impl DeadLetterFailed<'_> {
    /// Counts the failure, logs it through the dead-letter fault log (once per episode, then a
    /// reminder at most every 30 s), and marks the partition stuck on the message.
    pub(crate) fn emit(self, to: &Observers<'_>) {
        let r = to.recorder;
        to.topic.dead_letter_errors.increment(1);
        r.dead_letter_faults.fault(&format_args!(
            "{}: offset {}: {:#}; the offset is not committed until it succeeds",
            self.tp, self.offset, self.error
        ));
        r.health.failing(self.tp, self.offset, self.attempts);
    }
}
