//! A partition's queue in librdkafka as its worker reads it: one message at a time while the
//! worker waits (the stream wakes it), and every message a batch has room for at once when they
//! are already waiting: one `rd_kafka_consume_batch_queue` call, where the stream would build an
//! event and register a waker for each message. A message the worker waited for is copied out
//! of librdkafka into a [`Message`]; one a batch took stays in librdkafka's fetch buffer
//! ([`Taken`]), so packing the batch is its only copy unless the worker needs it whole.

use crate::bindings::{Header, Message, MessageFields};
use crate::offsets::TopicPartition;
use rdkafka::bindings as rd;
use rdkafka::consumer::stream_consumer::{StreamConsumer, StreamPartitionQueue};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use std::any::Any;
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;

/// One partition's queue.
pub(crate) struct PartitionQueue<C: ConsumerContext + 'static = super::rebalance::PipelineContext> {
    /// Popped from librdkafka and not taken yet, in offset order. Declared first so that it is
    /// dropped first: its messages belong to the consumer `stream` keeps alive.
    popped: VecDeque<PoppedMessage>,
    /// Where a pop writes its message pointers; kept to pop without allocating.
    slots: PopSlots,
    /// A second handle on the queue `stream` reads, for popping many messages at once.
    native: NativeQueue,
    stream: StreamPartitionQueue<C>,
    /// The consumer, which a message taken in place keeps alive: librdkafka's messages are
    /// destroyed before their client.
    consumer: Arc<dyn Any + Send + Sync>,
}

/// Scratch space for one pop's message pointers: empty between pops.
#[derive(Default)]
struct PopSlots(Vec<*mut rd::rd_kafka_message_t>);

// SAFETY: it holds no pointer outside `pop_waiting` (drained there), so nothing is shared.
unsafe impl Send for PopSlots {}

impl<C: ConsumerContext + 'static> PartitionQueue<C> {
    /// Splits `tp`'s queue off `consumer`'s, so that it is read only here. `None` if the
    /// consumer does not have the partition.
    pub(crate) fn split(consumer: &Arc<StreamConsumer<C>>, tp: &TopicPartition) -> Option<Self> {
        let stream = consumer.split_partition_queue(&tp.topic, tp.partition)?;
        let topic = CString::new(tp.topic.as_bytes()).ok()?;
        // SAFETY: the client pointer is live while `consumer` is (and `stream` keeps it alive
        // as long as this queue exists); `topic` is a NUL-terminated string that outlives the
        // call. The handle returned is ours to destroy (`NativeQueue`'s drop).
        let native = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                tp.partition,
            )
        };
        let native = NativeQueue(NonNull::new(native)?);
        Some(PartitionQueue {
            popped: VecDeque::new(),
            slots: PopSlots::default(),
            native,
            stream,
            consumer: consumer.clone(),
        })
    }

    /// Waits for the next message (a popped one first), copied for the guest at `attempt` 1.
    /// Cancellation safe: a message is either returned or left in the queue.
    pub(crate) async fn recv(&mut self, tp: &TopicPartition) -> KafkaResult<Message> {
        if let Some(popped) = self.take_popped(tp) {
            return popped;
        }
        let received = self.stream.recv().await?;
        // SAFETY: `received` borrows a live message from the queue until it is dropped, after
        // the copy.
        Ok(unsafe { copy_message(&*received.ptr(), tp) })
    }

    /// The next message already waiting, without waiting, left where librdkafka keeps it: a
    /// popped one, else one of up to `room` popped now in one call.
    pub(crate) fn next_waiting(&mut self, room: usize) -> Option<KafkaResult<Taken>> {
        if self.popped.is_empty() {
            self.pop_waiting(room);
        }
        let popped = self.popped.pop_front()?;
        Some(
            popped
                .checked()
                .map(|popped| Taken::InPlace(InPlace::new(popped, self.consumer.clone()))),
        )
    }

    /// Pops messages already waiting, without waiting, until `room` are popped.
    fn pop_waiting(&mut self, room: usize) {
        let room = room.saturating_sub(self.popped.len());
        if room == 0 {
            return;
        }
        let slots = &mut self.slots.0;
        slots.clear();
        slots.reserve(room);
        // SAFETY: `native` is a live queue handle; librdkafka writes at most `room` message
        // pointers into `slots`, which has room for them, and returns how many it wrote (or -1
        // and writes none). Each message written is ours to destroy.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.native.0.as_ptr(), 0, slots.as_mut_ptr(), room)
        };
        let n = usize::try_from(n).unwrap_or(0).min(room);
        // SAFETY: librdkafka initialised the first `n` slots.
        unsafe { slots.set_len(n) };
        self.popped
            .extend(slots.drain(..).filter_map(NonNull::new).map(PoppedMessage));
    }

    /// The next popped message, copied for the guest.
    fn take_popped(&mut self, tp: &TopicPartition) -> Option<KafkaResult<Message>> {
        self.popped.pop_front().map(|popped| popped.copied(tp))
    }

    /// Drops the popped messages: the partition was rewound, and the queue delivers them
    /// again from the rewind point.
    pub(crate) fn forget_popped(&mut self) {
        self.popped.clear();
    }
}

