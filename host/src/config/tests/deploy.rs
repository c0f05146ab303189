//! A pipeline deployed to a tenant after load is held to the same bounds, with the same errors,
//! as one written in the file.

use super::*;

const TENANTS: &str = r#"
[[tenant]]
name = "shop"
topics = ["orders", "orders.*"]
share = { orders = ["analytics"] }
[tenant.limits]
memory_mib = 64
deadline_ms = 500
[[tenant.pipeline]]
name = "orders"
topics = ["orders"]
group_id = "g"
ack_policy = "ACK"
plugin = "plugin.wasm"

[[tenant]]
name = "analytics"
topics = ["clicks"]
"#;

/// The same pipeline as a deploy to `tenant` and as a `[[tenant.pipeline]]` of that tenant in
/// the file: both results, the file's error rephrased with the deploy's origin.
fn both_ways(
    tenant: &str,
    name: &str,
    spec: &str,
) -> (
    Result<PipelineConfig, ConfigError>,
    Result<PipelineConfig, ConfigError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_in(dir.path(), TENANTS).unwrap();
    let plugin = dir.path().join("deployed.wasm");
    std::fs::write(&plugin, b"\0asm").unwrap();
    let deployed = config.deployed_pipeline(tenant, name, spec, &plugin, []);
    let at = TENANTS.find(&format!("name = \"{tenant}\"")).unwrap();
    let end = TENANTS[at..].find("\n\n").map_or(TENANTS.len(), |n| at + n);
    // In the file, the spec's own tables are the pipeline's.
    let in_file = format!(
        "{}\n[[tenant.pipeline]]\nname = \"{name}\"\nplugin = \"{}\"\n{}\n{}",
        &TENANTS[..end],
        plugin.display(),
        spec.replace("[limits]", "[tenant.pipeline.limits]"),
        &TENANTS[end..]
    );
    let file = Config::parse(&in_file, "ackbar.toml", dir.path()).map(|c| {
        c.pipelines
            .into_iter()
            .find(|p| p.tenant == tenant && p.name != "orders")
            .expect("the pipeline")
    });
    let origin = format!("deploy to tenant '{tenant}'");
    let file = file.map_err(|e| ConfigError(e.0.replacen("ackbar.toml", &origin, 1)));
    (deployed, file)
}

#[test]
fn a_deployed_pipeline_inside_its_tenants_bounds_is_what_the_file_would_give() {
    let spec =
        "topics = [\"orders.returns\"]\ngroup_id = \"shop.r\"\nack_policy = \"NACK_ON_ERROR\"";
    let (deployed, file) = both_ways("shop", "returns", spec);
    let deployed = deployed.unwrap();
    assert_eq!(deployed, file.unwrap());
    assert_eq!(deployed.tenant, "shop");
    assert_eq!(
        deployed.limits.memory_bytes,
        64 << 20,
        "the tenant's limits apply"
    );
    assert!(deployed.plugin.ends_with("deployed.wasm"));
}

#[test]
fn a_deployed_pipeline_outside_its_tenants_bounds_gets_the_files_error() {
    let refused = |tenant: &str, name: &str, spec: &str| {
        let (deployed, file) = both_ways(tenant, name, spec);
        let error = deployed.unwrap_err();
        assert_eq!(error, file.unwrap_err(), "the same error as in the file");
        error.0
    };
    let reads_another = refused(
        "analytics",
        "peek",
        "topics = [\"orders.eu\"]\ngroup_id = \"analytics.p\"\nack_policy = \"ACK\"",
    );
    assert!(
        reads_another.starts_with("deploy to tenant 'analytics': tenant 'analytics': pipeline 'peek': field `topics` reads `orders.eu`, owned by tenant 'shop'"),
        "{reads_another}"
    );
    let over_limit = refused(
        "shop",
        "big",
        "topics = [\"orders\"]\ngroup_id = \"shop.b\"\nack_policy = \"ACK\"\n[limits]\nmemory_mib = 128",
    );
    assert!(
        over_limit.contains("pipeline 'big': field `limits.memory_mib`"),
        "{over_limit}"
    );
}

