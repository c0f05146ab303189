//! `[[tenant]]`: a team's pipelines, the topics it owns, its limits and its grants.

use super::raw::RawTenant;
use crate::outputs::pattern_matches;
use crate::plugin::{DirGrant, Grants};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Limits shared by all pipelines of one tenant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantLimits {
    /// Guest calls running at the same time across the tenant's pipelines; each pipeline keeps
    /// at most this many instances per plugin version.
    pub max_instances: usize,
    /// Messages received but not yet settled across the tenant's pipelines. When it is reached
    /// the tenant's partitions stop reading (librdkafka then stops fetching them).
    pub max_in_flight: usize,
    /// librdkafka's prefetch queue per partition (`queued.max.messages.kbytes`).
    pub max_queued_kib: u64,
    /// Consecutive traps in one partition after which it pauses (with the pipeline's backoff)
    /// before the next message, so a crashing guest cannot monopolise the CPU. 0: never.
    pub pause_after_traps: u32,
    /// Milliseconds of guest-call time per second the tenant may use over all its pipelines
    /// (1000 ≈ one core for CPU-bound guests); calls wait when it is used up. 0: unlimited.
    pub guest_ms_per_sec: u64,
    /// Messages per second the tenant may start handling over all its pipelines (a busy
    /// tenant's flood of cheap messages costs host CPU that `guest_ms_per_sec` does not see).
    /// 0: unlimited.
    pub max_messages_per_sec: u64,
    /// Guest log lines per second the tenant may write to the host's log over all its pipelines;
    /// the rest are dropped, counted and summarised. 0: unlimited.
    pub log_lines_per_sec: u32,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            max_instances: 64,
            max_in_flight: 4096,
            max_queued_kib: 16 * 1024,
            pause_after_traps: 3,
            guest_ms_per_sec: 0,
            max_messages_per_sec: 0,
            log_lines_per_sec: crate::plugin::DEFAULT_LINES_PER_SEC,
        }
    }
}

/// A validated tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// Unique among tenants; a label on its pipelines' logs, metrics and dead letters.
    pub name: String,
    /// Owned topics and prefixes (`orders.*`); empty for a tenant only named by pipelines.
    pub topics: Vec<String>,
    /// Owned topics (or patterns) other tenants may read: topic → the tenants that may. Every
    /// key falls under `topics`, every reader is a tenant.
    pub share: BTreeMap<String, Vec<String>>,
    /// Owned topics (or patterns) other tenants may write outputs and dead letters to: topic →
    /// the tenants that may.
    pub share_write: BTreeMap<String, Vec<String>>,
    /// OCI registries (`HOST` for any port, or `HOST:PORT`) the tenant's deploys may pull
    /// components from; none by default. A deploy names its registry, and it is the platform's
    /// file that decides which hosts members connect to for a tenant.
    pub registries: Vec<String>,
    /// Limits shared by all of the tenant's pipelines.
    pub limits: TenantLimits,
    /// What the tenant's guests may reach, the same for all of its pipelines.
    pub grants: Arc<Grants>,
}

impl TenantConfig {
    /// A tenant that owns nothing, with default limits and no grants.
    pub fn implicit(name: &str) -> Self {
        TenantConfig {
            name: name.to_string(),
            topics: Vec::new(),
            share: BTreeMap::new(),
            share_write: BTreeMap::new(),
            registries: Vec::new(),
            limits: TenantLimits::default(),
            grants: Arc::default(),
        }
    }

    /// Whether the tenant's deploys may pull from `registry` (`HOST[:PORT]`).
    pub fn may_pull_from(&self, registry: &str) -> bool {
        crate::oci::listed(&self.registries, registry)
    }

    /// The owned pattern `topic` falls under, if any.
    fn owned_pattern(&self, topic: &str) -> Option<&str> {
        self.topics
            .iter()
            .find(|p| pattern_matches(p, topic))
            .map(String::as_str)
    }

    /// Whether `reader` may read `topic` (owned by this tenant) through a share.
    fn shares_with(&self, topic: &str, reader: &str) -> bool {
        Self::shared(&self.share, topic, reader)
    }

    /// Whether `writer` may write `topic` (owned by this tenant) through a write share.
    fn shares_writes_with(&self, topic: &str, writer: &str) -> bool {
        Self::shared(&self.share_write, topic, writer)
    }

    fn shared(shares: &BTreeMap<String, Vec<String>>, topic: &str, tenant: &str) -> bool {
        shares
            .iter()
            .any(|(p, tenants)| pattern_matches(p, topic) && tenants.iter().any(|t| t == tenant))
    }
}

