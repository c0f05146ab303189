//! The configuration's validation: every error a person can meet, word for word.

mod deploy;
mod docs;
mod tenants;

use super::raw::DEFAULT_MAX_BATCH;
use super::*;
use crate::policy::AckPolicy;
use std::path::Path;
use std::time::Duration;

fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    std::fs::write(dir.join("plugin.wasm"), b"\0asm").unwrap();
    Config::parse(text, "ackbar.toml", dir)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    parse_in(dir.path(), text)
}

const MINIMAL: &str = r#"
[[pipeline]]
name = "orders"
topics = ["orders"]
group_id = "g"
ack_policy = "nack_on_error"
plugin = "plugin.wasm"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.brokers, Brokers::Embedded);
    let p = &c.pipelines[0];
    assert_eq!(p.ack_policy, AckPolicy::NackOnError);
    assert_eq!(p.limits.deadline, Duration::from_secs(5));
    assert_eq!(p.limits.memory_bytes, 64 << 20);
    assert_eq!(p.commit_interval, Duration::from_secs(1));
    assert_eq!(p.backoff, Backoff::default());
    assert!(p.plugin.is_absolute() || p.plugin.starts_with(std::env::temp_dir()));
}

#[test]
fn kafka_properties_pass_through_with_overrides() {
    let c = parse(
        r#"
[kafka]
"bootstrap.servers" = "k1:9092"
"session.timeout.ms" = 6000
"security.protocol" = "plaintext"
[[pipeline]]
name = "p"
topics = ["t"]
plugin = "plugin.wasm"
[pipeline.kafka]
"session.timeout.ms" = "7000"
"#,
    )
    .unwrap();
    assert_eq!(c.brokers, Brokers::Bootstrap("k1:9092".into()));
    let k = &c.pipelines[0].kafka;
    assert_eq!(k["session.timeout.ms"], "7000");
    assert_eq!(k["security.protocol"], "plaintext");
    assert!(!k.contains_key("bootstrap.servers"));
}

#[test]
fn ack_without_group_names_file_pipeline_and_field() {
    let err = parse(
        r#"
[[pipeline]]
name = "orders"
topics = ["orders"]
ack_policy = "ACK"
plugin = "plugin.wasm"
"#,
    )
    .unwrap_err();
    assert_eq!(
        err.0,
        "ackbar.toml: pipeline 'orders': field `group_id` is required by ack_policy ACK \
         (offsets are committed to the consumer group)"
    );
}

#[test]
fn ack_first_needs_no_group() {
    let c =
        parse("[[pipeline]]\nname = \"p\"\ntopics = [\"t\"]\nplugin = \"plugin.wasm\"\n").unwrap();
    assert_eq!(c.pipelines[0].ack_policy, AckPolicy::AckFirst);
    assert_eq!(c.pipelines[0].group_id, None);
}

#[test]
fn unknown_key_is_reported_with_its_line() {
    let err = parse(&format!("{MINIMAL}retries = 3\n")).unwrap_err();
    assert!(
        err.0.starts_with("ackbar.toml: TOML parse error at line"),
        "{err}"
    );
    assert!(err.0.contains("unknown field `retries`"), "{err}");
}

#[test]
fn unknown_policy_is_reported() {
    let err = parse(&MINIMAL.replace("nack_on_error", "sometimes")).unwrap_err();
    assert!(err.0.contains("unknown ack policy 'sometimes'"), "{err}");
    assert!(err.0.contains("line 6"), "{err}");
}

#[test]
fn missing_plugin_file_is_reported() {
    let err = parse(&MINIMAL.replace("plugin.wasm", "missing.wasm")).unwrap_err();
    assert!(
        err.0
            .contains("pipeline 'orders': field `plugin` points at"),
        "{err}"
    );
    assert!(err.0.contains("missing.wasm, which is not a file"), "{err}");
}

#[test]
fn managed_property_is_refused() {
    let err = parse(&format!(
        "[kafka]\n\"enable.auto.commit\" = true\n{MINIMAL}"
    ))
    .unwrap_err();
    assert_eq!(
        err.0,
        "ackbar.toml: [kafka]: property `enable.auto.commit` is managed by Ackbar: it follows from ack_policy"
    );
}

#[test]
fn duplicate_pipeline_names_are_refused() {
    let err = parse(&format!("{MINIMAL}{MINIMAL}")).unwrap_err();
    assert_eq!(
        err.0,
        "ackbar.toml: pipeline 'orders': field `name` is used by another pipeline"
    );
}

