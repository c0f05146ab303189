//! The web console `ackbar run` serves on its ops address: one page (`/`, everything inline, so
//! it works offline) that polls `/api/state` every second, and the actions it offers: holding
//! and releasing a pipeline or a partition, browsing and replaying dead letters.
//!
//! Reading needs nothing. An action needs `Authorization: Bearer <token>` when `[run]
//! console_token` (or `ACKBAR_CONSOLE_TOKEN`) is set; without a token the console is read-only,
//! unless `console = "read-write"` on a loopback address (a developer's machine). `ackbar run`
//! refuses to start read-write on any other address without a token.

mod dead_letters;

use crate::consumer::PartitionNow;
use crate::control::{DesiredPipeline, MemberStatus, StatusTopic};
use crate::offsets::TopicPartition;
use crate::recent::{Fault, LogLine, VersionSeen};
use crate::stats::StatsSnapshot;
use crate::supervisor::Supervised;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

/// The pipelines running now, replaced as they change (a fleet member adds and removes
/// deployed ones).
pub type Watched = Arc<RwLock<Vec<Arc<Supervised>>>>;

/// Who may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nobody: the page only shows.
    ReadOnly,
    /// Anyone who reaches the address (a loopback one).
    Local,
    /// Whoever sends this bearer token.
    Token(String),
}

/// What the console reports on and acts with.
pub struct Console {
    pub(crate) pipelines: Watched,
    pub(crate) access: Access,
    /// The cluster, for reading and replaying dead letters.
    pub(crate) bootstrap: String,
    pub(crate) started_ms: u64,
    /// Every live member of the fleet, for a member; `None` otherwise.
    pub(crate) fleet: Option<Arc<RwLock<Vec<MemberStatus>>>>,
    /// What each deployed pipeline runs and ran before, by pipeline name.
    pub(crate) deploys: Deploys,
}

/// The deploy each deployed pipeline runs, by name; replaced as they change.
pub type Deploys = Arc<RwLock<Vec<(String, DesiredPipeline)>>>;

/// One deploy of a pipeline.
#[derive(Serialize)]
struct DeployView {
    generation: u64,
    plugin: String,
}

impl Console {
    /// The console of the process whose pipelines are `pipelines`, on `bootstrap`.
    pub fn new(pipelines: Watched, access: Access, bootstrap: String) -> Self {
        Console {
            pipelines,
            access,
            bootstrap,
            started_ms: crate::control::now_ms(),
            fleet: None,
            deploys: Deploys::default(),
        }
    }

    /// Shows each deployed pipeline's deploy and the ones before it, from `deploys`.
    pub fn with_deploys(mut self, deploys: Deploys) -> Self {
        self.deploys = deploys;
        self
    }

    /// Shows the whole fleet too: every live member's record in `status`, followed on a
    /// thread of its own (reading the topic blocks).
    pub fn with_fleet(mut self, status: StatusTopic) -> Self {
        let fleet = Arc::new(RwLock::new(Vec::new()));
        let seen = Arc::downgrade(&fleet);
        let follow = std::thread::Builder::new()
            .name("ackbar-console-fleet".into())
            .spawn(move || {
                let mut follower = match status.follow() {
                    Ok(follower) => follower,
                    Err(e) => {
                        tracing::warn!("console: cannot follow the fleet's status: {e:#}");
                        return;
                    }
                };
                // Until the console is gone.
                while let Some(fleet) = seen.upgrade() {
                    match follower.live(std::time::Duration::from_secs(1)) {
                        Ok(live) => *fleet.write().unwrap_or_else(|e| e.into_inner()) = live,
                        Err(e) => tracing::debug!("console: reading the fleet's status: {e:#}"),
                    }
                }
            });
        if let Err(e) = follow {
            tracing::warn!("console: cannot follow the fleet's status: {e}");
        }
        self.fleet = Some(fleet);
        self
    }
}