/// Whether two ownership patterns can match a common topic.
fn patterns_overlap(a: &str, b: &str) -> bool {
    match (a.strip_suffix('*'), b.strip_suffix('*')) {
        (Some(pa), Some(pb)) => pa.starts_with(pb) || pb.starts_with(pa),
        (Some(pa), None) => b.starts_with(pa),
        (None, Some(pb)) => a.starts_with(pb),
        (None, None) => a == b,
    }
}

/// Validates a tenant's own fields; `tenant_err` phrases an error for a field of it.
pub(super) fn validate_tenant(
    raw: &RawTenant,
    base: &Path,
    tenant_err: &dyn Fn(&str, String) -> String,
) -> Result<TenantConfig, String> {
    for topic in &raw.topics {
        if topic.trim().is_empty() || topic[..topic.len().saturating_sub(1)].contains('*') {
            return Err(tenant_err(
                "topics",
                format!("has {topic:?}: a topic name, or a prefix ending in `*`"),
            ));
        }
    }
    for (i, a) in raw.topics.iter().enumerate() {
        if let Some(b) = raw.topics[i + 1..].iter().find(|b| patterns_overlap(a, b)) {
            return Err(tenant_err(
                "topics",
                format!("lists {a:?} and {b:?}, which overlap"),
            ));
        }
    }
    for registry in &raw.registries {
        crate::oci::check_registry_name(registry)
            .map_err(|e| tenant_err("registries", format!("lists {registry:?}: {e}")))?;
    }
    for (field, shares) in [("share", &raw.share), ("share_write", &raw.share_write)] {
        for shared in shares.keys() {
            if !raw.topics.iter().any(|owned| {
                pattern_matches(owned, shared) || (shared.ends_with('*') && owned == shared)
            }) {
                return Err(tenant_err(
                    field,
                    format!("shares {shared:?}, which is not among the tenant's `topics`"),
                ));
            }
        }
    }
    let defaults = TenantLimits::default();
    let positive = |field: &str, v: Option<u32>, default: usize| match v {
        Some(0) => Err(tenant_err(field, "must be at least 1".into())),
        Some(n) => Ok(n as usize),
        None => Ok(default),
    };
    let limits = TenantLimits {
        max_instances: positive(
            "limits.max_instances",
            raw.limits.max_instances,
            defaults.max_instances,
        )?,
        max_in_flight: positive(
            "limits.max_in_flight",
            raw.limits.max_in_flight,
            defaults.max_in_flight,
        )?,
        max_queued_kib: match raw.limits.max_queued_kib {
            Some(k) if !(64..=2_097_151).contains(&k) => {
                return Err(tenant_err(
                    "limits.max_queued_kib",
                    "must be between 64 and 2097151".into(),
                ))
            }
            Some(k) => k,
            None => defaults.max_queued_kib,
        },
        pause_after_traps: raw
            .limits
            .pause_after_traps
            .unwrap_or(defaults.pause_after_traps),
        guest_ms_per_sec: match raw.limits.guest_ms_per_sec {
            Some(ms) if ms > 0 && ms < 10 => {
                return Err(tenant_err(
                    "limits.guest_ms_per_sec",
                    "must be 0 (unlimited) or at least 10".into(),
                ))
            }
            Some(ms) => ms,
            None => defaults.guest_ms_per_sec,
        },
        max_messages_per_sec: raw
            .limits
            .max_messages_per_sec
            .unwrap_or(defaults.max_messages_per_sec),
        log_lines_per_sec: raw
            .limits
            .log_lines_per_sec
            .unwrap_or(defaults.log_lines_per_sec),
    };
    let read_only_dir = match &raw.grants.read_only_dir {
        None => None,
        Some(dir) => {
            let host = base.join(&dir.host);
            if !host.is_dir() {
                return Err(tenant_err(
                    "grants.read_only_dir.host",
                    format!("points at {}, which is not a directory", host.display()),
                ));
            }
            if !dir.guest.starts_with('/') {
                return Err(tenant_err(
                    "grants.read_only_dir.guest",
                    format!(
                        "must be an absolute guest path like \"/data\", not {:?}",
                        dir.guest
                    ),
                ));
            }
            Some(DirGrant {
                host,
                guest: dir.guest.clone(),
            })
        }
    };
    let mut env = Vec::new();
    for name in &raw.grants.env {
        match std::env::var(name) {
            Ok(value) => env.push((name.clone(), value)),
            Err(_) => {
                return Err(tenant_err(
                    "grants.env",
                    format!("grants {name}, which is not set in Ackbar's environment"),
                ))
            }
        }
    }
    for host in &raw.grants.http_hosts {
        let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let port_ok = host
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_ok());
        if name.is_empty() || name.contains('/') || name[1..].contains('*') || !port_ok {
            return Err(tenant_err(
                "grants.http_hosts",
                format!("has {host:?}: use host, host:port or *.domain"),
            ));
        }
    }
    Ok(TenantConfig {
        name: raw.name.clone(),
        topics: raw.topics.clone(),
        share: raw.share.clone(),
        share_write: raw.share_write.clone(),
        registries: raw.registries.clone(),
        limits,
        grants: Arc::new(Grants {
            read_only_dir,
            env,
            http_hosts: raw.grants.http_hosts.clone(),
        }),
    })
}