#[test]
fn brokers_and_bootstrap_servers_conflict() {
    let err = parse(&format!(
        "brokers = \"a:1\"\n[kafka]\n\"bootstrap.servers\" = \"b:2\"\n{MINIMAL}"
    ))
    .unwrap_err();
    assert!(
        err.0
            .contains("both `brokers` and [kafka] `bootstrap.servers`"),
        "{err}"
    );
}

#[test]
fn limits_are_validated() {
    let text = format!("{MINIMAL}[pipeline.limits]\nmemory_mib = 0\n");
    let err = parse(&text).unwrap_err();
    assert_eq!(
        err.0,
        "ackbar.toml: pipeline 'orders': field `limits.memory_mib` must be between 1 and 4096"
    );
    let text = format!("{MINIMAL}[pipeline.limits]\ndeadline_ms = 250\nmemory_mib = 16\n");
    let p = &parse(&text).unwrap().pipelines[0];
    assert_eq!(p.limits.deadline, Duration::from_millis(250));
    assert_eq!(p.limits.memory_bytes, 16 << 20);
}

#[test]
fn empty_config_needs_a_pipeline() {
    let err = parse("brokers = \"embedded\"\n").unwrap_err();
    assert!(err.0.contains("no [[pipeline]] defined"), "{err}");
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let b = Backoff::default();
    let delays: Vec<u64> = (1..=9).map(|n| b.delay(n).as_millis() as u64).collect();
    assert_eq!(
        delays,
        [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
    );
    assert_eq!(b.delay(1000), Duration::from_secs(10));
}

#[test]
fn operations_settings_are_validated_with_their_field() {
    let c = parse(&format!(
        "[run]\nmetrics_addr = \"127.0.0.1:9464\"\n{MINIMAL}tenant = \"shop\"\nmax_attempts = 5\ndead_letter_topic = \"orders-dlq\"\n"
    ))
    .unwrap();
    let p = &c.pipelines[0];
    assert_eq!(p.tenant, "shop");
    assert_eq!(p.max_attempts, Some(5));
    assert_eq!(p.dead_letter_topic.as_deref(), Some("orders-dlq"));
    assert_eq!(c.run.metrics_addr.as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(parse(MINIMAL).unwrap().pipelines[0].tenant, DEFAULT_TENANT);

    let err = |extra: &str| parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
    assert!(err("dead_letter_topic = \"orders\"\n")
        .contains("field `dead_letter_topic` `orders` is also a topic"));
    assert!(err("max_attempts = 0\n")
        .contains("pipeline 'orders': field `max_attempts` must be at least 1"));
    assert!(err("tenant = \" \"\n").contains("field `tenant` is empty"));
    let first = parse(&format!("[run]\nmetrics_addr = \"localhost\"\n{MINIMAL}")).unwrap_err();
    assert!(
        first
            .to_string()
            .contains("field `metrics_addr` must be host:port"),
        "{first}"
    );
    let ack_first = MINIMAL.replace("nack_on_error", "ack_first");
    let e = parse(&format!("{ack_first}dead_letter_topic = \"dlq\"\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("needs a policy that commits after handling"),
        "{e}"
    );
}

#[test]
fn control_registry_settings_are_resolved_and_validated_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let control = |extra: &str| format!("{MINIMAL}[control]\n{extra}");
    let c = parse_in(dir.path(), &control("")).unwrap();
    let settings = c.control.unwrap();
    assert_eq!(settings.registry_auth_file, None);
    assert!(settings.insecure_registries.is_empty());

    std::fs::write(dir.path().join("auth.json"), r#"{"auths": {}}"#).unwrap();
    let c = parse_in(
        dir.path(),
        &control(
            "registry_auth_file = \"auth.json\"\ninsecure_registries = [\"build.internal:5000\", \"10.0.0.7\"]\n",
        ),
    )
    .unwrap();
    let settings = c.control.unwrap();
    assert_eq!(
        settings.registry_auth_file,
        Some(dir.path().join("auth.json"))
    );
    assert_eq!(
        settings.insecure_registries,
        ["build.internal:5000", "10.0.0.7"]
    );

    let err = |extra: &str| {
        parse_in(dir.path(), &control(extra))
            .unwrap_err()
            .to_string()
    };
    let missing = err("registry_auth_file = \"none.json\"\n");
    assert!(
        missing.contains("[control]: field `registry_auth_file`:")
            && missing.contains("none.json: cannot read"),
        "{missing}"
    );
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    assert!(err("registry_auth_file = \"bad.json\"\n").contains("not a Docker config file"));
    let scheme = err("insecure_registries = [\"http://build.internal:5000\"]\n");
    assert!(
        scheme.contains("[control]: field `insecure_registries`: registry \"http://build.internal:5000\" is not HOST[:PORT]"),
        "{scheme}"
    );
}

#[test]
fn a_tenant_pulls_only_from_the_registries_its_file_lists() {
    let tenant = |registries: &str| {
        format!(
            "brokers = \"k:9092\"\n[control]\n[[tenant]]\nname = \"shop\"\nregistries = {registries}\n"
        )
    };
    let c = parse(&tenant(r#"["registry.example.com", "127.0.0.1:5000"]"#)).unwrap();
    let shop = c.tenants.iter().find(|t| t.name == "shop").unwrap();
    assert!(shop.may_pull_from("registry.example.com:443"));
    assert!(shop.may_pull_from("127.0.0.1:5000"));
    assert!(!shop.may_pull_from("127.0.0.1:5001"));
    assert!(!shop.may_pull_from("evil.example.com"));
    let e = parse(&tenant(r#"["https://registry.example.com"]"#))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tenant 'shop'")
            && e.contains("`registries`")
            && e.contains("is not HOST[:PORT]"),
        "{e}"
    );
}

#[test]
fn share_group_pipelines_get_their_defaults_and_refuse_what_cannot_hold() {
    let p = |extra: &str| parse(&format!("{MINIMAL}group_type = \"share\"\n{extra}"));
    let share = p("").unwrap();
    let s = &share.pipelines[0];
    assert_eq!(s.group_type, GroupType::Share);
    assert_eq!(s.ordering, Ordering::Unordered);
    assert_eq!(s.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
    assert_eq!(s.max_attempts, None);
    assert_eq!(
        parse(MINIMAL).unwrap().pipelines[0].group_type,
        GroupType::Classic
    );
    let with_dlq = p("dead_letter_topic = \"dlq\"\n").unwrap();
    assert_eq!(
        with_dlq.pipelines[0].max_attempts,
        Some(DEFAULT_SHARE_MAX_ATTEMPTS)
    );
    let own = p("dead_letter_topic = \"dlq\"\nmax_attempts = 3\nmax_in_flight = 2\n").unwrap();
    assert_eq!(own.pipelines[0].max_attempts, Some(3));
    assert_eq!(own.pipelines[0].max_in_flight, 2);
    assert!(p("ordering = \"unordered\"\n").is_ok());

    let refused = |text: &str, expected: &str| {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
    };
    let share = format!("{MINIMAL}group_type = \"share\"\n");
    refused(
        &share.replace("nack_on_error", "ack_first"),
        "pipeline 'orders': field `ack_policy` is ACK_FIRST (the default), which commits before handling",
    );
    refused(
        &format!("{share}ordering = \"partition\"\n"),
        "field `ordering` is \"partition\", but a share group hands one partition's records to many members",
    );
    refused(
        &format!("{share}ordering = \"key\"\n"),
        "field `ordering` is \"key\"",
    );
    refused(
        &format!("{share}delivery = \"exactly-once\"\n"),
        "field `delivery` is exactly-once, but Kafka transactions cannot hold share-group acknowledgements",
    );
    refused(
        &format!("{share}max_attempts = 3\n"),
        "field `max_attempts` needs a `dead_letter_topic` on a share pipeline",
    );
    refused(
        &format!("{MINIMAL}group_type = \"queue\"\n"),
        "unknown variant `queue`",
    );
    refused(
        &format!("[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n{share}"),
        "field `kafka` sets `security.protocol` to SASL_SSL, but the share-group client connects in plaintext only",
    );
    assert!(parse(&format!(
        "[kafka]\n\"security.protocol\" = \"plaintext\"\n{share}"
    ))
    .is_ok());
}

#[test]
fn max_batch_is_validated() {
    let p = |extra: &str| parse(&format!("{MINIMAL}{extra}"));
    assert_eq!(p("").unwrap().pipelines[0].max_batch, DEFAULT_MAX_BATCH);
    assert_eq!(
        p("max_batch = 1
")
        .unwrap()
        .pipelines[0]
            .max_batch,
        1
    );
    for bad in ["0", "1025"] {
        let e = p(&format!(
            "max_batch = {bad}
"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!(
                "field `max_batch` is {bad}, must be between 1 and 1024"
            )),
            "{e}"
        );
    }
}

#[test]
fn ordering_and_max_in_flight_are_validated() {
    let p = |extra: &str| parse(&format!("{MINIMAL}{extra}"));
    let default = p("").unwrap();
    assert_eq!(default.pipelines[0].ordering, Ordering::Partition);
    assert_eq!(default.pipelines[0].max_in_flight, 1);
    let key = p("ordering = \"key\"\n").unwrap();
    assert_eq!(key.pipelines[0].ordering, Ordering::Key);
    assert_eq!(key.pipelines[0].max_in_flight, DEFAULT_MAX_IN_FLIGHT);
    let unordered = p("ordering = \"unordered\"\nmax_in_flight = 4\n").unwrap();
    assert_eq!(unordered.pipelines[0].max_in_flight, 4);
    let e = p("max_in_flight = 8\n").unwrap_err().to_string();
    assert!(
        e.contains("field `max_in_flight` is 8, but ordering = \"partition\""),
        "{e}"
    );
    let e = p("ordering = \"key\"\nmax_in_flight = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `max_in_flight` must be at least 1"),
        "{e}"
    );
    let e = p("ordering = \"random\"\n").unwrap_err().to_string();
    assert!(e.contains("unknown variant `random`"), "{e}");
}

#[test]
fn exactly_once_needs_a_settling_policy_in_partition_order() {
    let eos = |extra: &str| {
        parse(&format!(
            "{MINIMAL}outputs = [\"orders.enriched\"]\ndelivery = \"exactly-once\"\n{extra}"
        ))
    };
    let c = eos("").unwrap();
    let p = &c.pipelines[0];
    assert_eq!(p.delivery, DeliveryGuarantee::ExactlyOnce);
    assert_eq!(p.transactions.max_messages, DEFAULT_TRANSACTION_MESSAGES);
    assert_eq!(
        p.transactions.max_age,
        Duration::from_millis(DEFAULT_TRANSACTION_MS)
    );
    assert_eq!(p.transactions.id_prefix, "ackbar.g");
    let sized =
        eos("[pipeline.transaction]\nmax_messages = 50\nmax_ms = 20\nid_prefix = \"eu.orders\"")
            .unwrap();
    assert_eq!(sized.pipelines[0].transactions.max_messages, 50);
    assert_eq!(sized.pipelines[0].transactions.id_prefix, "eu.orders");
    let refused = |text: &str| parse(text).unwrap_err().to_string();
    assert_eq!(
        refused(&MINIMAL.replace("nack_on_error", "manual").replace(
            "plugin.wasm\"",
            "plugin.wasm\"\ndelivery = \"exactly-once\""
        )),
        "ackbar.toml: pipeline 'orders': field `delivery` is exactly-once, which needs a policy that settles every message (ACK, REJECT_ON_ERROR or NACK_ON_ERROR); MANUAL may leave messages unsettled"
    );
    assert!(
        refused(&MINIMAL.replace("nack_on_error", "ack_first").replace(
            "plugin.wasm\"",
            "plugin.wasm\"\ndelivery = \"exactly-once\""
        ))
        .contains("ACK_FIRST commits before handling")
    );
    assert!(eos("ordering = \"key\"")
        .unwrap_err()
        .to_string()
        .contains("field `delivery` is exactly-once, which needs ordering = \"partition\""));
    assert!(parse(&format!("{MINIMAL}[pipeline.transaction]\nmax_ms = 10"))
        .unwrap_err()
        .to_string()
        .contains("field `transaction` is set, but transactions are used only with delivery = \"exactly-once\""));
    assert!(eos("[pipeline.transaction]\nmax_ms = 3600000")
        .unwrap_err()
        .to_string()
        .contains("field `transaction.max_ms` is 3600000; at most 60000"));
    assert!(eos("[pipeline.transaction]\nmax_messages = 0")
        .unwrap_err()
        .to_string()
        .contains("field `transaction.max_messages` must be at least 1"));
    assert!(
        eos("[pipeline.kafka]\n\"isolation.level\" = \"read_uncommitted\"")
            .unwrap_err()
            .to_string()
            .contains("field `kafka` sets `isolation.level` to read_uncommitted")
    );
    assert!(parse(&format!(
        "{MINIMAL}[pipeline.kafka]\n\"transactional.id\" = \"x\""
    ))
    .unwrap_err()
    .to_string()
    .contains("property `transactional.id` is managed by Ackbar"));
    assert!(parse(&format!("{MINIMAL}delivery = \"twice\""))
        .unwrap_err()
        .to_string()
        .contains("unknown variant `twice`, expected `at-least-once` or `exactly-once`"));
}

#[test]
fn the_group_protocol_is_chosen_per_pipeline_and_classic_settings_are_refused_under_consumer() {
    let classic = parse(MINIMAL).unwrap();
    assert_eq!(classic.pipelines[0].group_protocol, GroupProtocol::Classic);
    let consumer = parse(&format!("{MINIMAL}group_protocol = \"consumer\"\n")).unwrap();
    assert_eq!(
        consumer.pipelines[0].group_protocol,
        GroupProtocol::Consumer
    );

    let own = parse(&format!(
        "{MINIMAL}group_protocol = \"consumer\"\n[pipeline.kafka]\n\"session.timeout.ms\" = 6000\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        own.contains("field `group_protocol`")
            && own.contains("does not take `session.timeout.ms` (set in its `kafka` table)")
            && own.contains("group.consumer.session.timeout.ms"),
        "{own}"
    );
    let global = parse(&format!(
        "[kafka]\n\"partition.assignment.strategy\" = \"range\"\n{MINIMAL}group_protocol = \"consumer\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        global.contains("`partition.assignment.strategy` (set in [kafka])")
            && global.contains("group.remote.assignor"),
        "{global}"
    );
    let raw = parse(&format!(
        "[kafka]\n\"group.protocol\" = \"consumer\"\n{MINIMAL}"
    ))
    .unwrap_err()
    .to_string();
    assert!(raw.contains("use the pipeline's `group_protocol`"), "{raw}");
    let share = parse(&format!(
        "{MINIMAL}group_type = \"share\"\ngroup_protocol = \"consumer\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        share.contains("field `group_protocol` applies to a consumer group only"),
        "{share}"
    );
}

#[test]
fn a_static_member_id_is_expanded_from_its_template_and_unique_in_its_group() {
    let with = |template: &str| parse(&format!("{MINIMAL}group_instance_id = \"{template}\"\n"));
    let host = crate::control::host_name();
    let c = with("{pipeline}-{hostname}").unwrap();
    assert_eq!(
        c.pipelines[0].group_instance_id.as_deref(),
        Some(format!("orders-{host}").as_str())
    );
    let unknown = with("{pod}").unwrap_err().to_string();
    assert!(
        unknown.contains("field `group_instance_id`") && unknown.contains("names {pod}"),
        "{unknown}"
    );
    let bad = with("a b").unwrap_err().to_string();
    assert!(bad.contains("is 1 to 249 letters"), "{bad}");
    let twins = parse(&format!(
        "{MINIMAL}group_instance_id = \"static-{{hostname}}\"\n\
         [[pipeline]]\nname = \"orders-2\"\ntopics = [\"orders\"]\ngroup_id = \"g\"\n\
         plugin = \"plugin.wasm\"\ngroup_instance_id = \"static-{{hostname}}\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        twins.contains(
            "pipelines 'orders' and 'orders-2' join group \"g\" with one group_instance_id"
        ),
        "{twins}"
    );
}

#[test]
fn a_deployed_pipelines_static_id_names_the_host() {
    let member = parse(
        "brokers = \"k:9092\"\n[control]\n[[tenant]]\nname = \"shop\"\ntopics = [\"orders\"]\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("p.wasm");
    std::fs::write(&plugin, b"\0asm").unwrap();
    let spec = |id: &str| {
        format!("topics = [\"orders\"]\ngroup_id = \"shop.g\"\nack_policy = \"ACK\"\ngroup_instance_id = \"{id}\"\n")
    };
    let shared = member
        .deployed_pipeline("shop", "p", &spec("{pipeline}"), &plugin, [])
        .unwrap_err()
        .to_string();
    assert!(shared.contains("must contain {hostname}"), "{shared}");
    let own = member
        .deployed_pipeline("shop", "p", &spec("{pipeline}-{hostname}"), &plugin, [])
        .unwrap();
    assert!(own.group_instance_id.unwrap().starts_with("p-"));
}
