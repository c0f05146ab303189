//! One pipeline's checks: its fields, its tenant's bounds and topics, its outputs, group type
//! and transactions, each error naming the pipeline and the field.

use super::super::pipeline::CLASSIC_ONLY_PROPERTIES;
use super::super::raw::{RawLimits, RawPipeline, RawTenant, RawTenantLimits};
use super::super::tenant;
use super::super::*;
use super::{check_managed, properties};
use crate::outputs::{
    pattern_matches, OutputRules, DEFAULT_MAX_OUTPUTS_PER_CALL, DEFAULT_MAX_OUTPUT_BYTES_PER_CALL,
};
use crate::plugin::PluginLimits;
use crate::policy::AckPolicy;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// What every pipeline of a file is checked against.
pub(super) struct PipelineContext<'a> {
    /// Names the file in errors.
    pub(super) origin: &'a str,
    /// Plugin paths are resolved against it.
    pub(super) base: &'a Path,
    /// Every tenant, declared or named by a pipeline.
    pub(super) tenants: &'a [TenantConfig],
    /// The declared tenants as written, for their limits.
    pub(super) raw_tenants: &'a [RawTenant],
    /// The `[kafka]` properties every pipeline starts from.
    pub(super) global_kafka: &'a BTreeMap<String, String>,
}

