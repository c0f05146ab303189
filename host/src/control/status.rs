//! What each member of a fleet runs, in the compacted status topic (`<prefix>.status`): one
//! record per member, keyed by its id, written on an interval and on every change, deleted when
//! the member stops. A member that crashed leaves its last record behind; readers take a
//! record older than three of its intervals for a member that is gone.

use super::topic::ControlTopic;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A record this much older than its member's interval is still live: clocks of members and
/// readers differ, and a loaded member publishes late.
const CLOCK_SLACK: Duration = Duration::from_secs(10);

/// The status topic under the control plane's `prefix`.
pub fn status_topic(prefix: &str) -> String {
    format!("{prefix}.status")
}

/// One member's status record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member's id: `host:pid:start`, unique per process.
    pub member: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// When the process started, in ms since the Unix epoch.
    pub started_ms: u64,
    /// When this record was written, in ms since the Unix epoch.
    pub updated_ms: u64,
    /// How often the member writes its record, in ms.
    pub interval_ms: u64,
    /// The tenants whose deploys this member runs: those its config declares.
    pub tenants: Vec<String>,
    /// Every pipeline the member runs, from its file and deployed.
    pub pipelines: Vec<PipelineStatus>,
}

/// One pipeline on one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub pipeline: String,
    /// For a deployed pipeline, the deploy it runs; `None` for a pipeline of the member's file.
    pub deployed: Option<Deployed>,
    /// The newest deploy the member refused, when it refused the newest one.
    pub refused: Option<Refusal>,
    /// The running plugin's version (its content hash); `None` while the pipeline is down.
    pub plugin_version: Option<String>,
    /// Why the pipeline is down, while it is.
    pub down: Option<String>,
    /// The partitions assigned to this member, as `topic/partition`.
    pub partitions: Vec<String>,
    /// Their consumer lag summed (messages behind the end), from librdkafka's statistics.
    #[serde(default)]
    pub lag: Option<i64>,
    /// Messages handled since the pipeline (re)started.
    pub messages: u64,
    /// Of those, calls that trapped.
    pub traps: u64,
    /// Of those, calls that returned an error.
    pub errors: u64,
    /// Messages per second over the last status interval.
    pub rate: f64,
    /// A canary deploy running here, with what each side counted on this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Why the newest deploy is not applied yet (its plugin cannot be fetched now): it is
    /// retried, and the version before it keeps running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// A canary on one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryStatus {
    /// The canary deploy's generation.
    pub generation: u64,
    /// The canary's plugin digest.
    pub plugin: String,
    /// Its version id, as `plugin_version` shows versions.
    pub version: String,
    /// Its share of the partitions, in percent.
    pub percent: u32,
    /// The canary's deliveries on this member since it started here.
    pub canary: crate::canary::Tally,
    /// The stable version's deliveries on this member over the same time.
    pub stable: crate::canary::Tally,
}

/// The deploy a member runs for a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    /// The deploy's generation.
    pub generation: u64,
    /// The plugin's digest.
    pub plugin: String,
}

/// A deploy a member did not apply, and why; the version before it keeps running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The refused deploy's generation.
    pub generation: u64,
    /// Its plugin's digest.
    pub plugin: String,
    /// Why, naming the tenant, pipeline and field or plugin.
    pub reason: String,
}