/// The console's routes.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/pipelines/{pipeline}/hold", post(hold))
        .route("/api/pipelines/{pipeline}/release", post(release))
        .route("/api/pipelines/{pipeline}/dead-letters", get(browse))
        .route(
            "/api/pipelines/{pipeline}/dead-letters/replay",
            post(replay),
        )
        .with_state(console)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// Everything the page shows.
#[derive(Serialize)]
struct ProcessView {
    host: String,
    pid: u32,
    started_ms: u64,
    /// Whether the page offers actions.
    read_write: bool,
    /// Whether actions need the token.
    token_required: bool,
    pipelines: Vec<PipelineView>,
    /// Every live member of the fleet (this one included), for a member.
    fleet: Option<Vec<MemberStatus>>,
}

#[derive(Serialize)]
struct PipelineView {
    name: String,
    tenant: String,
    group: Option<String>,
    topics: Vec<String>,
    ack_policy: String,
    /// A share-group pipeline: no partitions of its own to hold.
    share: bool,
    dead_letter_topic: Option<String>,
    up: bool,
    down_reason: Option<String>,
    restarts: u64,
    plugin_version: Option<String>,
    stats: Option<StatsSnapshot>,
    held: bool,
    partitions: Vec<PartitionNow>,
    versions: Vec<VersionSeen>,
    /// For a deployed pipeline: the deploy it runs, then the ones before it, newest first.
    deploys: Vec<DeployView>,
    faults: Vec<Fault>,
    logs: Vec<LogLine>,
}

async fn state(State(console): State<Arc<Console>>) -> Json<ProcessView> {
    let pipelines = watched(&console);
    let mut views = Vec::with_capacity(pipelines.len());
    for p in pipelines {
        let config = p.config();
        let running = p.running().await;
        let health = p.health();
        views.push(PipelineView {
            name: p.name().to_string(),
            tenant: p.tenant().to_string(),
            group: config.group_id.clone(),
            topics: config.topics.clone(),
            ack_policy: config.ack_policy.to_string(),
            share: config.group_type == crate::config::GroupType::Share,
            dead_letter_topic: config.dead_letter_topic.clone(),
            up: running.is_some(),
            down_reason: running.is_none().then(|| p.last_failure()).flatten(),
            restarts: p.restarts(),
            plugin_version: running.as_ref().map(|r| r.plugin_version.clone()),
            stats: running.as_ref().map(|r| r.stats),
            held: health.holds.now().pipeline,
            partitions: p.partitions_now().await,
            versions: health.recent.versions(),
            deploys: deploys_of(&console, p.name()),
            faults: health.recent.faults(),
            logs: health.recent.logs(),
        });
    }
    Json(ProcessView {
        host: crate::control::host_name(),
        pid: std::process::id(),
        started_ms: console.started_ms,
        read_write: console.access != Access::ReadOnly,
        token_required: matches!(console.access, Access::Token(_)),
        pipelines: views,
        fleet: console.fleet.as_ref().map(|fleet| {
            let mut members = fleet.read().unwrap_or_else(|e| e.into_inner()).clone();
            members.sort_by(|a, b| a.member.cmp(&b.member));
            members
        }),
    })
}

/// `?topic=…&partition=…` names one partition; without them, the whole pipeline.
#[derive(Deserialize)]
struct PartitionQuery {
    topic: Option<String>,
    partition: Option<i32>,
}

impl PartitionQuery {
    fn partition(&self) -> Result<Option<TopicPartition>, Refusal> {
        match (&self.topic, self.partition) {
            (Some(topic), Some(partition)) => Ok(Some(TopicPartition::new(topic, partition))),
            (None, None) => Ok(None),
            _ => Err(refused(
                StatusCode::BAD_REQUEST,
                "give both topic and partition, or neither (the whole pipeline)",
            )),
        }
    }
}

async fn hold(
    State(console): State<Arc<Console>>,
    Path(pipeline): Path<String>,
    Query(query): Query<PartitionQuery>,
    headers: HeaderMap,
) -> Response {
    hold_or_release(&console, &pipeline, &query, &headers, true)
}

