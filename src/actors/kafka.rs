//! Kafka: readings in through a consumer group, consensus updates out.
//!
//! - [`KafkaIngest`] consumes `kafka.readings_topic` (JSON readings per DESIGN §3, key =
//!   location id) in batches. Good readings go to their location actors and the batch
//!   waits until every actor has applied them (and so handed them to the persister);
//!   only then are the offsets stored for the next commit: at-least-once, with
//!   redelivered duplicates dropped by the actors' (source, observed_at) dedup. A bad
//!   message goes to `kafka.dlq_topic` with its original payload and the headers
//!   `error` (a reason a user can act on), `source-topic`, `source-partition` and
//!   `source-offset`; the consumer goes on.
//! - The producers (updates out, readings from the ingest path) are in
//!   [`crate::actors::producers`].
//!
//! Several instances in one consumer group split the locations: a location is owned by
//! the instance that owns its partition (readings are keyed by location id, and every
//! producer here uses the Java client's murmur2 partitioner, so kafka-python, the Java
//! client and isobar put a location on the same partition). When a partition is revoked
//! the consumer's thread waits while the stored offsets are committed and every location
//! seen on it is handed over: its actor writes its state and stops, and the persister
//! gets those snapshots into Redis. Before the new owner applies the first reading of a
//! location it took over, an actor there that merely followed it restores from Redis
//! again. Shutdown unsubscribes first ([`Leave`]), so the hand-over runs while
//! everything still does.
//!
//! A broker that is down never stops the service: librdkafka reconnects by itself, and
//! /ready says `kafka` is down meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use futures_util::FutureExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset};
use serde_json::Value;
use tracing::{error, info, warn};

use crate::actors::directory::{Directory, HandOverLocations};
use crate::actors::ingest::{IngestError, apply};
use crate::actors::persister::{Persister, SyncSnapshots};
use crate::actors::producers::{base_config, count_from_zero};
use crate::config::KafkaSettings;
use crate::domain::reading::{CheckedAt, REJECTION_REASONS, rejection_reason};
use crate::domain::{LocationId, Reading};
use crate::telemetry::Metrics;

/// Messages handled per batch at most.
const BATCH_MAX: usize = 2000;
const DLQ_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
const LAG_INTERVAL: Duration = Duration::from_secs(5);
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What this instance owns: the assigned partitions of the readings topic and, for each
/// location seen on one since, that partition.
#[derive(Default)]
struct Ownership {
    assigned: HashSet<i32>,
    locations: HashMap<LocationId, i32>,
}

/// The consumer's context: keeps [`Ownership`] and hands locations over on revocation.
pub struct IngestContext {
    topic: String,
    directory: Addr<Directory>,
    persister: Addr<Persister>,
    metrics: Arc<Metrics>,
    ownership: Mutex<Ownership>,
    /// Why the dead-letter topic refuses messages, while it does: consumption waits (no
    /// offset passes the dead message) and /ready names `kafka-dlq`.
    dlq_blocked: Mutex<Option<String>>,
}

impl IngestContext {
    fn ownership(&self) -> std::sync::MutexGuard<'_, Ownership> {
        self.ownership.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn partitions(&self, rebalance: &Rebalance<'_>) -> Vec<i32> {
        match rebalance {
            Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => {
                tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect()
            }
            Rebalance::Error(_) => Vec::new(),
        }
    }
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    /// Runs on the consuming thread (KafkaIngest's own arbiter) between two batches, so
    /// everything applied so far has its offset stored. The partitions move only when
    /// this returns: it waits for the commit and the hand-over.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(_) = rebalance else { return };
        let revoked = self.partitions(rebalance);
        // Some brokers refuse commits once the rebalance began (librdkafka's mock cluster
        // does); the readings since the last auto-commit are then redelivered to the new
        // owner, which drops them as duplicates.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => warn!(error = %e, "cannot commit offsets before a rebalance; some readings will be redelivered"),
        }
        let ids: Vec<LocationId> = {
            let mut own = self.ownership();
            own.assigned.retain(|p| !revoked.contains(p));
            self.metrics.kafka_assigned_partitions.set(own.assigned.len() as i64);
            let mut ids = Vec::new();
            own.locations.retain(|id, p| {
                let moved = revoked.contains(p);
                if moved {
                    ids.push(id.clone());
                }
                !moved
            });
            ids
        };
        if ids.is_empty() {
            return;
        }
        let started = Instant::now();
        let seen = ids.len();
        // Blocking is safe here: the Directory, the location actors and the persister run
        // on other threads. Without them (shutting down) the send fails at once. Each actor
        // hands its snapshot to the persister before it answers, so the sync that follows
        // writes them all to the shared store.
        let hand_over = self.directory.send(HandOverLocations { ids: ids.clone() });
        let handed = futures_executor::block_on(hand_over).unwrap_or(0);
        let sync = self.persister.send(SyncSnapshots { forget: ids });
        if let Ok(Err(e)) = futures_executor::block_on(sync) {
            warn!(error = %e, "handing locations over before their state reached the store");
        }
        self.metrics.kafka_handed_over.inc_by(handed as u64);
        info!(
            partitions = ?revoked,
            locations = seen,
            running = handed,
            ms = started.elapsed().as_millis() as u64,
            "partitions revoked; locations handed over"
        );
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(_) = rebalance else { return };
        let assigned = self.partitions(rebalance);
        let mut own = self.ownership();
        own.assigned.extend(assigned.iter().copied());
        self.metrics.kafka_assigned_partitions.set(own.assigned.len() as i64);
        info!(partitions = ?assigned, "partitions assigned");
    }
}