/// Our handle on a librdkafka queue.
struct NativeQueue(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka's queue operations are thread-safe.
unsafe impl Send for NativeQueue {}

impl Drop for NativeQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_partition` and is destroyed once.
        unsafe { rd::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// A message popped from librdkafka, owned until dropped.
struct PoppedMessage(NonNull<rd::rd_kafka_message_t>);

// SAFETY: the message is owned by this value alone; librdkafka lets any thread destroy it.
unsafe impl Send for PoppedMessage {}

impl PoppedMessage {
    fn raw(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: a live message owned by `self`.
        unsafe { self.0.as_ref() }
    }

    /// The message, unless librdkafka popped an error in its place.
    fn checked(self) -> KafkaResult<Self> {
        match self.raw().err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(self),
            err => Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(err))),
        }
    }

    fn copied(self, tp: &TopicPartition) -> KafkaResult<Message> {
        let popped = self.checked()?;
        // SAFETY: a live message with no error.
        Ok(unsafe { copy_message(popped.raw(), tp) })
    }
}

impl Drop for PoppedMessage {
    fn drop(&mut self) {
        // SAFETY: popped by `rd_kafka_consume_batch_queue`, destroyed once.
        unsafe { rd::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

/// A message a batch took from the queue, on its first delivery.
pub(crate) enum Taken {
    /// A [`Message`] of its own: the worker waited for it, or copied it out.
    Copied(Message),
    /// Still in librdkafka's fetch buffer.
    InPlace(InPlace),
}

impl Taken {
    /// The message as a [`Message`] of its own: copied out of librdkafka if it is still there.
    pub(crate) fn into_message(self, tp: &TopicPartition) -> Message {
        match self {
            Taken::Copied(message) => message,
            Taken::InPlace(in_place) => in_place.copy(tp),
        }
    }

    /// Copies the message out of librdkafka now if it is still there, and returns it.
    pub(crate) fn copy_out(&mut self, tp: &TopicPartition) -> &Message {
        if let Taken::InPlace(in_place) = self {
            *self = Taken::Copied(in_place.copy(tp));
        }
        match self {
            Taken::Copied(message) => message,
            Taken::InPlace(_) => unreachable!("copied out above"),
        }
    }
}

impl MessageFields for Taken {
    fn offset(&self) -> i64 {
        match self {
            Taken::Copied(message) => message.offset,
            Taken::InPlace(in_place) => in_place.raw().offset,
        }
    }

    fn timestamp(&self) -> Option<i64> {
        match self {
            Taken::Copied(message) => message.timestamp,
            // SAFETY: a live message without error.
            Taken::InPlace(in_place) => unsafe { timestamp_of(in_place.raw()) },
        }
    }

    fn attempt(&self) -> u32 {
        match self {
            Taken::Copied(message) => message.attempt,
            Taken::InPlace(_) => 1,
        }
    }

    fn key(&self) -> Option<&[u8]> {
        match self {
            Taken::Copied(message) => message.key.as_deref(),
            Taken::InPlace(in_place) => {
                let raw = in_place.raw();
                // SAFETY: the key lives as long as the message, which `self` owns.
                unsafe { slice(raw.key, raw.key_len) }
            }
        }
    }

    fn payload(&self) -> Option<&[u8]> {
        match self {
            Taken::Copied(message) => message.payload.as_deref(),
            Taken::InPlace(in_place) => {
                let raw = in_place.raw();
                // SAFETY: the payload lives as long as the message, which `self` owns.
                unsafe { slice(raw.payload, raw.len) }
            }
        }
    }

    fn for_each_header<'a>(&'a self, each: &mut dyn FnMut(&'a [u8], Option<&'a [u8]>)) {
        match self {
            Taken::Copied(message) => message.for_each_header(each),
            Taken::InPlace(InPlace {
                headers: Some(headers),
                ..
            }) => {
                // SAFETY: the headers live as long as the message, which `self` owns.
                unsafe { for_each_header(headers.as_ptr(), each) }
            }
            Taken::InPlace(_) => {}
        }
    }
}

/// A message without error, read where librdkafka keeps it.
pub(crate) struct InPlace {
    /// Its headers, looked up once: librdkafka parses a record's header section again on every
    /// lookup when the record has no headers. `None`: it has none. They live as long as the
    /// message.
    headers: Option<NonNull<rd::rd_kafka_headers_t>>,
    message: PoppedMessage,
    /// Destroyed after the message (fields drop in order).
    _consumer: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the headers belong to the message, which this value alone owns (see `PoppedMessage`).
unsafe impl Send for InPlace {}

impl InPlace {
    fn new(message: PoppedMessage, consumer: Arc<dyn Any + Send + Sync>) -> Self {
        // SAFETY: a live message without error.
        let headers = unsafe { headers_of(message.raw()) };
        InPlace {
            headers: headers.and_then(|h| NonNull::new(h.cast_mut())),
            message,
            _consumer: consumer,
        }
    }

    fn raw(&self) -> &rd::rd_kafka_message_t {
        self.message.raw()
    }

    fn copy(&self, tp: &TopicPartition) -> Message {
        let headers = self.headers.map(|h| h.as_ptr().cast_const());
        // SAFETY: a live message without error, and its headers.
        unsafe { copy_with_headers(self.raw(), headers, tp) }
    }
}

/// Copies a consumed message into the guest's `message` record (on its first delivery).
///
/// # Safety
/// `raw` is a live message without error, consumed from `tp`.
unsafe fn copy_message(raw: &rd::rd_kafka_message_t, tp: &TopicPartition) -> Message {
    copy_with_headers(raw, headers_of(raw), tp)
}

/// [`copy_message`] of a message whose headers (`None`: it has none) were looked up already.
///
/// # Safety
/// As [`copy_message`]; `headers` are `raw`'s.
unsafe fn copy_with_headers(
    raw: &rd::rd_kafka_message_t,
    headers_of_raw: Option<*const rd::rd_kafka_headers_t>,
    tp: &TopicPartition,
) -> Message {
    let mut headers = Vec::new();
    if let Some(h) = headers_of_raw {
        headers.reserve_exact(rd::rd_kafka_header_cnt(h));
        for_each_header(h, |key, value| {
            headers.push(Header {
                // Kafka does not promise UTF-8 header names; the WIT's are strings.
                key: String::from_utf8_lossy(key).into_owned(),
                value: value.map(<[u8]>::to_vec),
            })
        });
    }
    Message {
        topic: tp.topic.to_string(),
        partition: raw.partition,
        offset: raw.offset,
        timestamp: timestamp_of(raw),
        key: slice(raw.key, raw.key_len).map(<[u8]>::to_vec),
        payload: slice(raw.payload, raw.len).map(<[u8]>::to_vec),
        headers,
        attempt: 1,
    }
}

/// The message's timestamp, if it has one.
///
/// # Safety
/// `raw` is a live consumed message.
unsafe fn timestamp_of(raw: &rd::rd_kafka_message_t) -> Option<i64> {
    let mut ts_type = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    let timestamp = rd::rd_kafka_message_timestamp(raw, &mut ts_type);
    (ts_type != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
        .then_some(timestamp)
}

/// The message's headers, `None` when it has none.
///
/// # Safety
/// `raw` is a live consumed message; the headers live as long as it does.
unsafe fn headers_of(raw: &rd::rd_kafka_message_t) -> Option<*const rd::rd_kafka_headers_t> {
    let mut headers = std::ptr::null_mut();
    let err = rd::rd_kafka_message_headers(raw, &mut headers);
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && !headers.is_null())
        .then_some(headers.cast_const())
}

/// Calls `each` with every header's name and value (`None` for a header without one).
///
/// # Safety
/// `headers` is live (owned by a live message) for all of `'a`.
unsafe fn for_each_header<'a>(
    headers: *const rd::rd_kafka_headers_t,
    mut each: impl FnMut(&'a [u8], Option<&'a [u8]>),
) {
    for index in 0..rd::rd_kafka_header_cnt(headers) {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
        if rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || name.is_null()
        {
            continue;
        }
        each(CStr::from_ptr(name).to_bytes(), slice(value, size));
    }
}

