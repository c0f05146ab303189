//! From the file's text to a [`Config`]: parsing, defaults, and every check, each error naming the
//! file and, where it applies, the tenant, the pipeline and the field.

mod pipeline;

use super::raw::{RawConfig, RawPipeline, RawTenant};
use super::settings::MAX_WASM_STACK_KIB;
use super::tenant;
use super::*;
use pipeline::{validate_pipeline, PipelineContext};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// librdkafka properties Ackbar sets itself from the ack policy; configuring them would break
/// the policy's guarantees.
const MANAGED_PROPERTIES: [(&str, &str); 6] = [
    ("enable.auto.commit", "it follows from ack_policy"),
    ("enable.auto.offset.store", "it follows from ack_policy"),
    ("group.id", "use the pipeline's `group_id`"),
    ("group.protocol", "use the pipeline's `group_protocol`"),
    (
        "group.instance.id",
        "use the pipeline's `group_instance_id` (a template such as \"{pipeline}-{hostname}\")",
    ),
    (
        "transactional.id",
        "each input partition has its own; set `[pipeline.transaction] id_prefix`",
    ),
];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and validates config text; `origin` names it in errors, plugin paths are resolved
    /// against `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim_end())))?;
        let err = |msg: String| ConfigError(format!("{origin}: {msg}"));

        let global_kafka = properties(&raw.kafka).map_err(|m| err(format!("[kafka]: {m}")))?;
        check_managed(&global_kafka).map_err(|m| err(format!("[kafka]: {m}")))?;
        let brokers = match (&raw.brokers, global_kafka.get("bootstrap.servers")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "both `brokers` and [kafka] `bootstrap.servers` are set; keep one".into(),
                ))
            }
            (Some(b), None) if b.trim().eq_ignore_ascii_case("embedded") => Brokers::Embedded,
            (Some(b), None) if b.trim().is_empty() => {
                return Err(err(
                    "`brokers` is empty; use \"embedded\" or host:port".into()
                ))
            }
            (Some(b), None) => Brokers::Bootstrap(b.trim().to_string()),
            (None, Some(b)) => Brokers::Bootstrap(b.clone()),
            (None, None) => Brokers::Embedded,
        };
        if !(64..=MAX_WASM_STACK_KIB).contains(&raw.engine.max_wasm_stack_kib) {
            return Err(err(format!(
                "[engine]: field `max_wasm_stack_kib` must be between 64 and {MAX_WASM_STACK_KIB}"
            )));
        }
        if raw.run.restart_initial_ms == 0 || raw.run.restart_initial_ms > raw.run.restart_max_ms {
            return Err(err(
                "[run]: field `restart_initial_ms` must be greater than 0 and at most `restart_max_ms`".into(),
            ));
        }
        if raw.embedded.partitions < 1 {
            return Err(err(
                "[embedded]: field `partitions` must be at least 1".into()
            ));
        }
        if let Some(addr) = &raw.run.metrics_addr {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(err(format!(
                    "[run]: field `metrics_addr` must be host:port with an IP address, e.g. \"127.0.0.1:9464\", not {addr:?}"
                )));
            }
        }
        let mut control = raw.control;
        if let Some(control) = &mut control {
            control.registry_auth_file = control.registry_auth_file.take().map(|f| base.join(f));
            validate_control(control).map_err(|m| err(format!("[control]: {m}")))?;
        }
        if let Some(telemetry) = &raw.telemetry {
            crate::telemetry::check_settings(telemetry)
                .map_err(|m| err(format!("[telemetry]: {m}")))?;
        }
        // Declared tenants first, then the ones pipelines only name.
        let mut tenants = Vec::new();
        for t in &raw.tenants {
            let terr = |field: &str, msg: String| {
                format!("{origin}: tenant '{}': field `{field}` {msg}", t.name)
            };
            if t.name.trim().is_empty() {
                return Err(err("a [[tenant]] has an empty `name`".into()));
            }
            if tenants
                .iter()
                .any(|known: &TenantConfig| known.name == t.name)
            {
                return Err(ConfigError(terr(
                    "name",
                    "is used by another tenant".into(),
                )));
            }
            tenants.push(tenant::validate_tenant(t, base, &terr).map_err(ConfigError)?);
        }
        let mut raw_pipelines: Vec<(RawPipeline, bool)> =
            raw.pipelines.into_iter().map(|p| (p, false)).collect();
        for t in &raw.tenants {
            for p in &t.pipelines {
                if p.tenant.as_ref().is_some_and(|named| named != &t.name) {
                    return Err(err(format!(
                        "tenant '{}': pipeline '{}': field `tenant` names another tenant; leave it out under [[tenant.pipeline]]",
                        t.name, p.name
                    )));
                }
                let mut p = p.clone();
                p.tenant = Some(t.name.clone());
                raw_pipelines.push((p, true));
            }
        }
        if raw_pipelines.is_empty() && control.is_none() {
            return Err(err(
                "no [[pipeline]] defined; a config needs at least one pipeline, or [control] \
                 to run what tenants deploy"
                    .into(),
            ));
        }
        for (p, _) in &raw_pipelines {
            if let Some(name) = p.tenant.as_deref().filter(|n| !n.trim().is_empty()) {
                if !tenants.iter().any(|t| t.name == name) {
                    tenants.push(TenantConfig::implicit(name));
                }
            }
        }
        if !tenants.iter().any(|t| t.name == DEFAULT_TENANT)
            && raw_pipelines.iter().any(|(p, _)| p.tenant.is_none())
        {
            tenants.push(TenantConfig::implicit(DEFAULT_TENANT));
        }
        tenant::check_ownership_between(&tenants).map_err(err)?;

        let cx = PipelineContext {
            origin,
            base,
            tenants: &tenants,
            raw_tenants: &raw.tenants,
            global_kafka: &global_kafka,
        };
        let mut names = HashSet::new();
        let pipelines = raw_pipelines
            .into_iter()
            .map(|(p, nested)| validate_pipeline(p, nested, &mut names, &cx))
            .collect::<Result<Vec<_>, _>>()?;
        // Two members of one group with one static id would fence each other.
        for (i, a) in pipelines.iter().enumerate() {
            let twin = pipelines[i + 1..].iter().find(|b| {
                a.group_instance_id.is_some()
                    && a.group_instance_id == b.group_instance_id
                    && a.group_id == b.group_id
            });
            if let Some(b) = twin {
                return Err(err(format!(
                    "pipelines '{}' and '{}' join group {:?} with one group_instance_id {:?}: \
                     each member of a group needs its own (put {{pipeline}} in the template)",
                    a.name,
                    b.name,
                    a.group_id.as_deref().unwrap_or_default(),
                    a.group_instance_id.as_deref().unwrap_or_default()
                )));
            }
        }
        Ok(Config {
            brokers,
            run: raw.run,
            embedded: raw.embedded,
            engine: raw.engine,
            control,
            telemetry: raw.telemetry,
            tenants,
            pipelines,
            bounds: DeployBounds {
                raw_tenants: raw.tenants,
                global_kafka,
            },
        })
    }

    /// Checks pipeline `name` deployed to `tenant` (its `[[tenant.pipeline]]` table as TOML
    /// text, without `name` and `plugin`, whose bytes the member already holds at `plugin`)
    /// exactly as a pipeline of this file would be: the tenant must be declared here, and its
    /// topics, sharing, limits and grants bound the pipeline. `deployed` are the pipelines
    /// deployed so far, as (tenant, name); a name must not be taken by another one. A deploy is written by the tenant, not the platform,
    /// so it may not set what only the platform decides: librdkafka properties (`kafka`) and
    /// transactional ids (`transaction.id_prefix`); its `group_id` must start with
    /// `<tenant>.`, so it cannot join another tenant's group. Errors name the deploy, the
    /// tenant, the pipeline and the field, as the file's do.
    pub fn deployed_pipeline<'a>(
        &self,
        tenant: &str,
        name: &str,
        spec: &str,
        plugin: &Path,
        deployed: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PipelineConfig, ConfigError> {
        let origin = format!("deploy to tenant '{tenant}'");
        let refuse = |what: String| Err(ConfigError(format!("{origin}: {what}")));
        if !self.bounds.raw_tenants.iter().any(|t| t.name == tenant) {
            return refuse(
                "the tenant is not declared in this member's config; a deploy adds pipelines to \
                 declared tenants only"
                    .into(),
            );
        }
        let mut table: toml::Table = toml::from_str(spec)
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim_end())))?;
        for (field, why) in [
            ("name", "the deploy names the pipeline"),
            ("plugin", "the deploy names the plugin"),
            ("tenant", "the deploy names the tenant"),
            (
                "kafka",
                "librdkafka properties are the platform's ([kafka] in the member's config)",
            ),
        ] {
            if table.contains_key(field) {
                return refuse(format!(
                    "pipeline '{name}': field `{field}` cannot be set in a deployed pipeline: {why}"
                ));
            }
        }
        // Every member runs a deploy: an id without the host in it would be one static member
        // on many hosts, fencing each other.
        let shared_instance_id = table
            .get("group_instance_id")
            .and_then(toml::Value::as_str)
            .is_some_and(|id| !id.contains("{hostname}"));
        if shared_instance_id {
            return refuse(format!(
                "pipeline '{name}': field `group_instance_id` of a deployed pipeline must contain \
                 {{hostname}}: every member runs the deploy, and each needs its own id"
            ));
        }
        let sets_id_prefix = table
            .get("transaction")
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key("id_prefix"));
        if sets_id_prefix {
            return refuse(format!(
                "pipeline '{name}': field `transaction.id_prefix` cannot be set in a deployed \
                 pipeline: transactional ids follow from its group_id"
            ));
        }
        let group_prefix = format!("{tenant}.");
        if let Some(group) = table.get("group_id").and_then(toml::Value::as_str) {
            if !group.starts_with(&group_prefix) {
                return refuse(format!(
                    "pipeline '{name}': field `group_id` is \"{group}\"; a deployed pipeline's \
                     group must start with \"{group_prefix}\" so it cannot join another tenant's"
                ));
            }
        }
        table.insert("name".into(), name.into());
        table.insert("plugin".into(), plugin.display().to_string().into());
        let mut p: RawPipeline = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(format!("{origin}: {}", e.message())))?;
        p.tenant = Some(tenant.to_string());
        let mut names: HashSet<String> = self
            .pipelines
            .iter()
            .map(|p| p.name.clone())
            .chain(
                deployed
                    .into_iter()
                    .filter(|&(t, n)| (t, n) != (tenant, name))
                    .map(|(_, n)| n.to_string()),
            )
            .collect();
        let cx = PipelineContext {
            origin: &origin,
            base: Path::new("."),
            tenants: &self.tenants,
            raw_tenants: &self.bounds.raw_tenants,
            global_kafka: &self.bounds.global_kafka,
        };
        let pipeline = validate_pipeline(p, true, &mut names, &cx)?;
        // The file may read and write topics nobody owns; a tenant's deploy may not: its
        // bounds are what the platform gave it.
        let topics = [
            ("topics", &pipeline.topics[..]),
            ("outputs", &pipeline.outputs.topics[..]),
        ]
        .into_iter()
        .chain(std::iter::once((
            "dead_letter_topic",
            pipeline.dead_letter_topic.as_slice(),
        )));
        for (field, topics) in topics {
            if let Some(topic) = topics
                .iter()
                .find(|t| !super::tenant::has_owner(&self.tenants, t))
            {
                return refuse(format!(
                    "pipeline '{name}': field `{field}` has `{topic}`, which no tenant owns in \
                     this member's config; a deployed pipeline reads and writes only topics its \
                     tenant owns or that are shared with it"
                ));
            }
        }
        // A group is one pipeline's: a deploy joining a pipeline of the file would take half its
        // partitions (and, exactly once, its transactional ids).
        if let Some(group) = &pipeline.group_id {
            if let Some(taken) = self
                .pipelines
                .iter()
                .find(|p| p.group_id.as_ref() == Some(group))
            {
                return refuse(format!(
                    "pipeline '{name}': field `group_id` is \"{group}\", the group of pipeline \
                     '{}' in this member's config",
                    taken.name
                ));
            }
        }
        Ok(pipeline)
    }
}