type IngestConsumer = StreamConsumer<IngestContext>;

pub struct KafkaIngest {
    consumer: Arc<IngestConsumer>,
    dlq: FutureProducer,
    directory: Addr<Directory>,
    metrics: Arc<Metrics>,
    settings: Arc<KafkaSettings>,
    /// How far ahead of the server's clock a reading may be.
    max_clock_skew_secs: u64,
}

/// Sent at shutdown: unsubscribe, so this instance's partitions are revoked (and their
/// locations handed over) while everything still runs, before the group gives them to
/// the other instances. Answers once nothing is assigned, or after a few seconds.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// Whether the brokers answer, and why the dead-letter topic refuses messages if it
/// does; for /ready.
#[derive(Message)]
#[rtype(result = "KafkaHealth")]
pub struct CheckKafka;

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaHealth {
    pub brokers: Result<(), String>,
    pub dlq_blocked: Option<String>,
}

impl KafkaIngest {
    pub fn new(
        settings: &KafkaSettings,
        max_clock_skew_secs: u64,
        directory: Addr<Directory>,
        persister: Addr<Persister>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let mut config = ClientConfig::new();
        // Defaults that kafka.properties may override: a crashed or departing instance's
        // partitions move on within seconds rather than the stock 45 s (and a coordinator
        // that waits for every member to rejoin a rebalance waits at most
        // max.poll.interval.ms for a dead one, not the stock 5 min).
        // Offsets are committed every second (not 5 s): less to redeliver after a crash.
        // Cooperative rebalancing: when an instance joins, leaves or dies, only the
        // partitions that move stop; the others' locations go on without a pause (the
        // stock eager protocol revokes every partition of every member first). A group
        // still running an older isobar (eager) must be given `"range,roundrobin"` in
        // kafka.properties until every member runs this one: the two do not mix.
        config
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000")
            .set("max.poll.interval.ms", "30000")
            .set("auto.commit.interval.ms", "1000")
            .set("partition.assignment.strategy", "cooperative-sticky");
        if !settings.instance_id.is_empty() {
            config.set("group.instance.id", &settings.instance_id);
        }
        for (key, value) in &settings.properties {
            config.set(key, value);
        }
        let context = IngestContext {
            topic: settings.readings_topic.clone(),
            directory: directory.clone(),
            persister,
            metrics: metrics.clone(),
            ownership: Mutex::default(),
            dlq_blocked: Mutex::default(),
        };
        let consumer: IngestConsumer = config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(context)?;
        consumer.subscribe(&[settings.readings_topic.as_str()])?;
        let dlq: FutureProducer = base_config(settings)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "5000")
            .create()?;
        // Every reason at 0 from the start, so the first dead letter is an increase an
        // alert sees rather than a series appearing.
        for reason in ["too_large", "not_json", "unknown_location"].into_iter().chain(REJECTION_REASONS) {
            metrics.kafka_dlq.with_label_values(&[reason]);
        }
        count_from_zero(&metrics, "dlq");
        // The ingest path's: a reading the broker has not acknowledged within
        // `ack_timeout_ms` fails (librdkafka gives it up too), so the POST answers 503.
        Ok(Self {
            consumer: Arc::new(consumer),
            dlq,
            directory,
            metrics,
            settings: Arc::new(settings.clone()),
            max_clock_skew_secs,
        })
    }
}

