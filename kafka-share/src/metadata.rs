//! Cluster metadata (Metadata v10-12): topic ids and names, partition leaders and broker
//! addresses, and from them which leader each assigned partition is fetched from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::conn::{connect_any, Conn};
use crate::consumer::Links;
use crate::error::Result;
use crate::types::{RecordId, Tp};

#[derive(Default)]
pub(crate) struct TopicMeta {
    pub name: Arc<str>,
    /// Partition -> leader broker id (-1: none).
    pub leaders: HashMap<i32, i32>,
}

#[derive(Default)]
pub(crate) struct Metadata {
    /// Broker id -> `host:port`.
    pub brokers: HashMap<i32, String>,
    pub topics: HashMap<Uuid, TopicMeta>,
    pub ids: HashMap<Arc<str>, Uuid>,
    /// Something is known to be out of date: the next poll refreshes.
    pub stale: bool,
}

impl Metadata {
    /// The topic's name, or its id as text while metadata does not know it.
    pub fn topic_name(&self, id: &Uuid) -> Arc<str> {
        self.topics
            .get(id)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| Arc::from(id.to_string()))
    }

    pub fn record_id(&self, tp: &Tp, offset: i64) -> RecordId {
        RecordId {
            topic: self.topic_name(&tp.0),
            partition: tp.1,
            offset,
        }
    }

    /// Whether the metadata must be reloaded before fetching `assignment`.
    pub fn needs_refresh(&self, assignment: &BTreeMap<Uuid, Vec<i32>>) -> bool {
        self.stale || assignment.keys().any(|id| !self.topics.contains_key(id))
    }

    /// The assigned partitions grouped by leader. A partition without a known leader is left
    /// out and marks the metadata stale.
    pub fn by_leader(
        &mut self,
        assignment: &BTreeMap<Uuid, Vec<i32>>,
    ) -> BTreeMap<i32, BTreeSet<Tp>> {
        let mut desired: BTreeMap<i32, BTreeSet<Tp>> = BTreeMap::new();
        for (id, parts) in assignment {
            let Some(topic) = self.topics.get(id) else {
                continue;
            };
            for p in parts {
                match topic.leaders.get(p) {
                    Some(&leader) if leader >= 0 => {
                        desired.entry(leader).or_default().insert((*id, *p));
                    }
                    _ => self.stale = true,
                }
            }
        }
        desired
    }

    /// The metadata a Metadata response describes; topics with an error are left out.
    pub fn from_response(resp: &MetadataResponse) -> Metadata {
        let mut meta = Metadata {
            brokers: resp
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect(),
            ..Metadata::default()
        };
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            if t.error_code != 0 {
                tracing::debug!(
                    topic = name.0.as_str(),
                    error = %crate::error::code_name(t.error_code),
                    "topic metadata unavailable"
                );
                continue;
            }
            let name: Arc<str> = Arc::from(name.0.as_str());
            meta.ids.insert(name.clone(), t.topic_id);
            meta.topics.insert(
                t.topic_id,
                TopicMeta {
                    name,
                    leaders: t
                        .partitions
                        .iter()
                        .map(|p| (p.partition_index, p.leader_id.0))
                        .collect(),
                },
            );
        }
        meta
    }
}

/// Loads metadata for `topics`, on the kept bootstrap connection or a new one; tries twice.
pub(crate) async fn refresh(links: &mut Links, topics: &[String]) -> Result<Metadata> {
    let mut last = None;
    for _ in 0..2 {
        let mut conn = match links.meta_conn.take() {
            Some(c) => c,
            None => match connect_any(&links.bootstrap, &links.opts).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            },
        };
        match load(&mut conn, topics).await {
            Ok(meta) => {
                links.meta_conn = Some(conn);
                return Ok(meta);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried"))
}

async fn load(conn: &mut Conn, topics: &[String]) -> Result<Metadata> {
    let version = conn.version(ApiKey::Metadata, (10, 12))?;
    let req = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
            })
            .collect(),
    ));
    let resp = conn.call(&req, version).await?;
    Ok(Metadata::from_response(&resp))
}
