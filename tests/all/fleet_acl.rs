//! The broker authorizes deploys: on Apache Kafka with SASL and the standard authorizer, with
//! the ACLs the operator docs give (run with Kafka's own `kafka-acls` tool), a tenant deploys to
//! its own control topics and nobody else's, and a spec outside its bounds is refused by the
//! member, naming the tenant, the pipeline and the field.

use crate::brokers::sasl_kafka;
use crate::fleet::Member;
use crate::support::*;
use ackbar::control::{pipelines_topic, status_topic, DesiredState, StatusTopic};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn credentials(user: &str) -> [(&'static str, String); 4] {
    [
        ("security.protocol", "SASL_PLAINTEXT".into()),
        ("sasl.mechanism", "PLAIN".into()),
        ("sasl.username", user.into()),
        ("sasl.password", format!("{user}-secret")),
    ]
}

fn properties(bootstrap: &str, user: &str) -> BTreeMap<String, String> {
    credentials(user)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain([("bootstrap.servers".to_string(), bootstrap.to_string())])
        .collect()
}

/// `kafka-acls --add` as the admin, exactly as in the operator docs.
fn kafka_acls(bootstrap: &str, admin_config: &Path, args: &[&str]) {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/kafka-acls.sh"))
        .args(["--bootstrap-server", bootstrap, "--command-config"])
        .arg(admin_config)
        .arg("--add")
        .args(args)
        .output()
        .expect("run kafka-acls");
    assert!(
        output.status.success(),
        "kafka-acls {args:?}: {}",
        text(&output.stderr)
    );
}

/// `ackbar deploy` with `user`'s credentials given as `-X key=value`.
fn deploy_as(
    bootstrap: &str,
    prefix: &str,
    user: &str,
    tenant: &str,
    pipeline: &str,
    spec: &Path,
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"));
    command.args(["deploy", "--brokers", bootstrap, "--prefix", prefix]);
    for (key, value) in credentials(user) {
        command.args(["-X", &format!("{key}={value}")]);
    }
    command
        .args(["--tenant", tenant, "--pipeline", pipeline, "--spec"])
        .arg(spec)
        .arg(guest("fixture"))
        .env("ACKBAR_LOG", "error");
    let output = command.output().expect("run ackbar deploy");
    println!(
        "$ ackbar deploy as {user} to {tenant}/{pipeline}\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deploys_only_to_its_own_control_topics_and_within_its_bounds() {
    let bootstrap = sasl_kafka().bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("acl");
    let (orders, clicks) = (unique("orders"), unique("clicks"));
    let admin_credentials = credentials("admin");
    let admin: Vec<(&str, &str)> = admin_credentials
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    for topic in [&orders, &clicks] {
        ackbar_tests::kafka::create_topic_as(&bootstrap, &admin, topic, 1)
            .await
            .expect("create the data topic as admin");
    }
    let admin_config = dir.path().join("admin.properties");
    std::fs::write(
        &admin_config,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
         sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-secret\";\n",
    )
    .unwrap();
    for tenant in ["shop", "analytics"] {
        let principal = format!("User:{tenant}");
        kafka_acls(
            &bootstrap,
            &admin_config,
            &[
                "--allow-principal",
                &principal,
                "--operation",
                "Read",
                "--operation",
                "Write",
                "--operation",
                "Describe",
                "--topic",
                &format!("{prefix}.{tenant}."),
                "--resource-pattern-type",
                "prefixed",
            ],
        );
        kafka_acls(
            &bootstrap,
            &admin_config,
            &[
                "--allow-principal",
                &principal,
                "--operation",
                "Read",
                "--operation",
                "Describe",
                "--topic",
                &status_topic(&prefix),
            ],
        );
    }

    // The member runs with the platform's credentials.
    let config = dir.path().join("member.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{bootstrap}\"\n[run]\nsummary_interval_secs = 0\n\
             [kafka]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
             \"sasl.username\" = \"admin\"\n\"sasl.password\" = \"admin-secret\"\n\
             [control]\nprefix = \"{prefix}\"\npoll_interval_ms = 200\nstatus_interval_ms = 1000\n\
             [[tenant]]\nname = \"shop\"\ntopics = [\"{orders}\"]\n\
             [[tenant]]\nname = \"analytics\"\ntopics = [\"{clicks}\"]\n"
        ),
    )
    .unwrap();
    let _member = Member::start(&config);
    let status = StatusTopic::new(status_topic(&prefix), properties(&bootstrap, "admin"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while status.read_live().map(|m| m.len()).unwrap_or(0) != 1 {
        assert!(Instant::now() < deadline, "the member did not join");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let spec = |name: &str, topic: &str, group: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("topics = [\"{topic}\"]\ngroup_id = \"{group}\"\nack_policy = \"ACK\"\n"),
        )
        .unwrap();
        path
    };

    // shop's credentials cannot write analytics' control topics: the broker refuses.
    let stolen = deploy_as(
        &bootstrap,
        &prefix,
        "shop",
        "analytics",
        "stolen",
        &spec("stolen", &clicks, "analytics.stolen"),
    );
    assert!(!stolen.status.success());
    let why = text(&stolen.stderr);
    assert!(
        why.contains(&format!(
            "the broker refuses access to control topic {prefix}.analytics.pipelines: TopicAuthorizationFailed (Broker: Topic authorization failed)"
        )),
        "deploy prints the broker's authorization error: {why}"
    );
    let analytics = DesiredState::new(
        pipelines_topic(&prefix, "analytics").unwrap(),
        properties(&bootstrap, "admin"),
    );
    assert!(
        analytics.read().unwrap().is_empty(),
        "nothing reached analytics' desired state"
    );

    // Its own: deployed and running.
    let own = deploy_as(
        &bootstrap,
        &prefix,
        "shop",
        "shop",
        "orders",
        &spec("own", &orders, "shop.orders"),
    );
    assert!(own.status.success(), "shop deploys to shop");

    // Inside its control topics but outside its bounds: analytics' topic is not shared with
    // shop. The member refuses it, naming the tenant, the pipeline and the field.
    let peek = deploy_as(
        &bootstrap,
        &prefix,
        "shop",
        "shop",
        "peek",
        &spec("peek", &clicks, "shop.peek"),
    );
    assert!(!peek.status.success());
    let why = text(&peek.stderr);
    assert!(
        why.contains(&format!(
            "deploy to tenant 'shop': tenant 'shop': pipeline 'peek': field `topics` reads `{clicks}`, owned by tenant 'analytics'"
        )),
        "{why}"
    );
}