/// Why a message is dead: the `error` header and a bounded metric label.
pub(crate) struct Dead {
    reason: String,
    label: &'static str,
}

/// A message's payload as a reading, or why it is dead.
pub(crate) fn decode_payload(payload: &[u8], max_bytes: usize, max_clock_skew_secs: u64) -> Result<Reading, Dead> {
    if payload.len() > max_bytes {
        return Err(Dead {
            reason: format!("message is {} bytes; at most {max_bytes} are accepted", payload.len()),
            label: "too_large",
        });
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Dead { reason: format!("not JSON: {e}"), label: "not_json" })?;
    Reading::from_json(&value, CheckedAt::new(Utc::now(), max_clock_skew_secs)).map_err(|errors| Dead {
        reason: errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        label: rejection_reason(&errors),
    })
}

/// Attempts at the dead-letter topic before the consumer pauses and says so.
const DLQ_ATTEMPTS: u32 = 3;

/// Writes `message` to the dead-letter topic with `reason`; never gives up (nothing is
/// skipped). After `DLQ_ATTEMPTS` failures the consumer is paused (it waits here) and
/// says so on /ready and in `isobar_kafka_dlq_blocked`, until the topic takes it.
async fn dead_letter(
    dlq: &FutureProducer,
    settings: &KafkaSettings,
    message: &BorrowedMessage<'_>,
    reason: &str,
    context: &IngestContext,
) {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut failures = 0;
    loop {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "error", value: Some(reason) })
            .insert(Header { key: "source-topic", value: Some(message.topic()) })
            .insert(Header { key: "source-partition", value: Some(&partition) })
            .insert(Header { key: "source-offset", value: Some(&offset) });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&settings.dlq_topic).headers(headers).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match dlq.send(record, DLQ_TIMEOUT).await {
            Ok(_) => {
                if failures >= DLQ_ATTEMPTS {
                    info!(topic = settings.dlq_topic, "the dead-letter topic takes messages again; consuming");
                    *context.dlq_blocked.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    context.metrics.kafka_dlq_blocked.set(0);
                }
                return;
            }
            // Never drop a message silently: the consumer waits until the DLQ takes it.
            Err((e, _)) => {
                failures += 1;
                if failures == DLQ_ATTEMPTS {
                    error!(topic = settings.dlq_topic, error = %e, "the dead-letter topic refuses messages; consumption pauses until it takes this one");
                    let why = format!("{} refuses messages: {e}", settings.dlq_topic);
                    *context.dlq_blocked.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                    context.metrics.kafka_dlq_blocked.set(1);
                } else if failures < DLQ_ATTEMPTS {
                    warn!(topic = settings.dlq_topic, error = %e, "cannot write to the dead-letter topic; retrying");
                }
                let pause = if failures < DLQ_ATTEMPTS { 1 } else { 5 };
                tokio::time::sleep(Duration::from_secs(pause)).await;
            }
        }
    }
}