#[test]
fn a_deploy_cannot_reach_outside_the_files_tenants_or_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_in(dir.path(), TENANTS).unwrap();
    let plugin = dir.path().join("plugin.wasm");
    let spec = "topics = [\"clicks\"]\ngroup_id = \"analytics.x\"\nack_policy = \"ACK\"";
    let error = |tenant: &str, name: &str, spec: &str| {
        config
            .deployed_pipeline(tenant, name, spec, &plugin, [("shop", "taken")])
            .unwrap_err()
            .0
    };
    assert_eq!(
        error("ghost", "x", spec),
        "deploy to tenant 'ghost': the tenant is not declared in this member's config; a deploy adds pipelines to declared tenants only"
    );
    let taken = "deploy to tenant 'analytics': tenant 'analytics': pipeline '{}': field `name` is used by another pipeline";
    assert_eq!(
        error("analytics", "orders", spec),
        taken.replace("{}", "orders"),
        "a pipeline of the file"
    );
    assert_eq!(
        error("analytics", "taken", spec),
        taken.replace("{}", "taken"),
        "another deployed pipeline"
    );
    let redeployed =
        config.deployed_pipeline("analytics", "x", spec, &plugin, [("analytics", "x")]);
    assert!(
        redeployed.is_ok(),
        "a pipeline's own earlier deploy does not take its name: {redeployed:?}"
    );
    for (extra, field, why) in [
        ("name = \"y\"", "name", "the deploy names the pipeline"),
        (
            "plugin = \"other.wasm\"",
            "plugin",
            "the deploy names the plugin",
        ),
        ("tenant = \"shop\"", "tenant", "the deploy names the tenant"),
        (
            "kafka = { \"queued.max.messages.kbytes\" = 1000000 }",
            "kafka",
            "librdkafka properties are the platform's ([kafka] in the member's config)",
        ),
    ] {
        assert_eq!(
            error("analytics", "x", &format!("{extra}\n{spec}")),
            format!("deploy to tenant 'analytics': pipeline 'x': field `{field}` cannot be set in a deployed pipeline: {why}")
        );
    }
    assert_eq!(
        error("analytics", "x", &format!("{spec}\ndelivery = \"exactly-once\"\n[transaction]\nid_prefix = \"ackbar.g\"")),
        "deploy to tenant 'analytics': pipeline 'x': field `transaction.id_prefix` cannot be set in a deployed pipeline: transactional ids follow from its group_id"
    );
    assert_eq!(
        error("analytics", "x", &spec.replace("analytics.x", "g")),
        "deploy to tenant 'analytics': pipeline 'x': field `group_id` is \"g\"; a deployed pipeline's group must start with \"analytics.\" so it cannot join another tenant's"
    );
    let unknown = error("analytics", "x", &format!("{spec}\nretries = 3"));
    assert!(
        unknown.starts_with("deploy to tenant 'analytics': unknown field `retries`"),
        "{unknown}"
    );
    let not_toml = error("analytics", "x", "topics = ");
    assert!(
        not_toml.starts_with("deploy to tenant 'analytics': "),
        "{not_toml}"
    );
}

#[test]
fn a_deploy_reads_and_writes_only_topics_a_tenant_owns() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_in(dir.path(), TENANTS).unwrap();
    let plugin = dir.path().join("plugin.wasm");
    let deploy = |spec: &str| config.deployed_pipeline("shop", "x", spec, &plugin, []);
    let base = "group_id = \"shop.x\"\nack_policy = \"ACK\"";
    let unowned = deploy(&format!("topics = [\"payments\"]\n{base}"))
        .unwrap_err()
        .0;
    assert_eq!(
        unowned,
        "deploy to tenant 'shop': pipeline 'x': field `topics` has `payments`, which no tenant owns in this member's config; a deployed pipeline reads and writes only topics its tenant owns or that are shared with it"
    );
    let output = deploy(&format!(
        "topics = [\"orders\"]\noutputs = [\"audit\"]\n{base}"
    ))
    .unwrap_err()
    .0;
    assert!(output.contains("field `outputs` has `audit`"), "{output}");
    let dead_letters = deploy(&format!(
        "topics = [\"orders\"]\ndead_letter_topic = \"dlq\"\n{base}"
    ))
    .unwrap_err()
    .0;
    assert!(
        dead_letters.contains("field `dead_letter_topic` has `dlq`"),
        "{dead_letters}"
    );
    // Owned, and shared with the tenant, is what a deploy may use.
    deploy(&format!(
        "topics = [\"orders\"]\noutputs = [\"orders.out\"]\ndead_letter_topic = \"orders.dlq\"\n{base}"
    ))
    .unwrap();
    config
        .deployed_pipeline(
            "analytics",
            "y",
            "topics = [\"orders\"]\ngroup_id = \"analytics.y\"\nack_policy = \"ACK\"",
            &plugin,
            [],
        )
        .expect("shop shares orders with analytics");
}

#[test]
fn a_deploy_cannot_join_the_group_of_a_pipeline_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = TENANTS.replace("group_id = \"g\"", "group_id = \"shop.orders\"");
    let config = parse_in(dir.path(), &text).unwrap();
    let plugin = dir.path().join("plugin.wasm");
    let error = config
        .deployed_pipeline(
            "shop",
            "x",
            "topics = [\"orders\"]\ngroup_id = \"shop.orders\"\nack_policy = \"ACK\"",
            &plugin,
            [],
        )
        .unwrap_err()
        .0;
    assert_eq!(
        error,
        "deploy to tenant 'shop': pipeline 'x': field `group_id` is \"shop.orders\", the group of pipeline 'orders' in this member's config"
    );
}
