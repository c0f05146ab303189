//! The web console in a real browser: Debian's headless Chromium, driven through ChromeDriver,
//! against `ackbar run` on the embedded broker. The page's numbers are `/metrics`'; a request
//! without the token is refused; pausing a partition stops it while the other goes on, and
//! resuming it handles what waited; a dead letter replayed from the page is handled.
//! `ACKBAR_SCREENSHOTS=DIR` keeps a screenshot of each view there (the docs' images).

use crate::support::{ackbar, guest, http_get, http_request, repo_root, text, RunningAckbar};
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "console-test-token";

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs Chromium and ChromeDriver from the distribution's packages if they are missing,
/// and starts ChromeDriver.
fn driver() -> Driver {
    let install = Command::new("bash")
        .arg(repo_root().join("scripts/install-browser.sh"))
        .output()
        .expect("run install-browser.sh");
    assert!(install.status.success(), "{}", text(&install.stderr));
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(driver: &Driver) -> Client {
    let profile = driver._profile.path().display().to_string();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,1000", format!("--user-data-dir={profile}"),
            ]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The text of the first element matching `css`, once `done` holds for it (the page redraws
/// every second, so elements are looked up again on each try).
async fn text_when(client: &Client, css: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if done(&text) {
                    return text;
                }
                last = text;
            }
        }
        assert!(Instant::now() < deadline, "{css}: still {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the first element matching `css`, trying again while a redraw replaces it.
async fn click(client: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if element.click().await.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "cannot click {css}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if let Some(dir) = std::env::var_os("ACKBAR_SCREENSHOTS") {
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

/// The `partition@offset` of the listed dead letter whose row mentions `reason`.
async fn letter_with(client: &Client, reason: &str) -> String {
    let script = "return [...document.querySelectorAll(\"section[data-pipeline='orders'] tr[data-letter]\")]\
        .filter(r => r.textContent.includes(arguments[0])).map(r => r.dataset.letter)[0] || null";
    let deadline = Instant::now() + WAIT;
    loop {
        let found = client.execute(script, vec![reason.into()]).await;
        if let Ok(serde_json::Value::String(letter)) = found {
            return letter;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter listed with {reason:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stat(pipeline: &str, stat: &str) -> String {
    format!("section[data-pipeline='{pipeline}'] [data-stat='{stat}']")
}

fn partition(pipeline: &str, partition: &str, field: &str) -> String {
    format!("section[data-pipeline='{pipeline}'] tr[data-partition='{partition}'] [data-field='{field}']")
}

/// `/metrics`'s sum of `name` over the series of `pipeline`.
fn metric(ops: &str, name: &str, pipeline: &str) -> u64 {
    let metrics = http_get(ops, "/metrics").1;
    metrics
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{name}{{")) && l.contains(&format!("pipeline=\"{pipeline}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn produce(broker: &str, partition: &str, payloads: &[&str]) {
    let mut args = vec![
        "produce",
        "--brokers",
        broker,
        "--topic",
        "in",
        "--partition",
        partition,
    ];
    args.extend(payloads);
    let out = ackbar(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_metrics_say_pauses_a_partition_and_replays_a_dead_letter() {
    let driver = driver();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"brokers = "embedded"
[run]
summary_interval_secs = 0
metrics_addr = "127.0.0.1:0"
console_token = "{TOKEN}"
[embedded]
partitions = 2
[[pipeline]]
name = "orders"
tenant = "shop"
topics = ["in"]
group_id = "orders"
ack_policy = "NACK_ON_ERROR"
max_attempts = 1
dead_letter_topic = "dlq"
plugin = "{}"
"#,
        guest("fixture").display()
    );
    let mut run = RunningAckbar::start(&config, dir.path());
    let broker = run.broker_address();
    let ops = run.ops_address();
    produce(
        &broker,
        "0",
        &[
            "ok",
            "log:hello from the console test",
            "trap",
            "fail-unless-replayed",
        ],
    );

    let client = browser(&driver).await;
    client.goto(&format!("http://{ops}/")).await.unwrap();
    // The page's numbers are the metrics' once all four are handled.
    text_when(&client, &stat("orders", "messages"), |t| t == "4").await;
    text_when(&client, &stat("orders", "dead_letters"), |t| t == "2").await;
    for (stat_name, metric_name) in [
        ("messages", "ackbar_messages_total"),
        ("traps", "ackbar_traps_total"),
        ("dead_letters", "ackbar_dead_letters_total"),
        ("commits", "ackbar_commits_total"),
    ] {
        // A commit may land between the two reads: they must agree once it has.
        text_when(&client, &stat("orders", stat_name), |shown| {
            shown == metric(&ops, metric_name, "orders").to_string()
        })
        .await;
    }
    // The trap with the guest's panic message, and the guest's log line.
    click(
        &client,
        "section[data-pipeline='orders'] details[data-panel='faults'] summary",
    )
    .await;
    click(
        &client,
        "section[data-pipeline='orders'] details[data-panel='logs'] summary",
    )
    .await;
    let page = client.source().await.unwrap();
    assert!(
        page.contains("requested trap"),
        "no panic message on the page"
    );
    assert!(
        page.contains("hello from the console test"),
        "no guest log line on the page"
    );
    screenshot(&client, "console-pipeline.png").await;

    // Without the token, an action is refused, from the page and from anyone else.
    let held_path = "/api/pipelines/orders/hold?topic=in&partition=0";
    assert_eq!(http_request(&ops, "POST", held_path, None).0, 401);
    assert_eq!(http_request(&ops, "POST", held_path, Some("wrong")).0, 401);
    click(
        &client,
        &format!(
            "{} ~ td button[data-action='hold']",
            partition("orders", "in/0", "status")
        ),
    )
    .await;
    text_when(&client, "#notice", |t| t.starts_with("401")).await;
    assert_eq!(
        text_when(&client, &partition("orders", "in/0", "status"), |_| true).await,
        "consuming"
    );

    // With it, pausing in/0 stops it while in/1 goes on; resuming handles what waited.
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(&format!("{TOKEN}\n"))
        .await
        .unwrap();
    client
        .execute(
            "document.getElementById('token').dispatchEvent(new Event('change'))",
            vec![],
        )
        .await
        .unwrap();
    click(
        &client,
        &format!(
            "{} ~ td button[data-action='hold']",
            partition("orders", "in/0", "status")
        ),
    )
    .await;
    text_when(&client, &partition("orders", "in/0", "status"), |t| {
        t == "held"
    })
    .await;
    produce(&broker, "0", &["ok"]);
    produce(&broker, "1", &["ok"]);
    text_when(&client, &stat("orders", "messages"), |t| t == "5").await;
    // The message on in/1 is handled; the one on in/0 waits (nothing could handle it sooner).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        text_when(&client, &stat("orders", "messages"), |_| true).await,
        "5"
    );
    assert_eq!(metric(&ops, "ackbar_messages_total", "orders"), 5);
    screenshot(&client, "console-held.png").await;
    click(
        &client,
        &format!(
            "{} ~ td button[data-action='release']",
            partition("orders", "in/0", "status")
        ),
    )
    .await;
    text_when(&client, &stat("orders", "messages"), |t| t == "6").await;
    text_when(&client, &partition("orders", "in/0", "status"), |t| {
        t == "consuming"
    })
    .await;

    // The dead letters, browsed; the one that fails until replayed is replayed and handled.
    click(
        &client,
        "section[data-pipeline='orders'] details[data-panel='dead'] summary",
    )
    .await;
    click(
        &client,
        "section[data-pipeline='orders'] button[data-action='browse']",
    )
    .await;
    // Which partition a dead letter landed on is the producer's choice: find it by its reason.
    let letter = letter_with(&client, "not replayed yet").await;
    letter_with(&client, "requested trap").await;
    screenshot(&client, "console-dead-letters.png").await;
    let ok_before = metric(&ops, "ackbar_actions_total", "orders");
    click(
        &client,
        &format!("section[data-pipeline='orders'] tr[data-letter='{letter}'] button[data-action='replay']"),
    )
    .await;
    text_when(&client, "#notice", |t| {
        t.contains("1 dead letters replayed")
    })
    .await;
    text_when(&client, &stat("orders", "messages"), |t| t == "7").await;
    text_when(&client, &stat("orders", "ok"), |t| t == "5").await;
    assert_eq!(
        metric(&ops, "ackbar_dead_letters_replayed_total", "orders"),
        1
    );
    assert_eq!(
        metric(&ops, "ackbar_actions_total", "orders"),
        ok_before + 1
    );
    // Still two dead letters: the replayed one was handled, not dead-lettered again.
    assert_eq!(metric(&ops, "ackbar_dead_letters_total", "orders"), 2);

    client.close().await.unwrap();
    run.signal("TERM");
    assert!(run.wait_exit().success());
}

/// A fleet member's console shows every live member from the status topic (here itself, with
/// the pipeline of its file and one deployed), and a deployed pipeline's deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_console_shows_the_fleet() {
    let driver = driver();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"brokers = "embedded"
[run]
summary_interval_secs = 0
metrics_addr = "127.0.0.1:0"
[embedded]
partitions = 1
[control]
status_interval_ms = 1000
[[tenant]]
name = "shop"
topics = ["orders"]
[[tenant.pipeline]]
name = "orders"
topics = ["orders"]
group_id = "shop.orders"
ack_policy = "ACK"
plugin = "{}"
"#,
        guest("fixture").display()
    );
    let mut run = RunningAckbar::start(&config, dir.path());
    let broker = run.broker_address();
    let ops = run.ops_address();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "topics = [\"orders\"]\ngroup_id = \"shop.deployed\"\nack_policy = \"ACK\"\n",
    )
    .unwrap();
    let plugin = guest("fixture");
    let deploy = ackbar(&[
        "deploy",
        "--brokers",
        &broker,
        "--tenant",
        "shop",
        "--pipeline",
        "deployed",
        "--spec",
        spec.to_str().unwrap(),
        plugin.to_str().unwrap(),
    ]);
    assert!(deploy.status.success(), "{}", text(&deploy.stderr));
    let client = browser(&driver).await;
    client.goto(&format!("http://{ops}/")).await.unwrap();
    let row = text_when(&client, "#fleet tr[data-fleet-pipeline='orders']", |t| {
        t.contains("shop") && t.contains("orders/0")
    })
    .await;
    assert!(row.contains("running"), "{row}");
    text_when(&client, "#fleet tr[data-fleet-pipeline='deployed']", |t| {
        t.contains("generation 1")
    })
    .await;
    click(
        &client,
        "section[data-pipeline='deployed'] details[data-panel='versions'] summary",
    )
    .await;
    let current = text_when(
        &client,
        "section[data-pipeline='deployed'] li[data-generation='1']",
        |t| !t.is_empty(),
    )
    .await;
    assert!(
        current.contains("(current)") && current.contains("sha256:"),
        "{current}"
    );
    screenshot(&client, "console-fleet.png").await;
    client.close().await.unwrap();
    run.signal("TERM");
    assert!(run.wait_exit().success());
}

/// Actions open to anyone on the network are refused before anything starts.
#[test]
fn read_write_on_a_network_address_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"embedded\"\n[run]\nmetrics_addr = \"0.0.0.0:0\"\nconsole = \"read-write\"\n\
             [[pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\nplugin = \"{}\"\n",
            guest("fixture").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(["run", config.to_str().unwrap()])
        .env("ACKBAR_LOG", "error")
        .env_remove("ACKBAR_CONSOLE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("console = \"read-write\" on 0.0.0.0:")
            && stderr.contains("needs console_token"),
        "{stderr}"
    );
}