/// Validates one pipeline (`nested` under its `[[tenant]]`); `names` are the pipelines'
/// names so far, which must be unique.
pub(super) fn validate_pipeline(
    p: RawPipeline,
    nested: bool,
    names: &mut HashSet<String>,
    cx: &PipelineContext<'_>,
) -> Result<PipelineConfig, ConfigError> {
    let (origin, base, tenants) = (cx.origin, cx.base, cx.tenants);
    let tenant_name = p
        .tenant
        .clone()
        .unwrap_or_else(|| DEFAULT_TENANT.to_string());
    let perr = |field: &str, msg: String| {
        let scope = if nested {
            format!("tenant '{tenant_name}': ")
        } else {
            String::new()
        };
        ConfigError(format!(
            "{origin}: {scope}pipeline '{}': field `{field}` {msg}",
            p.name
        ))
    };
    if p.name.trim().is_empty() {
        return Err(ConfigError(format!(
            "{origin}: a pipeline has an empty `name`"
        )));
    }
    if !names.insert(p.name.clone()) {
        return Err(perr("name", "is used by another pipeline".into()));
    }
    if p.topics.is_empty() || p.topics.iter().any(|t| t.trim().is_empty()) {
        return Err(perr(
            "topics",
            "must list at least one non-empty topic".into(),
        ));
    }
    let group_id = p.group_id.clone().filter(|g| !g.trim().is_empty());
    if group_id.is_none() && p.ack_policy.commits_explicitly() {
        return Err(perr(
            "group_id",
            format!(
                "is required by ack_policy {} (offsets are committed to the consumer group)",
                p.ack_policy
            ),
        ));
    }
    let tenant = match &p.tenant {
        Some(t) if t.trim().is_empty() => return Err(perr("tenant", "is empty".into())),
        _ => tenants
            .iter()
            .find(|t| t.name == tenant_name)
            .expect("every named tenant is known")
            .clone(),
    };
    for topic in &p.topics {
        if let Some(why) = tenant::read_refusal(tenants, &tenant.name, topic) {
            return Err(perr("topics", why));
        }
    }
    if let Some(dlq) = &p.dead_letter_topic {
        if let Some(why) = tenant::write_refusal(tenants, &tenant.name, dlq) {
            return Err(perr("dead_letter_topic", why));
        }
    }
    let limits = pipeline_limits(&p.limits, &raw_tenant_limits(cx.raw_tenants, &tenant.name))
        .map_err(|(field, msg)| perr(field, msg))?;
    if p.commit_interval_ms == 0 {
        return Err(perr("commit_interval_ms", "must be greater than 0".into()));
    }
    if !(p.backoff.multiplier >= 1.0 && p.backoff.multiplier.is_finite()) {
        return Err(perr("backoff.multiplier", "must be a number ≥ 1".into()));
    }
    if p.backoff.initial_ms > p.backoff.max_ms {
        return Err(perr(
            "backoff.initial_ms",
            format!(
                "({}) exceeds backoff.max_ms ({})",
                p.backoff.initial_ms, p.backoff.max_ms
            ),
        ));
    }
    if p.max_attempts == Some(0) {
        return Err(perr("max_attempts", "must be at least 1".into()));
    }
    let dead_letter_topic = match &p.dead_letter_topic {
        Some(t) if t.trim().is_empty() => return Err(perr("dead_letter_topic", "is empty".into())),
        Some(t) if p.topics.contains(t) => {
            return Err(perr(
                "dead_letter_topic",
                format!(
                    "`{t}` is also a topic the pipeline reads: dead letters would be handled again"
                ),
            ))
        }
        other => other.clone(),
    };
    if dead_letter_topic.is_some() && !p.ack_policy.commits_explicitly() {
        return Err(perr(
            "dead_letter_topic",
            format!(
                "needs a policy that commits after handling; {} commits before",
                p.ack_policy
            ),
        ));
    }
    if p.dead_letter_timeout_ms == 0 {
        return Err(perr(
            "dead_letter_timeout_ms",
            "must be greater than 0".into(),
        ));
    }
    let (ordering, max_attempts) =
        validate_group_type(&p, dead_letter_topic.is_some()).map_err(|(f, m)| perr(f, m))?;
    let outputs = validate_outputs(&p, tenants, &tenant.name).map_err(|(f, m)| perr(f, m))?;
    let transactions =
        validate_transactions(&p, ordering, group_id.as_deref()).map_err(|(f, m)| perr(f, m))?;
    if p.output_timeout_ms == 0 {
        return Err(perr("output_timeout_ms", "must be greater than 0".into()));
    }
    let max_in_flight = match (ordering, p.max_in_flight) {
        (_, Some(0)) => return Err(perr("max_in_flight", "must be at least 1".into())),
        (Ordering::Partition, Some(n)) if n > 1 => {
            return Err(perr(
                "max_in_flight",
                format!("is {n}, but ordering = \"partition\" handles one message at a time; use ordering = \"key\" or \"unordered\""),
            ))
        }
        (Ordering::Partition, _) => 1,
        (_, Some(n)) => n as usize,
        (_, None) => DEFAULT_MAX_IN_FLIGHT,
    };
    if p.max_batch == 0 || p.max_batch as usize > MAX_BATCH_LIMIT {
        return Err(perr(
            "max_batch",
            format!(
                "is {}, must be between 1 and {MAX_BATCH_LIMIT}",
                p.max_batch
            ),
        ));
    }
    let overrides = properties(&p.kafka).map_err(|m| perr("kafka", m))?;
    check_managed(&overrides).map_err(|m| perr("kafka", m))?;
    let mut kafka = cx.global_kafka.clone();
    kafka.extend(overrides);
    kafka.remove("bootstrap.servers");
    if p.delivery == DeliveryGuarantee::ExactlyOnce
        && kafka
            .get("isolation.level")
            .is_some_and(|v| v != "read_committed")
    {
        return Err(perr(
            "kafka",
            "sets `isolation.level` to read_uncommitted, but an exactly-once pipeline reads committed data only (and waits for its own pending offsets)".into(),
        ));
    }

    let group_instance_id = group_membership(&p, &tenant.name, cx.global_kafka, &kafka)
        .map_err(|(field, m)| perr(field, m))?;
    if p.group_type == GroupType::Share {
        if let Some(protocol) = kafka
            .get("security.protocol")
            .filter(|v| !v.eq_ignore_ascii_case("plaintext"))
        {
            return Err(perr(
                "kafka",
                format!("sets `security.protocol` to {protocol}, but the share-group client connects in plaintext only (no TLS or SASL yet): use a classic group on this cluster"),
            ));
        }
    }
    // `join` keeps an absolute path as it is.
    let plugin = base.join(&p.plugin);
    if !plugin.is_file() {
        return Err(perr(
            "plugin",
            format!("points at {}, which is not a file", plugin.display()),
        ));
    }
    Ok(PipelineConfig {
        name: p.name.clone(),
        tenant: tenant.name.clone(),
        topics: p.topics.clone(),
        group_type: p.group_type,
        group_protocol: p.group_protocol,
        group_instance_id,
        group_id,
        ack_policy: p.ack_policy,
        plugin,
        watch_plugin: p.watch_plugin,
        canary: None,
        ordering,
        max_in_flight,
        max_batch: p.max_batch as usize,
        smoke_payload: p.smoke_payload.clone().map(String::into_bytes),
        commit_interval: Duration::from_millis(p.commit_interval_ms),
        drain_timeout: Duration::from_millis(p.drain_timeout_ms),
        connect_timeout: Duration::from_millis(p.connect_timeout_ms),
        limits,
        backoff: p.backoff,
        max_attempts,
        dead_letter_topic,
        dead_letter_timeout: Duration::from_millis(p.dead_letter_timeout_ms),
        outputs,
        delivery: p.delivery,
        output_timeout: Duration::from_millis(p.output_timeout_ms),
        transactions,
        kafka,
        grants: tenant.grants.clone(),
        tenant_limits: tenant.limits,
    })
}

