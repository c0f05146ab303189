//! Tenants at load: topic ownership, sharing, limits, and the outputs a tenant may write.

use super::docs::tenants_example;
use super::*;

#[test]
fn tenant_rules_are_enforced_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let example = tenants_example(dir.path());
    let refused = |from: &str, to: &str| {
        assert!(example.contains(from), "{from}");
        Config::parse(&example.replacen(from, to, 1), "ackbar.toml", dir.path())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused("topics = [\"orders\", \"clicks\"]", "topics = [\"orders.eu\"]"),
        "ackbar.toml: tenant 'analytics': pipeline 'order-stats': field `topics` reads `orders.eu`, owned by tenant 'shop'; it can be shared with `share = { \"orders.eu\" = [\"analytics\"] }` in that tenant"
    );
    assert!(refused("topics = [\"clicks\"]", "topics = [\"orders.eu\"]")
        .contains("tenant 'shop': field `topics` has \"orders.*\", which overlaps \"orders.eu\" of tenant 'analytics'"));
    assert!(refused(
        "share = { orders = [\"analytics\"] }",
        "share = { orders = [\"analytic\"] }"
    )
    .contains("shares \"orders\" with 'analytic', which is not a tenant"));
    assert!(refused("share = { orders = [\"analytics\"] }", "share = { payments = [\"analytics\"] }")
        .contains("tenant 'shop': field `share` shares \"payments\", which is not among the tenant's `topics`"));
    assert!(refused(
        "plugin = \"plugins/stats.wasm\"",
        "plugin = \"plugins/stats.wasm\"\ndead_letter_topic = \"orders.dead\""
    )
    .contains(
        "pipeline 'order-stats': field `dead_letter_topic` writes `orders.dead`, owned by tenant 'shop'"
    ));
    assert!(refused(
        "max_in_flight = 32",
        "max_in_flight = 32\n[tenant.pipeline.limits]\nmemory_mib = 64"
    )
    .contains(
        "pipeline 'order-stats': field `limits.memory_mib` is 64, above its tenant's limit of 32"
    ));
    assert!(refused(
        "env = [\"PATH\"]",
        "env = [\"ACKBAR_SURELY_UNSET_VARIABLE\"]"
    )
    .contains(
        "tenant 'shop': field `grants.env` grants ACKBAR_SURELY_UNSET_VARIABLE, which is not set"
    ));
    assert!(
        refused("host = \"reference-data\"", "host = \"missing-data\"")
            .contains("tenant 'analytics': field `grants.read_only_dir.host` points at")
    );
    assert!(refused("guest = \"/data\"", "guest = \"data\"")
        .contains("field `grants.read_only_dir.guest` must be an absolute guest path"));
    assert!(refused(
        "http_hosts = [\"hooks.example.com:443\"]",
        "http_hosts = [\"https://hooks.example.com\"]"
    )
    .contains("field `grants.http_hosts` has \"https://hooks.example.com\""));
    assert!(refused("max_instances = 8", "max_instances = 0")
        .contains("tenant 'notify': field `limits.max_instances` must be at least 1"));
    assert!(refused("name = \"notify\"", "name = \"shop\"")
        .contains("tenant 'shop': field `name` is used by another tenant"));
    assert!(
        refused("max_wasm_stack_kib = 512", "max_wasm_stack_kib = 8")
            .contains("[engine]: field `max_wasm_stack_kib` must be between 64 and 4096")
    );
    // A top-level pipeline of the default tenant cannot read a tenant's topic either.
    let top_level = format!(
        "{example}\n{}",
        MINIMAL.replace("\"orders\"\ntopics", "\"legacy\"\ntopics")
    );
    let err = Config::parse(&top_level, "ackbar.toml", dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pipeline 'legacy': field `topics` reads `orders`, owned by tenant 'shop'"),
        "{err}"
    );
}

#[test]
fn outputs_must_be_the_tenants_own_or_shared_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let example = tenants_example(dir.path());
    let with = |pipeline_lines: &str, shop_lines: &str| {
        let text = example
            .replacen(
                "max_in_flight = 32",
                &format!("max_in_flight = 32\n{pipeline_lines}"),
                1,
            )
            .replacen(
                "share = { orders = [\"analytics\"] }",
                &format!("share = {{ orders = [\"analytics\"] }}\n{shop_lines}"),
                1,
            );
        Config::parse(&text, "ackbar.toml", dir.path())
    };
    let foreign = with("outputs = [\"orders.stats\"]", "")
        .unwrap_err()
        .to_string();
    assert_eq!(
        foreign,
        "ackbar.toml: tenant 'analytics': pipeline 'order-stats': field `outputs` writes `orders.stats`, owned by tenant 'shop'; tenant 'analytics' may write to it only if that tenant shares it with `share_write = { \"orders.stats\" = [\"analytics\"] }`"
    );
    let shared = with(
        "outputs = [\"orders.stats\", \"clicks.enriched\"]",
        "share_write = { \"orders.stats\" = [\"analytics\"] }",
    )
    .unwrap();
    let stats = shared
        .pipelines
        .iter()
        .find(|p| p.name == "order-stats")
        .unwrap();
    assert_eq!(stats.outputs.topics, ["orders.stats", "clicks.enriched"]);
    assert_eq!(stats.outputs.max_records, 100);
    assert_eq!(stats.outputs.max_bytes, 1 << 20);
    assert_eq!(stats.delivery, DeliveryGuarantee::AtLeastOnce);
    // A read share is not a write share.
    assert!(with("outputs = [\"orders\"]", "")
        .unwrap_err()
        .to_string()
        .contains(
            "field `outputs` has \"orders\", which covers `orders`, a topic the pipeline reads"
        ));
    assert!(with("outputs = [\"clicks.*\", \"\"]", "")
        .unwrap_err()
        .to_string()
        .contains("field `outputs` has \"\": a topic name, or a prefix ending in `*`"));
    assert!(with("outputs = [\"x\"]", "share_write = { \"payments\" = [\"analytics\"] }")
        .unwrap_err()
        .to_string()
        .contains("tenant 'shop': field `share_write` shares \"payments\", which is not among the tenant's `topics`"));
    assert!(with("outputs = [\"x\"]\nmax_outputs_per_call = 0", "")
        .unwrap_err()
        .to_string()
        .contains("field `max_outputs_per_call` must be at least 1"));
    assert!(with(
        "outputs = [\"x\"]\nmax_output_bytes_per_call = 100000000",
        ""
    )
    .unwrap_err()
    .to_string()
    .contains("field `max_output_bytes_per_call` is 100000000; at most 67108864"));
}
