//! The few administrative requests a share-group deployment (and its tests) needs: creating
//! topics, setting group configs such as `share.auto.offset.reset`, producing, and reading
//! the share-partition start offsets the group has persisted.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::conn::{bootstrap_addrs, connect_any, Conn, ConnOpts};
use crate::error::{Error, Result};

/// ConfigResource.Type.GROUP in IncrementalAlterConfigs.
const RESOURCE_GROUP: i8 = 32;
const TOPIC_ALREADY_EXISTS: i16 = 36;

pub struct Admin {
    opts: ConnOpts,
    conn: Conn,
}

impl Admin {
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        let bootstrap = bootstrap_addrs(bootstrap)?;
        let opts = ConnOpts {
            client_id: "kafka-share-admin".into(),
            request_timeout: Duration::from_secs(30),
        };
        let conn = connect_any(&bootstrap, &opts).await?;
        Ok(Admin { opts, conn })
    }

    /// Finalized feature levels the broker reports, e.g. `share.version`.
    pub fn finalized_feature(&self, name: &str) -> Option<i16> {
        self.conn.features.get(name).copied()
    }

    /// Creates a topic with replication factor 1 and waits until every partition has a
    /// leader. An existing topic is left as it is.
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        let version = self.conn.version(ApiKey::CreateTopics, (5, 7))?;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]);
        let resp = self.conn.call(&req, version).await?;
        for t in &resp.topics {
            if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
                return Err(Error::broker(
                    &self.conn.peer,
                    "CreateTopics",
                    t.error_code,
                    format!("topic {name}"),
                    t.error_message.as_deref(),
                ));
            }
        }
        for _ in 0..150 {
            if self.leaders(name).await?.len() == partitions as usize {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Metadata(format!(
            "topic {name}: partitions got no leader"
        )))
    }

    /// partition -> leader address, for partitions that have a leader.
    async fn leaders(&mut self, topic: &str) -> Result<Vec<(i32, String)>> {
        let version = self.conn.version(ApiKey::Metadata, (10, 12))?;
        let req =
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.to_owned()))))]));
        let resp = self.conn.call(&req, version).await?;
        let mut out = Vec::new();
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 || p.leader_id.0 < 0 {
                    continue;
                }
                if let Some(b) = resp.brokers.iter().find(|b| b.node_id == p.leader_id) {
                    out.push((p.partition_index, format!("{}:{}", b.host.as_str(), b.port)));
                }
            }
        }
        Ok(out)
    }

    /// Sets group configs (IncrementalAlterConfigs SET on resource type GROUP), e.g.
    /// `share.auto.offset.reset=earliest`, `share.record.lock.duration.ms`,
    /// `share.delivery.count.limit`. Works before the group exists.
    pub async fn set_group_config(&mut self, group: &str, configs: &[(&str, &str)]) -> Result<()> {
        let version = self.conn.version(ApiKey::IncrementalAlterConfigs, (0, 1))?;
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_GROUP)
                .with_resource_name(StrBytes::from_string(group.to_owned()))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_config_operation(0)
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                ),
        ]);
        let resp = self.conn.call(&req, version).await?;
        for r in &resp.responses {
            if r.error_code != 0 {
                return Err(Error::broker(
                    &self.conn.peer,
                    "IncrementalAlterConfigs",
                    r.error_code,
                    format!("group {group}"),
                    r.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// Produces one uncompressed batch (acks=all) to the partition's leader; returns the
    /// base offset.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[(Option<Bytes>, Option<Bytes>)],
    ) -> Result<i64> {
        let leaders = self.leaders(topic).await?;
        let addr = leaders
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| Error::Metadata(format!("{topic}-{partition} has no leader")))?;
        let mut conn = Conn::connect(&addr, None, &self.opts).await?;
        // v13 names topics by id; v12 still takes names.
        let version = conn.version(ApiKey::Produce, (3, 12))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol puts records in one batch only while offset - sequence stays
                // constant; without a producer id the broker ignores sequences.
                sequence: i as i32,
                timestamp: now,
                key: k.clone(),
                value: v.clone(),
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| conn.protocol("Produce", format!("encoding records: {e}")))?;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.freeze()))])]);
        let resp = conn.call(&req, version).await?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| conn.protocol("Produce", "partition missing from response".into()))?;
        if p.error_code != 0 {
            return Err(Error::broker(
                &conn.peer,
                "Produce",
                p.error_code,
                format!("partition {topic}-{partition}"),
                p.error_message.as_deref(),
            ));
        }
        Ok(p.base_offset)
    }

    /// The share-partition start offset per partition of `topic` that the group has
    /// persisted (DescribeShareGroupOffsets, on the group coordinator): every offset below it
    /// is acknowledged or archived. -1 while the group has not initialized the partition.
    pub async fn share_group_start_offsets(
        &mut self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, i64)>> {
        let mut coordinator = self.coordinator(group).await?;
        let version = coordinator.version(ApiKey::DescribeShareGroupOffsets, (0, 0))?;
        let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(StrBytes::from_string(group.to_owned()).into())
                // Null topics: every partition the group has state for. (An empty partition
                // list is not "all": Kafka 4.4 answers it with UNKNOWN_SERVER_ERROR.)
                .with_topics(None),
        ]);
        let resp = coordinator.call(&req, version).await?;
        let mut out = Vec::new();
        for g in &resp.groups {
            if g.error_code != 0 {
                return Err(Error::broker(
                    &coordinator.peer,
                    "DescribeShareGroupOffsets",
                    g.error_code,
                    format!("group {group}"),
                    g.error_message.as_deref(),
                ));
            }
            for t in g.topics.iter().filter(|t| t.topic_name.0.as_str() == topic) {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(Error::broker(
                            &coordinator.peer,
                            "DescribeShareGroupOffsets",
                            p.error_code,
                            format!("partition {topic}-{}", p.partition_index),
                            p.error_message.as_deref(),
                        ));
                    }
                    out.push((p.partition_index, p.start_offset));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    async fn coordinator(&mut self, group: &str) -> Result<Conn> {
        let version = self.conn.version(ApiKey::FindCoordinator, (4, 6))?;
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_owned())]);
        let resp = self.conn.call(&req, version).await?;
        let c = resp.coordinators.first().ok_or_else(|| {
            self.conn
                .protocol("FindCoordinator", "no coordinator".into())
        })?;
        if c.error_code != 0 {
            return Err(Error::broker(
                &self.conn.peer,
                "FindCoordinator",
                c.error_code,
                format!("group {group}"),
                c.error_message.as_deref(),
            ));
        }
        let addr = format!("{}:{}", c.host.as_str(), c.port);
        Conn::connect(&addr, Some(c.node_id.0), &self.opts).await
    }
}
