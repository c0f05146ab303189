//! The embedded broker: librdkafka's in-process mock cluster, a real Kafka-protocol broker on a
//! loopback port, for `ackbar demo`, `brokers = "embedded"` and tests. No install needed.
//!
//! The mock cluster is not `Send`, so it lives on its own thread and is driven by commands.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use std::sync::mpsc;
use std::thread::JoinHandle;

type Reply = mpsc::Sender<Result<()>>;

enum Command {
    CreateTopic(String, i32, Reply),
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>, Reply),
    BrokerRequestErrors(i32, RDKafkaApiKey, Vec<RDKafkaRespErr>, Reply),
    PendingBrokerErrors(i32, RDKafkaApiKey, mpsc::Sender<Result<usize>>),
    BrokerDown(i32, Reply),
    BrokerUp(i32, Reply),
}

/// A running in-process Kafka cluster; stopped when dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let (commands, command_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("ackbar-embedded-broker".into())
            .spawn(move || {
                // A client with a mock cluster of its own: unlike `MockCluster::new`, its handle
                // reaches the per-broker error stacks.
                let owner: BaseProducer = match ClientConfig::new()
                    .set("test.mock.num.brokers", "1")
                    .create()
                {
                    Ok(owner) => owner,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("starting the embedded broker: {e}")));
                        return;
                    }
                };
                let Some(cluster) = owner.client().mock_cluster() else {
                    let _ = ready_tx.send(Err(anyhow!(
                        "starting the embedded broker: no mock cluster"
                    )));
                    return;
                };
                // SAFETY: the cluster lives as long as `owner`, which outlives this loop.
                let raw =
                    unsafe { rdsys::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                for command in command_rx {
                    match command {
                        Command::CreateTopic(name, partitions, reply) => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .with_context(|| format!("creating topic {name}"));
                            let _ = reply.send(r);
                        }
                        Command::RequestErrors(api, errors, reply) => {
                            cluster.request_errors(api, &errors);
                            let _ = reply.send(Ok(()));
                        }
                        Command::BrokerRequestErrors(id, api, errors, reply) => {
                            let mut result = Ok(());
                            for error in errors {
                                // SAFETY: a live cluster; one (error, round-trip time) pair.
                                let err = unsafe {
                                    rdsys::rd_kafka_mock_broker_push_request_error_rtts(
                                        raw,
                                        id,
                                        api as i16,
                                        1,
                                        error as i32,
                                        0i32,
                                    )
                                };
                                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                                    result =
                                        Err(anyhow!("pushing an error onto broker {id}: {err:?}"));
                                }
                            }
                            let _ = reply.send(result);
                        }
                        Command::PendingBrokerErrors(id, api, reply) => {
                            let mut count = 0usize;
                            // SAFETY: a live cluster; `count` is written by the call.
                            let err = unsafe {
                                rdsys::rd_kafka_mock_broker_error_stack_cnt(
                                    raw, id, api as i16, &mut count,
                                )
                            };
                            let _ = reply.send(match err {
                                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(count),
                                err => Err(anyhow!("error stack of broker {id}: {err:?}")),
                            });
                        }
                        Command::BrokerDown(id, reply) => {
                            let _ = reply.send(cluster.broker_down(id).map_err(Into::into));
                        }
                        Command::BrokerUp(id, reply) => {
                            let _ = reply.send(cluster.broker_up(id).map_err(Into::into));
                        }
                    }
                }
            })
            .context("spawning the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| anyhow!("the embedded broker thread died while starting"))??;
        Ok(EmbeddedBroker {
            bootstrap,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    fn send(&self, make: impl FnOnce(Reply) -> Command) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("embedded broker is running")
            .send(make(tx))
            .map_err(|_| anyhow!("the embedded broker has stopped"))?;
        rx.recv()
            .map_err(|_| anyhow!("the embedded broker has stopped"))?
    }

    /// Creates `name` with `partitions` partitions (replication factor 1). Fails if the topic
    /// exists.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.send(|r| Command::CreateTopic(name.to_string(), partitions, r))
    }

    /// Makes the next requests of `api` fail with `errors`, one error per request.
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> Result<()> {
        self.send(|r| Command::RequestErrors(api, errors.to_vec(), r))
    }

    /// Makes the next requests of `api` that broker `broker_id` receives fail with `errors`.
    pub fn broker_request_errors(
        &self,
        broker_id: i32,
        api: RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) -> Result<()> {
        self.send(|r| Command::BrokerRequestErrors(broker_id, api, errors.to_vec(), r))
    }

    /// How many of the errors given to [`broker_request_errors`](Self::broker_request_errors)
    /// have not been served yet.
    pub fn pending_broker_errors(&self, broker_id: i32, api: RDKafkaApiKey) -> Result<usize> {
        let (tx, rx) = mpsc::channel();
        let Some(commands) = self.commands.as_ref() else {
            bail!("the embedded broker has stopped");
        };
        commands
            .send(Command::PendingBrokerErrors(broker_id, api, tx))
            .map_err(|_| anyhow!("the embedded broker has stopped"))?;
        rx.recv()
            .map_err(|_| anyhow!("the embedded broker has stopped"))?
    }

    /// Disconnects broker `broker_id` (the only one is 1) and refuses new connections until
    /// [`broker_up`](Self::broker_up). Partition leadership does not move.
    pub fn broker_down(&self, broker_id: i32) -> Result<()> {
        self.send(|r| Command::BrokerDown(broker_id, r))
    }

    /// Lets broker `broker_id` accept connections again.
    pub fn broker_up(&self, broker_id: i32) -> Result<()> {
        self.send(|r| Command::BrokerUp(broker_id, r))
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