/// What a pipeline deployed after load is checked against (see
/// [`Config::deployed_pipeline`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DeployBounds {
    raw_tenants: Vec<RawTenant>,
    global_kafka: BTreeMap<String, String>,
}

/// `[control]`: names that fit a topic, intervals a member can keep, a credentials file that
/// parses and registry names without a scheme or path.
fn validate_control(control: &super::ControlSettings) -> Result<(), String> {
    let prefix = &control.prefix;
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "field `prefix` is {prefix:?}; use letters, digits, '.', '_' and '-' (it starts \
             every control topic's name)"
        ));
    }
    if control.poll_interval_ms == 0 || control.status_interval_ms == 0 {
        return Err(
            "fields `poll_interval_ms` and `status_interval_ms` must be greater than 0".into(),
        );
    }
    if control.max_deployed_pipelines > 64 {
        return Err("field `max_deployed_pipelines` must be at most 64".into());
    }
    if let Some(file) = &control.registry_auth_file {
        crate::oci::check_auth_file(file)
            .map_err(|e| format!("field `registry_auth_file`: {e}"))?;
    }
    for registry in &control.insecure_registries {
        crate::oci::check_registry_name(registry)
            .map_err(|e| format!("field `insecure_registries`: {e}"))?;
    }
    Ok(())
}