/// `len` bytes at `ptr`, `None` for a null pointer.
///
/// # Safety
/// A non-null `ptr` points to `len` bytes that outlive the returned slice's use.
unsafe fn slice<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr.cast::<u8>(), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedBroker;
    use crate::kafka::Record;
    use rdkafka::consumer::{DefaultConsumerContext, StreamConsumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};

    /// Generous: only a broken queue waits this long.
    const WAIT: Duration = Duration::from_secs(60);

    fn record(i: i64) -> Record {
        Record {
            partition: Some(0),
            key: (i % 2 == 1).then(|| format!("k{i}").into_bytes()),
            payload: format!("m{i}").into_bytes(),
            headers: match i % 3 {
                0 => vec![],
                _ => vec![
                    ("a".into(), vec![]),
                    ("a".into(), format!("{i}").into_bytes()),
                ],
            },
        }
    }

    fn assert_copied(message: &Message, i: i64, topic: &str) {
        let expected = record(i);
        assert_eq!(message.offset, i);
        assert_eq!((message.topic.as_str(), message.partition), (topic, 0));
        assert_eq!(message.key, expected.key, "offset {i}");
        assert_eq!(message.payload, Some(expected.payload), "offset {i}");
        let headers: Vec<(String, Option<Vec<u8>>)> = message
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        let expected: Vec<(String, Option<Vec<u8>>)> = expected
            .headers
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        assert_eq!(headers, expected, "offset {i}");
        assert!(message.timestamp.is_some_and(|t| t > 0));
        assert_eq!(message.attempt, 1);
    }

    /// A consumer assigned `topic`'s partition 0 from the start, its queue split off, and the
    /// task that serves the consumer's own queue (which a split queue needs to be fed).
    async fn queue_of(
        broker: &EmbeddedBroker,
        topic: &str,
    ) -> (PartitionQueue<DefaultConsumerContext>, Arc<StreamConsumer>) {
        let consumer: Arc<StreamConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap_servers())
                .set("group.id", "partition-queue-test")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap(),
        );
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let tp = TopicPartition::new(topic, 0);
        let queue = PartitionQueue::split(&consumer, &tp).expect("assigned");
        let main = consumer.clone();
        tokio::spawn(async move {
            loop {
                let _ = main.recv().await;
            }
        });
        (queue, consumer)
    }

    /// Takes `n` messages: the first by waiting, the rest as a batch takes what is waiting.
    async fn take(
        queue: &mut PartitionQueue<DefaultConsumerContext>,
        tp: &TopicPartition,
        n: usize,
    ) -> Vec<Message> {
        let deadline = Instant::now() + WAIT;
        let mut taken = vec![queue.recv(tp).await.unwrap()];
        while taken.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} came",
                taken.len()
            );
            match queue.next_waiting(n - taken.len()) {
                Some(message) => taken.push(message.unwrap().into_message(tp)),
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        taken
    }

    /// A broker whose `topic` holds `n` records, made by [`record`].
    async fn broker_with(topic: &str, n: i64) -> EmbeddedBroker {
        let broker = EmbeddedBroker::start().unwrap();
        broker.create_topic(topic, 1).unwrap();
        let records: Vec<Record> = (0..n).map(record).collect();
        crate::kafka::produce(broker.bootstrap_servers(), topic, &records)
            .await
            .unwrap();
        broker
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_messages_are_popped_at_once_in_order_and_copied_whole() {
        let broker = broker_with("popped", 50).await;
        let (mut queue, _consumer) = queue_of(&broker, "popped").await;
        let tp = TopicPartition::new("popped", 0);
        let taken = take(&mut queue, &tp, 50).await;
        for (i, message) in taken.iter().enumerate() {
            assert_copied(message, i as i64, "popped");
        }
    }

    /// A message a batch takes stays in librdkafka's fetch buffer, and reads as its copy does:
    /// the same fields, the same packed bytes (absent keys, headers, empty values), the same
    /// size against the batch's bound, the same header lookup.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_taken_in_place_reads_and_packs_as_its_copy() {
        let broker = broker_with("in-place", 30).await;
        let (mut queue, _consumer) = queue_of(&broker, "in-place").await;
        let tp = TopicPartition::new("in-place", 0);
        let mut taken = vec![Taken::Copied(queue.recv(&tp).await.unwrap())];
        let deadline = Instant::now() + WAIT;
        while taken.len() < 30 {
            assert!(Instant::now() < deadline, "only {} of 30 came", taken.len());
            match queue.next_waiting(30 - taken.len()) {
                Some(message) => taken.push(message.unwrap()),
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        assert!(taken[1..].iter().all(|t| matches!(t, Taken::InPlace(_))));
        let copies: Vec<Message> = taken
            .iter()
            .map(|t| match t {
                Taken::Copied(message) => message.clone(),
                Taken::InPlace(in_place) => in_place.copy(&tp),
            })
            .collect();
        for (i, (in_place, copy)) in taken.iter().zip(&copies).enumerate() {
            assert_copied(copy, i as i64, "in-place");
            assert_eq!(in_place.offset(), copy.offset);
            assert_eq!(in_place.timestamp(), copy.timestamp);
            assert_eq!(in_place.attempt(), 1);
            assert_eq!(in_place.key(), copy.key.as_deref());
            assert_eq!(in_place.payload(), copy.payload.as_deref());
            let expected_bytes = copy.key.as_ref().map_or(0, Vec::len)
                + copy.payload.as_ref().map_or(0, Vec::len)
                + copy
                    .headers
                    .iter()
                    .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                    .sum::<usize>();
            assert_eq!(in_place.bytes(), expected_bytes, "offset {i}");
            // The first header named `a` has an empty value; records 0, 3, 6... have none.
            let expected_header = (i % 3 != 0).then_some(&b""[..]);
            assert_eq!(in_place.header("A"), expected_header, "offset {i}");
        }
        use crate::plugin::PackedBatch;
        assert_eq!(
            PackedBatch::of("in-place", 0, &taken).records(),
            PackedBatch::of("in-place", 0, &copies).records()
        );
        let given_back: Vec<Message> = taken.into_iter().map(|t| t.into_message(&tp)).collect();
        assert_eq!(given_back, copies);
    }

    /// After a rewind (an aborted transaction seeks the partition back), the popped messages
    /// are dropped and the queue delivers again from the rewind point, not from where the pop
    /// stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rewound_queue_delivers_from_the_rewind_point() {
        let broker = broker_with("rewound", 20).await;
        let (mut queue, consumer) = queue_of(&broker, "rewound").await;
        let tp = TopicPartition::new("rewound", 0);
        let taken = take(&mut queue, &tp, 20).await;
        assert_eq!(taken.len(), 20);
        // After a rewind to 5: take 5 and 6, and rewind to 3 with 7 and more still popped.
        consumer
            .seek("rewound", 0, Offset::Offset(5), Duration::from_secs(10))
            .unwrap();
        assert_eq!(queue.recv(&tp).await.unwrap().offset, 5);
        let deadline = Instant::now() + WAIT;
        while queue.popped.len() < 2 {
            assert!(Instant::now() < deadline, "nothing came after the rewind");
            tokio::time::sleep(Duration::from_millis(5)).await;
            queue.pop_waiting(10);
        }
        assert_eq!(queue.take_popped(&tp).unwrap().unwrap().offset, 6);
        consumer
            .seek("rewound", 0, Offset::Offset(3), Duration::from_secs(10))
            .unwrap();
        assert!(!queue.popped.is_empty());
        queue.forget_popped();
        let next = queue.recv(&tp).await.unwrap();
        assert_copied(&next, 3, "rewound");
    }
}
