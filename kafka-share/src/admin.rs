//! The administrative requests of share groups that librdkafka's admin client lacks: setting
//! group configs such as `share.auto.offset.reset`, reading the share-partition start offsets
//! the group has persisted, and the broker's `share.version`.

use std::time::Duration;

use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::conn::{bootstrap_addrs, connect_any, Conn, ConnOpts};
use crate::error::{Error, Result};

/// ConfigResource.Type.GROUP in IncrementalAlterConfigs.
const RESOURCE_GROUP: i8 = 32;

/// A connection for share-group administration (group configs, persisted start offsets).
pub struct Admin {
    opts: ConnOpts,
    conn: Conn,
}

impl Admin {
    /// Connects to the first reachable broker of `bootstrap` (comma-separated `host:port`).
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
