//! Which member of a fleet takes the decisions that must be taken once (a canary's verdict):
//! the one Kafka assigns the single partition of the decisions topic to, in the consumer group
//! `<prefix>.decisions`. Kafka's group membership is the election: a member that stops or
//! crashes loses the partition, and another gets it after a rebalance.
//!
//! The group's consumer reads nothing it keeps (the decisions are followed by a reader of their
//! own); it lives on a thread of its own that polls to stay in the group.

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Membership in the decisions group.
pub struct Leadership {
    leads: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Joins the group `group` on `topic` with the librdkafka `properties`.
    pub fn join(properties: &BTreeMap<String, String>, group: &str, topic: &str) -> Result<Self> {
        let mut config = ClientConfig::new();
        for (key, value) in properties {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .create()
            .context("creating the decisions group's consumer")?;
        consumer
            .subscribe(&[topic])
            .with_context(|| format!("joining the group {group} on {topic}"))?;
        let leads = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_leads, thread_stop) = (leads.clone(), stop.clone());
        let group = group.to_string();
        let thread = std::thread::Builder::new()
            .name("ackbar-leadership".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    // Rebalances happen inside poll; what it reads is not needed.
                    let _ = consumer.poll(Duration::from_millis(200));
                    let now = consumer.assignment().is_ok_and(|a| a.count() > 0);
                    if thread_leads.swap(now, Ordering::Relaxed) != now {
                        tracing::info!(%group, "this member {} the fleet's decisions", match now {
                            true => "now takes",
                            false => "no longer takes",
                        });
                    }
                }
                consumer.unsubscribe();
            })
            .context("starting the leadership thread")?;
        Ok(Leadership {
            leads,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether this member takes the fleet's decisions now.
    pub fn leads(&self) -> bool {
        self.leads.load(Ordering::Relaxed)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