/// The pipeline's `outputs` and the per-call bounds on sending to them.
fn validate_outputs(
    p: &RawPipeline,
    tenants: &[TenantConfig],
    tenant: &str,
) -> Result<OutputRules, (&'static str, String)> {
    for topic in &p.outputs {
        if topic.trim().is_empty() || topic[..topic.len().saturating_sub(1)].contains('*') {
            return Err((
                "outputs",
                format!("has {topic:?}: a topic name, or a prefix ending in `*`"),
            ));
        }
        if let Some(input) = p.topics.iter().find(|t| pattern_matches(topic, t)) {
            return Err((
                "outputs",
                format!("has {topic:?}, which covers `{input}`, a topic the pipeline reads: its outputs would be handled again"),
            ));
        }
        if let Some(why) = tenant::write_refusal(tenants, tenant, topic) {
            return Err(("outputs", why));
        }
    }
    let max_records = match p.max_outputs_per_call {
        Some(0) => return Err(("max_outputs_per_call", "must be at least 1".into())),
        Some(n) => n as usize,
        None => DEFAULT_MAX_OUTPUTS_PER_CALL,
    };
    let max_bytes = match p.max_output_bytes_per_call {
        Some(0) => return Err(("max_output_bytes_per_call", "must be at least 1".into())),
        Some(n) if n > MAX_OUTPUT_BYTES_PER_CALL => {
            return Err((
                "max_output_bytes_per_call",
                format!("is {n}; at most {MAX_OUTPUT_BYTES_PER_CALL} (64 MiB) are held per call"),
            ))
        }
        Some(n) => n as usize,
        None => DEFAULT_MAX_OUTPUT_BYTES_PER_CALL,
    };
    Ok(OutputRules {
        topics: p.outputs.clone(),
        max_records,
        max_bytes,
    })
}

/// The most `max_output_bytes_per_call` may be: what one call holds in host memory until it is
/// published.
const MAX_OUTPUT_BYTES_PER_CALL: u64 = 64 << 20;

/// The longest `[pipeline.transaction] max_ms`.
const MAX_TRANSACTION_MS: u64 = 60_000;

