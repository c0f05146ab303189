//! The fleet's control plane, kept in Kafka: what every member of a fleet reads to run the
//! same handlers. Each part is a compacted control topic:
//!
//! - the plugin store ([`PluginStore`]): component bytes, content-addressed;
//! - the desired state ([`DesiredState`]): per tenant, the pipelines it deployed, each with its
//!   plugin's digest, its spec and a generation;
//! - the status ([`StatusTopic`]): what each member runs;
//! - the decisions ([`Decisions`]): canary verdicts, taken by the member that leads
//!   ([`Leadership`]).
//!
//! A member ([`Member`]) reads the desired state and makes it run; `ackbar deploy`, `rollback`
//! and `status` write the desired state and read the status.

mod clients;
mod decisions;
mod desired;
mod leader;
mod member;
mod plugin_store;
mod status;
mod topic;

pub use clients::warm_up;
pub use decisions::{decisions_topic, Decision, DecisionLog, Decisions, DecisionsFollower};
pub use desired::{
    pipelines_topic, plugins_topic, CanaryDeploy, DesiredFollower, DesiredPipeline, DesiredState,
    PastDeploy, Plan, HISTORY,
};
pub use leader::Leadership;
pub use member::{control_topics, host_name, Member, MemberLaunch};
pub use plugin_store::{
    chunk_key, PluginDigest, PluginStore, PluginUnavailable, CHUNK_BYTES, MAX_PLUGIN_BYTES,
};
pub use status::{
    now_ms, status_topic, CanaryStatus, Deployed, MemberStatus, PipelineStatus, Refusal,
    StatusFollower, StatusTopic,
};