async fn release(
    State(console): State<Arc<Console>>,
    Path(pipeline): Path<String>,
    Query(query): Query<PartitionQuery>,
    headers: HeaderMap,
) -> Response {
    hold_or_release(&console, &pipeline, &query, &headers, false)
}

fn hold_or_release(
    console: &Console,
    pipeline: &str,
    query: &PartitionQuery,
    headers: &HeaderMap,
    hold: bool,
) -> Response {
    if let Err(refusal) = authorized(console, headers) {
        return refusal.into_response();
    }
    let Some(p) = find(console, pipeline) else {
        return refused(StatusCode::NOT_FOUND, &format!("no pipeline '{pipeline}'"))
            .into_response();
    };
    if p.config().group_type == crate::config::GroupType::Share {
        return refused(
            StatusCode::CONFLICT,
            &format!(
                "pipeline '{pipeline}' reads a share group, which has no partitions of its own to \
                 hold: the broker hands its records to other members; stop this member instead"
            ),
        )
        .into_response();
    }
    let partition = match query.partition() {
        Ok(partition) => partition,
        Err(refusal) => return refusal.into_response(),
    };
    let what = match &partition {
        Some(tp) => format!("partition {tp}"),
        None => "every partition".to_string(),
    };
    let holds = &p.health().holds;
    let changed = match hold {
        true => holds.hold(partition),
        false => holds.release(partition),
    };
    let done = if hold { "held" } else { "released" };
    tracing::info!(pipeline, "console: {what} {done}");
    Json(serde_json::json!({ "pipeline": pipeline, "changed": changed, "done": format!("{what} {done}") }))
        .into_response()
}

#[derive(Deserialize)]
struct BrowseQuery {
    limit: Option<usize>,
}

async fn browse(
    State(console): State<Arc<Console>>,
    Path(pipeline): Path<String>,
    Query(query): Query<BrowseQuery>,
) -> Response {
    let Some(p) = find(&console, &pipeline) else {
        return refused(StatusCode::NOT_FOUND, &format!("no pipeline '{pipeline}'"))
            .into_response();
    };
    let (config, bootstrap) = (p.config(), console.bootstrap.clone());
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let read =
        tokio::task::spawn_blocking(move || dead_letters::browse(&config, &bootstrap, limit)).await;
    match read {
        Ok(Ok(letters)) => Json(letters).into_response(),
        Ok(Err(e)) => refused(StatusCode::BAD_GATEWAY, &format!("{e:#}")).into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()).into_response(),
    }
}

/// One letter (`partition` and `offset`), or `all`.
#[derive(Deserialize)]
struct ReplayRequest {
    partition: Option<i32>,
    offset: Option<i64>,
    #[serde(default)]
    all: bool,
}

async fn replay(
    State(console): State<Arc<Console>>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    Json(request): Json<ReplayRequest>,
) -> Response {
    if let Err(refusal) = authorized(&console, &headers) {
        return refusal.into_response();
    }
    let Some(p) = find(&console, &pipeline) else {
        return refused(StatusCode::NOT_FOUND, &format!("no pipeline '{pipeline}'"))
            .into_response();
    };
    let at = match (request.partition, request.offset, request.all) {
        (Some(partition), Some(offset), false) => Some((partition, offset)),
        (None, None, true) => None,
        _ => {
            return refused(
                StatusCode::BAD_REQUEST,
                "give partition and offset of one dead letter, or all: true",
            )
            .into_response()
        }
    };
    match dead_letters::replay(p.config(), console.bootstrap.clone(), at).await {
        Ok(replayed) => {
            ::metrics::counter!(
                "ackbar_dead_letters_replayed_total",
                "tenant" => p.tenant().to_string(),
                "pipeline" => pipeline.clone()
            )
            .increment(replayed as u64);
            tracing::info!(pipeline, "console: {replayed} dead letters replayed");
            Json(serde_json::json!({ "pipeline": pipeline, "replayed": replayed })).into_response()
        }
        Err(e) => refused(StatusCode::BAD_GATEWAY, &format!("{e:#}")).into_response(),
    }
}