/// Refuses two tenants owning the same topic, and shares with tenants that do not exist.
pub(super) fn check_ownership_between(tenants: &[TenantConfig]) -> Result<(), String> {
    for (i, a) in tenants.iter().enumerate() {
        for b in &tenants[i + 1..] {
            for pa in &a.topics {
                if let Some(pb) = b.topics.iter().find(|pb| patterns_overlap(pa, pb)) {
                    return Err(format!(
                        "tenant '{}': field `topics` has {pa:?}, which overlaps {pb:?} of tenant '{}'; a topic has one owner",
                        a.name, b.name
                    ));
                }
            }
        }
        for (topic, readers) in a.share.iter().chain(&a.share_write) {
            if let Some(unknown) = readers
                .iter()
                .find(|r| !tenants.iter().any(|t| &t.name == *r))
            {
                return Err(format!(
                    "tenant '{}': field `share` shares {topic:?} with '{unknown}', which is not a tenant",
                    a.name
                ));
            }
        }
    }
    Ok(())
}

/// Whether a tenant owns `topic` (a name, or a prefix ending in `*`).
pub(super) fn has_owner(tenants: &[TenantConfig], topic: &str) -> bool {
    tenants.iter().any(|t| t.owned_pattern(topic).is_some())
}

/// Why `reader` may not read `topic`, if it may not: another tenant owns it and does not share it.
pub(super) fn read_refusal(tenants: &[TenantConfig], reader: &str, topic: &str) -> Option<String> {
    let owner = tenants.iter().find(|t| t.owned_pattern(topic).is_some())?;
    if owner.name == reader || owner.shares_with(topic, reader) {
        return None;
    }
    Some(format!(
        "reads `{topic}`, owned by tenant '{}'; it can be shared with `share = {{ \"{topic}\" = [\"{reader}\"] }}` in that tenant",
        owner.name
    ))
}

/// Why `writer` may not write (outputs, dead letters) to `topic`, if it may not: another tenant
/// owns it and does not share it for writing. A topic nobody owns is free, as for reading.
pub(super) fn write_refusal(tenants: &[TenantConfig], writer: &str, topic: &str) -> Option<String> {
    let owner = tenants.iter().find(|t| t.owned_pattern(topic).is_some())?;
    if owner.name == writer || owner.shares_writes_with(topic, writer) {
        return None;
    }
    Some(format!(
        "writes `{topic}`, owned by tenant '{}'; tenant '{writer}' may write to it only if that tenant shares it with `share_write = {{ \"{topic}\" = [\"{writer}\"] }}`",
        owner.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_and_overlap() {
        assert!(pattern_matches("orders", "orders"));
        assert!(!pattern_matches("orders", "orders.eu"));
        assert!(pattern_matches("orders.*", "orders.eu"));
        assert!(!pattern_matches("orders.*", "orders"));
        assert!(patterns_overlap("orders.*", "orders.eu"));
        assert!(patterns_overlap("orders.*", "orders.eu.*"));
        assert!(patterns_overlap("o*", "orders.*"));
        assert!(!patterns_overlap("orders.*", "payments.*"));
        assert!(!patterns_overlap("orders", "orders.eu"));
    }

    #[test]
    fn reading_another_tenants_topic_needs_a_share() {
        let mut shop = TenantConfig::implicit("shop");
        shop.topics = vec!["orders".into(), "orders.*".into()];
        shop.share.insert("orders".into(), vec!["analytics".into()]);
        let tenants = vec![shop, TenantConfig::implicit("analytics")];
        assert_eq!(read_refusal(&tenants, "shop", "orders.eu"), None);
        assert_eq!(read_refusal(&tenants, "analytics", "orders"), None);
        assert!(read_refusal(&tenants, "analytics", "orders.eu")
            .unwrap()
            .contains("owned by tenant 'shop'"));
        assert!(read_refusal(&tenants, "default", "orders").is_some());
        assert_eq!(read_refusal(&tenants, "default", "clicks"), None);
        assert!(write_refusal(&tenants, "analytics", "orders.dlq").is_some());
        assert_eq!(write_refusal(&tenants, "shop", "orders.dlq"), None);
    }
}