/// What `group_type` allows: the pipeline's `ordering` and `max_attempts`, defaults applied.
///
/// A share group settles each record on its own, so only what keeps its meaning there is
/// accepted: no order across members, no commit before handling (`ACK_FIRST`), no transaction
/// (Kafka cannot commit share acknowledgements in one), and no pause of a partition (the broker
/// archives a record past its delivery limit; a dead-letter topic keeps it instead).
fn validate_group_type(
    p: &RawPipeline,
    dead_letters: bool,
) -> Result<(Ordering, Option<u32>), (&'static str, String)> {
    if p.group_type == GroupType::Classic {
        return Ok((p.ordering.unwrap_or_default(), p.max_attempts));
    }
    if p.ack_policy == AckPolicy::AckFirst {
        return Err((
            "ack_policy",
            "is ACK_FIRST (the default), which commits before handling; a share group acknowledges each record after its handler: use ACK, REJECT_ON_ERROR, NACK_ON_ERROR or MANUAL".into(),
        ));
    }
    if p.delivery == DeliveryGuarantee::ExactlyOnce {
        return Err((
            "delivery",
            "is exactly-once, but Kafka transactions cannot hold share-group acknowledgements: a share pipeline is at-least-once".into(),
        ));
    }
    if let Some(ordering @ (Ordering::Partition | Ordering::Key)) = p.ordering {
        return Err((
            "ordering",
            format!(
                "is {}, but a share group hands one partition's records to many members at once, so no order holds; leave it out (or \"unordered\")",
                if ordering == Ordering::Key { "\"key\"" } else { "\"partition\"" }
            ),
        ));
    }
    let max_attempts = match (p.max_attempts, dead_letters) {
        (Some(_), false) => {
            return Err((
                "max_attempts",
                "needs a `dead_letter_topic` on a share pipeline: a share group cannot pause on a message, and without a topic the group's delivery count limit (`share.delivery.count.limit`) already ends its redeliveries".into(),
            ))
        }
        (None, true) => Some(DEFAULT_SHARE_MAX_ATTEMPTS),
        (max_attempts, _) => max_attempts,
    };
    Ok((Ordering::Unordered, max_attempts))
}

/// `delivery` and `[pipeline.transaction]`.
fn validate_transactions(
    p: &RawPipeline,
    ordering: Ordering,
    group_id: Option<&str>,
) -> Result<TransactionSizing, (&'static str, String)> {
    let t = &p.transaction;
    let exactly_once = p.delivery == DeliveryGuarantee::ExactlyOnce;
    if exactly_once {
        if !matches!(
            p.ack_policy,
            AckPolicy::Ack | AckPolicy::RejectOnError | AckPolicy::NackOnError
        ) {
            return Err((
                "delivery",
                format!(
                    "is exactly-once, which needs a policy that settles every message (ACK, REJECT_ON_ERROR or NACK_ON_ERROR); {} {}",
                    p.ack_policy,
                    if p.ack_policy == AckPolicy::AckFirst {
                        "commits before handling"
                    } else {
                        "may leave messages unsettled"
                    }
                ),
            ));
        }
        if ordering != Ordering::Partition {
            return Err((
                "delivery",
                "is exactly-once, which needs ordering = \"partition\": a transaction commits a partition's offset with the outputs of every message before it".into(),
            ));
        }
    } else if t.max_messages.is_some() || t.max_ms.is_some() || t.id_prefix.is_some() {
        return Err((
            "transaction",
            "is set, but transactions are used only with delivery = \"exactly-once\"".into(),
        ));
    }
    let max_messages = match t.max_messages {
        Some(0) => return Err(("transaction.max_messages", "must be at least 1".into())),
        Some(n) => n as usize,
        None => DEFAULT_TRANSACTION_MESSAGES,
    };
    let max_ms = match t.max_ms {
        Some(0) => return Err(("transaction.max_ms", "must be greater than 0".into())),
        Some(n) if n > MAX_TRANSACTION_MS => {
            return Err((
                "transaction.max_ms",
                format!("is {n}; at most {MAX_TRANSACTION_MS}: a transaction open longer holds its readers back, and brokers abort transactions past `transaction.max.timeout.ms` (15 min by default)"),
            ))
        }
        Some(n) => n,
        None => DEFAULT_TRANSACTION_MS,
    };
    let id_prefix = match &t.id_prefix {
        Some(prefix) if prefix.trim().is_empty() => {
            return Err(("transaction.id_prefix", "is empty".into()))
        }
        Some(prefix) => prefix.clone(),
        None => format!("ackbar.{}", group_id.unwrap_or(&p.name)),
    };
    Ok(TransactionSizing {
        max_messages,
        max_age: Duration::from_millis(max_ms),
        id_prefix,
    })
}

fn raw_tenant_limits(tenants: &[RawTenant], name: &str) -> RawTenantLimits {
    tenants
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.limits.clone())
        .unwrap_or_default()
}

