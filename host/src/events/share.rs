//! A share-group pipeline's dealings with the broker: records acquired, acknowledgements applied
//! or refused.

use super::Recorder;
use kafka_share::{AckKind, AckReport, RecordId};

/// The broker's error code for a record this member no longer holds (its lock ran out).
const INVALID_RECORD_STATE: i16 = 121;

/// `count` records acquired by one fetch.
pub(crate) struct ShareAcquired {
    pub(crate) count: usize,
}

impl ShareAcquired {
    /// Counts them; a fetch that worked also ends an episode of failing reads.
    pub(crate) fn emit(self, to: &Recorder) {
        to.consume_faults.recovered();
        if let Some(share) = &to.share {
            share.acquired.increment(self.count as u64);
        }
    }
}

/// What the broker applied of the acknowledgements sent since the last report, and what it
/// refused.
pub(crate) struct ShareAcknowledged {
    pub(crate) report: AckReport,
}

impl ShareAcknowledged {
    /// Counts each kind applied; logs each refusal (the record is delivered again), counting a
    /// lock that ran out as a lock expiry.
    pub(crate) fn emit(self, to: &Recorder) {
        let report = self.report;
        if let Some(m) = &to.share {
            m.accepted.increment(report.accepted);
            m.released.increment(report.released);
            m.rejected.increment(report.rejected);
            m.renewed.increment(report.renewed);
        }
        for failure in report.failures {
            if failure.error.code() == Some(INVALID_RECORD_STATE) {
                if let Some(m) = &to.share {
                    m.lock_expiries.increment(1);
                }
                to.in_span(|| tracing::warn!(record = %failure.record, "the acquisition lock ran out before the {:?} reached the broker; the record is delivered again", failure.kind));
            } else {
                to.in_span(|| tracing::warn!(record = %failure.record, "the broker refused the {:?}: {}; the record is delivered again", failure.kind, failure.error));
            }
        }
    }
}

/// A settled record could not be acknowledged: the broker took it back (its lock ran out, or
/// the share session was reset), so it is delivered again and this outcome is dropped.
pub(crate) struct AcknowledgeRefused<'a> {
    pub(crate) record: &'a RecordId,
    pub(crate) kind: AckKind,
    pub(crate) error: &'a dyn std::fmt::Display,
}

impl AcknowledgeRefused<'_> {
    pub(crate) fn emit(self, to: &Recorder) {
        if let Some(m) = &to.share {
            m.lock_expiries.increment(1);
        }
        to.in_span(|| tracing::warn!(record = %self.record, "cannot acknowledge ({:?}): {}; the broker delivers the record again", self.kind, self.error));
    }
}