impl MemberStatus {
    /// Whether the record is recent enough for its member to be alive at `now` (ms since the
    /// epoch).
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        let expires = self
            .updated_ms
            .saturating_add(3 * self.interval_ms)
            .saturating_add(CLOCK_SLACK.as_millis() as u64);
        now_ms <= expires
    }

    /// This member's status of `tenant`'s pipeline `pipeline`.
    pub fn pipeline(&self, tenant: &str, pipeline: &str) -> Option<&PipelineStatus> {
        self.pipelines
            .iter()
            .find(|p| p.tenant == tenant && p.pipeline == pipeline)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The status topic.
#[derive(Debug, Clone)]
pub struct StatusTopic {
    topic: ControlTopic,
}

impl StatusTopic {
    /// The status topic `topic`, reached with the librdkafka `properties`.
    pub fn new(topic: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        StatusTopic {
            topic: ControlTopic::new(topic, properties),
        }
    }

    /// Creates the topic (compacted, one partition) unless it exists.
    pub async fn ensure_topic(&self) -> Result<()> {
        self.topic.ensure().await
    }

    /// Writes `status` as its member's record.
    pub async fn publish(&self, status: &MemberStatus) -> Result<()> {
        let value = serde_json::to_vec(status).expect("a status serializes");
        self.topic
            .write(&[(status.member.as_str(), Some(value.as_slice()))])
            .await
    }

    /// Deletes `member`'s record: it stopped.
    pub async fn remove(&self, member: &str) -> Result<()> {
        self.topic.write(&[(member, None)]).await
    }

    /// The members alive now, by id. A record that does not parse is skipped with a warning: a
    /// member of another version may write fields this one does not know. Blocking.
    pub fn read_live(&self) -> Result<Vec<MemberStatus>> {
        let mut records = BTreeMap::new();
        self.topic.read(|key, value| {
            records.insert(key.to_string(), value.map(<[u8]>::to_vec));
            Ok(())
        })?;
        Ok(live(self.topic.name(), &records))
    }

    /// Reads the status once, then follows it: [`StatusFollower::live`] takes in what members
    /// wrote since. Blocking.
    pub fn follow(&self) -> Result<StatusFollower> {
        let mut records = BTreeMap::new();
        let follower = self.topic.follow(|key, value| {
            records.insert(key.to_string(), value.map(<[u8]>::to_vec));
            Ok(())
        })?;
        Ok(StatusFollower {
            topic: self.topic.name().to_string(),
            follower,
            records,
        })
    }
}

/// The status topic, followed: for a command that waits until members report something.
pub struct StatusFollower {
    topic: String,
    follower: super::topic::Follower,
    records: BTreeMap<String, Option<Vec<u8>>>,
}

impl StatusFollower {
    /// The members alive now, after taking in what was written since the last call (waiting up
    /// to `wait` for something new). Blocking.
    pub fn live(&mut self, wait: std::time::Duration) -> Result<Vec<MemberStatus>> {
        let records = &mut self.records;
        self.follower.next(wait, |key, value| {
            records.insert(key.to_string(), value.map(<[u8]>::to_vec));
            Ok(())
        })?;
        Ok(live(&self.topic, &self.records))
    }
}

/// The live members among the newest record of each key.
fn live(topic: &str, records: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<MemberStatus> {
    let now = now_ms();
    records
        .iter()
        .filter_map(|(member, value)| {
            match serde_json::from_slice::<MemberStatus>(value.as_deref()?) {
                Ok(status) => Some(status),
                Err(e) => {
                    tracing::warn!("{topic}: member {member}: unreadable status: {e}");
                    None
                }
            }
        })
        .filter(|s| s.is_live_at(now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(updated_ms: u64, interval_ms: u64) -> MemberStatus {
        MemberStatus {
            member: "h:1:0".into(),
            host: "h".into(),
            pid: 1,
            started_ms: 0,
            updated_ms,
            interval_ms,
            tenants: vec![],
            pipelines: vec![],
        }
    }

    #[test]
    fn a_member_is_gone_three_intervals_and_the_slack_after_its_last_record() {
        let s = status(100_000, 5_000);
        let slack = CLOCK_SLACK.as_millis() as u64;
        assert!(s.is_live_at(100_000));
        assert!(s.is_live_at(115_000 + slack));
        assert!(!s.is_live_at(115_001 + slack));
        // A reader whose clock is behind the member's sees it live.
        assert!(s.is_live_at(90_000));
    }
}