impl DeployBounds {
    /// The largest memory a deployed pipeline may get per tenant: its tenant's limit, else the
    /// default.
    pub(super) fn deployed_memory_bytes(&self) -> Option<usize> {
        let default = crate::plugin::PluginLimits::default().memory_bytes;
        self.raw_tenants
            .iter()
            .map(|t| t.limits.memory_mib.map_or(default, |m| (m as usize) << 20))
            .max()
    }

    /// Whether a tenant's limits include fuel, which its deployed pipelines then inherit.
    pub(super) fn any_tenant_meters_fuel(&self) -> bool {
        self.raw_tenants.iter().any(|t| t.limits.fuel.is_some())
    }

    pub(super) fn declared_tenants(&self) -> impl Iterator<Item = &str> {
        self.raw_tenants.iter().map(|t| t.name.as_str())
    }

    /// The `[kafka]` properties of the file, which control clients use too.
    pub(super) fn kafka(&self) -> &BTreeMap<String, String> {
        &self.global_kafka
    }
}

/// librdkafka takes every property as a string; TOML may give numbers and booleans.
pub(super) fn properties(
    table: &BTreeMap<String, toml::Value>,
) -> Result<BTreeMap<String, String>, String> {
    table
        .iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "property `{k}` must be a string, number or boolean, not a {}",
                        other.type_str()
                    ))
                }
            };
            Ok((k.clone(), value))
        })
        .collect()
}

pub(super) fn check_managed(props: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, why) in MANAGED_PROPERTIES {
        if props.contains_key(key) {
            return Err(format!("property `{key}` is managed by Ackbar: {why}"));
        }
    }
    Ok(())
}