/// A pipeline's limits: its own, else its tenant's, else the defaults. A pipeline may tighten
/// its tenant's limits, never loosen them. Errors are (field, message).
fn pipeline_limits(
    own: &RawLimits,
    tenant: &RawTenantLimits,
) -> Result<PluginLimits, (&'static str, String)> {
    let defaults = PluginLimits::default();
    let pick = |field: &'static str, own: Option<u64>, tenant: Option<u64>| match (own, tenant) {
        (Some(0), _) | (None, Some(0)) if field == "limits.memory_mib" => {
            Err((field, "must be between 1 and 4096".to_string()))
        }
        (Some(0), _) | (None, Some(0)) => Err((field, "must be greater than 0".to_string())),
        (Some(o), Some(t)) if o > t => {
            Err((field, format!("is {o}, above its tenant's limit of {t}")))
        }
        (o, t) => Ok(o.or(t)),
    };
    let deadline_ms = pick("limits.deadline_ms", own.deadline_ms, tenant.deadline_ms)?
        .unwrap_or(defaults.deadline.as_millis() as u64);
    let memory_mib = pick("limits.memory_mib", own.memory_mib, tenant.memory_mib)?
        .unwrap_or((defaults.memory_bytes >> 20) as u64);
    if memory_mib > 4096 {
        return Err(("limits.memory_mib", "must be between 1 and 4096".into()));
    }
    let fuel = pick("limits.fuel", own.fuel, tenant.fuel)?;
    Ok(PluginLimits {
        deadline: Duration::from_millis(deadline_ms),
        memory_bytes: (memory_mib as usize) << 20,
        fuel,
    })
}

/// Checks `group_protocol` against the pipeline's librdkafka properties (`own` its
/// `[pipeline.kafka]`, `kafka` with the global ones) and expands `group_instance_id`; an error
/// names its field.
fn group_membership(
    p: &RawPipeline,
    tenant: &str,
    global: &BTreeMap<String, String>,
    kafka: &BTreeMap<String, String>,
) -> Result<Option<String>, (&'static str, String)> {
    let in_group = p.group_type == GroupType::Classic && p.group_id.is_some();
    if !in_group && (p.group_protocol != GroupProtocol::Classic || p.group_instance_id.is_some()) {
        let field = match p.group_instance_id {
            Some(_) => "group_instance_id",
            None => "group_protocol",
        };
        return Err((
            field,
            "applies to a consumer group only (`group_id`, and `group_type = \"classic\"`)".into(),
        ));
    }
    if p.group_protocol == GroupProtocol::Consumer {
        for (key, instead) in CLASSIC_ONLY_PROPERTIES {
            if kafka.contains_key(key) {
                let set_in = match global.contains_key(key) {
                    true => "[kafka]",
                    false => "its `kafka` table",
                };
                return Err((
                    "group_protocol",
                    format!(
                        "is \"consumer\", which does not take `{key}` (set in {set_in}): {instead}"
                    ),
                ));
            }
        }
    }
    p.group_instance_id
        .as_deref()
        .map(|template| {
            expand_instance_id(template, &p.name, tenant, &crate::control::host_name())
                .map_err(|m| ("group_instance_id", m))
        })
        .transpose()
}

/// `template` with `{pipeline}`, `{tenant}` and `{hostname}` replaced: a static member's id,
/// the same each time the process starts on that host (a StatefulSet pod keeps its name).
pub(crate) fn expand_instance_id(
    template: &str,
    pipeline: &str,
    tenant: &str,
    hostname: &str,
) -> Result<String, String> {
    let mut id = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        id.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{template:?} has a `{{` without its `}}`"));
        };
        match &rest[open + 1..open + close] {
            "pipeline" => id.push_str(pipeline),
            "tenant" => id.push_str(tenant),
            "hostname" => id.push_str(hostname),
            other => {
                return Err(format!(
                    "{template:?} names {{{other}}}; the template knows {{pipeline}}, {{tenant}} and {{hostname}}"
                ))
            }
        }
        rest = &rest[open + close + 1..];
    }
    id.push_str(rest);
    let fits = (1..=249).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !fits {
        return Err(format!(
            "{template:?} becomes {id:?}: an instance id is 1 to 249 letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(id)
}