/// `Err` with the response to send when the request may not act.
fn authorized(console: &Console, headers: &HeaderMap) -> Result<(), Refusal> {
    match &console.access {
        Access::ReadOnly => Err(refused(
            StatusCode::FORBIDDEN,
            "the console is read-only: set [run] console_token (or ACKBAR_CONSOLE_TOKEN) to allow actions",
        )),
        Access::Local => Ok(()),
        Access::Token(token) => {
            let sent = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match sent {
                Some(sent) if constant_time_eq(sent.as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err(refused(StatusCode::UNAUTHORIZED, "wrong console token")),
                None => Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "this action needs the console token (Authorization: Bearer <token>)",
                )),
            }
        }
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how much
/// of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request is refused: its status and a sentence.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn refused(status: StatusCode, why: &str) -> Refusal {
    Refusal(status, why.to_string())
}

fn deploys_of(console: &Console, pipeline: &str) -> Vec<DeployView> {
    let deploys = console.deploys.read().unwrap_or_else(|e| e.into_inner());
    let Some((_, desired)) = deploys.iter().find(|(name, _)| name == pipeline) else {
        return Vec::new();
    };
    std::iter::once((desired.generation, &desired.plugin))
        .chain(
            desired
                .history
                .iter()
                .map(|past| (past.generation, &past.plugin)),
        )
        .map(|(generation, plugin)| DeployView {
            generation,
            plugin: plugin.to_string(),
        })
        .collect()
}

fn watched(console: &Console) -> Vec<Arc<Supervised>> {
    console
        .pipelines
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn find(console: &Console, pipeline: &str) -> Option<Arc<Supervised>> {
    watched(console).into_iter().find(|p| p.name() == pipeline)
}

/// Who may act, from `[run] console`, the token (`console_token` or `ACKBAR_CONSOLE_TOKEN`) and
/// the address: refuses read-write on a non-loopback address without a token.
pub fn access(
    mode: crate::config::ConsoleMode,
    token: Option<String>,
    address: std::net::SocketAddr,
) -> anyhow::Result<Access> {
    use crate::config::ConsoleMode;
    let token = token.filter(|t| !t.is_empty());
    match (mode, token) {
        (ConsoleMode::ReadOnly | ConsoleMode::Off, _) | (ConsoleMode::Auto, None) => {
            Ok(Access::ReadOnly)
        }
        (ConsoleMode::Auto, Some(token)) => Ok(Access::Token(token)),
        (ConsoleMode::ReadWrite, Some(token)) => Ok(Access::Token(token)),
        (ConsoleMode::ReadWrite, None) if address.ip().is_loopback() => Ok(Access::Local),
        (ConsoleMode::ReadWrite, None) => anyhow::bail!(
            "[run] console = \"read-write\" on {address} needs console_token (or \
             ACKBAR_CONSOLE_TOKEN): anyone who reaches that address could pause pipelines and \
             replay dead letters"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsoleMode;

    #[test]
    fn who_may_act_follows_the_mode_the_token_and_the_address() {
        let local: std::net::SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let open: std::net::SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let token = || Some("t".to_string());
        let access = |mode, token, address| access(mode, token, address).unwrap();
        assert_eq!(access(ConsoleMode::Auto, None, open), Access::ReadOnly);
        assert_eq!(
            access(ConsoleMode::Auto, token(), open),
            Access::Token("t".into())
        );
        assert_eq!(
            access(ConsoleMode::ReadOnly, token(), local),
            Access::ReadOnly
        );
        assert_eq!(access(ConsoleMode::ReadWrite, None, local), Access::Local);
        assert_eq!(
            access(ConsoleMode::ReadWrite, token(), open),
            Access::Token("t".into())
        );
        let refused = super::access(ConsoleMode::ReadWrite, None, open).unwrap_err();
        assert!(
            refused.to_string().contains("needs console_token"),
            "{refused}"
        );
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret-and-more"));
    }
}