async fn consume(
    consumer: Arc<IngestConsumer>,
    dlq: FutureProducer,
    directory: Addr<Directory>,
    metrics: Arc<Metrics>,
    settings: Arc<KafkaSettings>,
    max_clock_skew_secs: u64,
) {
    loop {
        let first = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "Kafka consumer error; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m),
                _ => break,
            }
        }
        metrics.kafka_consumed.inc_by(batch.len() as u64);
        let mut good = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        let mut adopt = Vec::new();
        {
            // No await while locked: the rebalance callback (run inside recv) locks too.
            let mut own = consumer.context().ownership();
            // A partition revoked while this batch was collected is another instance's
            // now: its messages are left to the new owner (nothing was stored for them).
            batch.retain(|m| own.assigned.contains(&m.partition()));
            for (i, message) in batch.iter().enumerate() {
                let payload = message.payload().unwrap_or_default();
                match decode_payload(payload, settings.max_message_bytes, max_clock_skew_secs) {
                    Ok(reading) => {
                        if !own.locations.contains_key(&reading.location_id) {
                            own.locations.insert(reading.location_id.clone(), message.partition());
                            adopt.push(reading.location_id.clone());
                        }
                        good.push((i, reading));
                    }
                    Err(d) => dead.push((i, d)),
                }
            }
        }
        let mut pause = Duration::from_millis(500);
        while !good.is_empty() {
            match apply(&directory, good.clone(), adopt.clone()).await {
                Ok(rejected) => {
                    dead.extend(rejected.into_iter().map(|(i, e)| {
                        (i, Dead { reason: format!("{}: {}", e.field, e.message), label: "unknown_location" })
                    }));
                    break;
                }
                // Applied but not stored durably (InfluxDB's spool refuses writes): no
                // offset moves past them. They are applied again (dropped as duplicates)
                // until their storage is confirmed.
                // Or not applied yet: a location's station could not be looked up in Redis.
                Err(e @ (IngestError::NotStored(_) | IngestError::Unchecked(_))) => {
                    warn!(error = %e, "readings from Kafka not safe yet; holding the offsets and retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                // The directory is gone: the process is shutting down. Nothing is stored,
                // so these messages are consumed again after the restart.
                Err(_) => return,
            }
        }
        for (i, d) in &dead {
            dead_letter(&dlq, &settings, &batch[*i], &d.reason, consumer.context()).await;
            metrics.kafka_dlq.with_label_values(&[d.label]).inc();
            metrics.kafka_produced.with_label_values(&["dlq"]).inc();
        }
        // Fault injection (`kafka-commit`): a panic here is a crash after applying and
        // before the offsets move, the worst moment for at-least-once.
        fail::fail_point!("kafka-commit");
        for message in &batch {
            if let Err(e) = consumer.store_offset_from_message(message) {
                warn!(error = %e, "cannot store a Kafka offset; the message may be redelivered");
            }
        }
    }
}

/// Sum over the assigned partitions of high watermark − position.
fn consumer_lag(consumer: &IngestConsumer) -> Option<i64> {
    let positions = consumer.position().ok()?;
    let mut lag = 0;
    for element in positions.elements() {
        let (_, high) = consumer.fetch_watermarks(element.topic(), element.partition(), METADATA_TIMEOUT).ok()?;
        if let Offset::Offset(position) = element.offset() {
            lag += (high - position).max(0);
        } else {
            let (low, _) = consumer.fetch_watermarks(element.topic(), element.partition(), METADATA_TIMEOUT).ok()?;
            lag += (high - low).max(0);
        }
    }
    Some(lag)
}

impl Actor for KafkaIngest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(
            brokers = self.settings.brokers,
            topic = self.settings.readings_topic,
            group = self.settings.group_id,
            "consuming readings from Kafka"
        );
        let task = consume(
            self.consumer.clone(),
            self.dlq.clone(),
            self.directory.clone(),
            self.metrics.clone(),
            self.settings.clone(),
            self.max_clock_skew_secs,
        );
        ctx.spawn(task.into_actor(self));
        ctx.run_interval(LAG_INTERVAL, |act, ctx| {
            let (consumer, metrics) = (act.consumer.clone(), act.metrics.clone());
            let update = async move {
                if let Ok(Some(lag)) = actix_rt::task::spawn_blocking(move || consumer_lag(&consumer)).await {
                    metrics.kafka_consumer_lag.set(lag);
                }
            };
            ctx.spawn(update.into_actor(act));
        });
    }
}

impl Handler<Leave> for KafkaIngest {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        // The revocation is served by the consuming task (its next poll), which hands the
        // locations over before the partitions go.
        self.consumer.unsubscribe();
        let consumer = self.consumer.clone();
        Box::pin(async move {
            let deadline = Instant::now() + LEAVE_TIMEOUT;
            while Instant::now() < deadline && !consumer.context().ownership().assigned.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            info!("left the Kafka consumer group");
        })
    }
}

impl Handler<CheckKafka> for KafkaIngest {
    type Result = ResponseFuture<KafkaHealth>;

    fn handle(&mut self, _: CheckKafka, _: &mut Context<Self>) -> Self::Result {
        let consumer = self.consumer.clone();
        let dlq_blocked = consumer.context().dlq_blocked.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Box::pin(async move {
            let brokers = actix_rt::task::spawn_blocking(move || {
                consumer.fetch_metadata(None, METADATA_TIMEOUT).map(drop).map_err(|e| format!("kafka: {e}"))
            })
            .await
            .unwrap_or_else(|e| Err(format!("kafka: {e}")));
            KafkaHealth { brokers, dlq_blocked }
        })
    }
}
