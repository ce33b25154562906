//! `Persister`: the one actor that talks to storage backends, on a thread of its own.
//!
//! - Snapshots: location actors hand them over (`SaveSnapshot`: after each applied batch
//!   when Redis keeps them, periodically, and when stopping) and ask for them back when
//!   they start (`LoadSnapshot`: the newer by (epoch, seq) of the local copy — pending or
//!   in memory — and Redis's). Writes for one location coalesce until the next flush;
//!   Redis refuses one older than what it holds (see `store::redis`).
//! - History: applied readings and consensus changes (`StoreReadings`) and anomalies
//!   (`StoreAnomaly`) become InfluxDB points.
//! - Safety: `Durable` answers once everything handed to a backend before it is written
//!   or synced to its spool, which is what a 202 and a Kafka offset wait for.
//! - Live feed: updates are published to Redis (`Publish`) for other instances.
//!
//! Each backend has a [`DurableQueue`]: bounded in memory while it keeps up, spilled to
//! its write-ahead log under `persist.data_dir` while it is down, replayed in order when
//! it returns (and on the next start). The queue lives on a thread of its own
//! ([`QueueThread`]): its disk I/O never runs on this actor's (async) thread, and calls to
//! it run in the order they were made. Writes run beside the mailbox, with exponential
//! backoff after failures, so a store that is down never blocks a location actor or a
//! read; /ready names the backend that is down and why (its spool refusing writes too).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::config::{InfluxSettings, PersistSettings, RedisSettings};
use crate::core::Update;
use crate::domain::{Anomaly, Current, Location, LocationId, Reading};
use crate::store::codec::{anomaly_line, consensus_line, reading_line, snapshot_from_json, snapshot_to_json};
use crate::store::codec::{location_from_json, location_to_json};
use crate::store::influx::InfluxStore;
use crate::store::queue::{DurableQueue, QueueGone, QueueStats, QueueThread, SpoolOptions};
use crate::store::redis::{RedisStore, RedisWrite, updates_channel};
use crate::store::{MemoryStore, Snapshot, StoreError};
use crate::telemetry::Metrics;

/// Longest a shutdown waits for a backend before leaving the rest in the spool.
const SHUTDOWN_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a hand-over waits for Redis to take the snapshots.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest /ready waits for a backend's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A backend write: items in, `Ok(Some(reason))` when the backend refused some of them
/// for good (they are logged and counted, not retried).
type WriteFn = Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, Result<Option<String>, StoreError>> + Send + Sync>;
type PingFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), StoreError>> + Send + Sync>;

struct Backend {
    name: &'static str,
    /// The queue, on its own thread (its spool I/O never runs on this one).
    queue: QueueThread,
    /// The queue's state after the last call that answered.
    stats: QueueStats,
    /// How many items were handed to the queue (some may not have reached it yet).
    pushed: u64,
    write: WriteFn,
    ping: PingFn,
    in_flight: bool,
    failures: u32,
    next_attempt: Instant,
    /// Why the last write failed, until one succeeds.
    last_error: Option<String>,
    /// Why the spool refused the last append (full, or the disk failing), until one
    /// succeeds; the refused items wait in memory meanwhile.
    spool_error: Option<String>,
    /// Callers waiting until the items pushed before they asked are durable: how many
    /// pushed items that is, and where to answer.
    durable_waiters: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
}

pub struct Persister {
    /// Always written; answers loads without a round trip.
    memory: MemoryStore,
    /// Snapshots received since the last flush, latest per location, with their consensus.
    pending: HashMap<LocationId, (Arc<Snapshot>, Option<Current>)>,
    settings: PersistSettings,
    redis: Option<Arc<RedisStore>>,
    influx: Option<Arc<InfluxStore>>,
    backends: Vec<Backend>,
    metrics: Arc<Metrics>,
    /// Tags this instance's publications, so it can ignore its own on the feed.
    instance: Arc<str>,
    /// Hand-overs waiting for the Redis queue to drain, with the locations whose local
    /// copies go once Redis holds their snapshots (not before: they may be the only ones).
    synced: Vec<(oneshot::Sender<()>, Vec<LocationId>)>,
}

/// Sent by a `LocationActor` when its state changed (at most once per snapshot interval)
/// and when it stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot {
    pub snapshot: Arc<Snapshot>,
    pub current: Option<Current>,
}

/// Sent by a `LocationActor` as it starts, to restore its state: the snapshot, `None`
/// when no store holds one, `Err` when Redis could not be asked (the actor tries again).
#[derive(Message)]
#[rtype(result = "Result<Option<Arc<Snapshot>>, StoreError>")]
pub struct LoadSnapshot {
    pub location_id: LocationId,
}

/// Readings a location applied, or its new consensus. Sent by the `History` sink of
/// every location actor when InfluxDB is configured.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreReadings {
    pub readings: Arc<[Reading]>,
    pub consensus: Option<Arc<Update>>,
}

/// An anomaly that started or ended, for measurement `anomalies` (the end overwrites the
/// start's point). Sent by the `History` sink.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreAnomaly {
    pub location_id: LocationId,
    pub anomaly: Anomaly,
}

/// Anomalies of `id` that started in [from, to], oldest first, from InfluxDB; `None`
/// when it is not configured.
#[derive(Message)]
#[rtype(result = "Option<Result<Vec<Anomaly>, StoreError>>")]
pub struct QueryAnomalies {
    pub id: LocationId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Answers once everything handed to `backend` before it (by the same sender: readings
/// and consensus points for `influxdb`, snapshots for `redis`) is durable: written to
/// the backend or synced to its spool; `Err` when the spool refuses them. At once when
/// the backend is not configured. Sent after each batch a location applied (by its
/// `History` sink, and by the actor itself for its snapshot), so that the batch's sender
/// knows it is safe.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Durable {
    pub backend: &'static str,
}

/// An update to publish on the location's Redis channel. Sent by the `RedisRelay` sink.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub id: LocationId,
    pub text: ByteString,
}

/// A station first seen through readings, to remember across restarts. Sent by the
/// `Directory` when Redis is configured.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveStation {
    pub location: Location,
}

/// Every station Redis remembers. Sent by start-up before serving.
#[derive(Message)]
#[rtype(result = "Result<Vec<Location>, StoreError>")]
pub struct LoadStations;

/// One station from Redis, which another instance may have registered; `None` without
/// Redis or when unknown there, an error when Redis could not tell (down, or no answer
/// within 2 s). Sent by the `Directory` for an id it does not know.
#[derive(Message)]
#[rtype(result = "Result<Option<Location>, StoreError>")]
pub struct LoadStation {
    pub id: LocationId,
}

/// Sent by start-up on shutdown: writes everything pending now (what a backend does not
/// take goes to the spool) and answers how many snapshots were flushed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush;

/// Writes every pending snapshot to Redis now and answers once Redis holds them all (or
/// why not within a few seconds); forgets the local copies of `forget`, which another
/// instance owns from now on (without Redis they are the only copies and are kept).
/// Sent by `KafkaIngest` when handing locations over.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SyncSnapshots {
    pub forget: Vec<LocationId>,
}

/// The state of every backend, pinged now. Sent by /ready.
#[derive(Message)]
#[rtype(result = "Vec<BackendStatus>")]
pub struct CheckBackends;

/// The past readings of a location from InfluxDB; `None` when InfluxDB is off.
/// Sent by /history.
#[derive(Message)]
#[rtype(result = "Option<Result<Vec<Reading>, StoreError>>")]
pub struct QueryHistory {
    pub id: LocationId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackendStatus {
    pub name: &'static str,
    /// `up` or `down`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub queued: usize,
}

impl Persister {
    /// A persister with the backends that are configured. Fails only when the spool
    /// directory cannot be used.
    pub fn new(
        settings: &PersistSettings,
        redis: &RedisSettings,
        influx: &InfluxSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let spool = |name: &str| {
            let options = SpoolOptions { max_bytes: settings.spool_max_bytes, fsync: settings.spool_fsync };
            DurableQueue::open(Path::new(&settings.data_dir), name, settings.queue_max_items, options)
                .and_then(|queue| QueueThread::spawn(name, queue))
                .map_err(|e| StoreError::Spool(format!("{}: {e}", settings.data_dir)))
        };
        let mut backends = Vec::new();
        let redis_store = if redis.url.trim().is_empty() { None } else { Some(Arc::new(RedisStore::new(redis)?)) };
        if let Some(store) = &redis_store {
            let (w, p) = (store.clone(), store.clone());
            backends.push(Backend::new(
                "redis",
                spool("redis")?,
                Arc::new(move |items: Vec<String>| {
                    let store = w.clone();
                    Box::pin(async move {
                        let decoded: Vec<RedisWrite> = items.iter().filter_map(|i| RedisWrite::decode(i)).collect();
                        store.write(&decoded).await.map(|_| None)
                    })
                }),
                Arc::new(move || {
                    let store = p.clone();
                    Box::pin(async move { store.ping().await })
                }),
            ));
        }
        let influx_store = (!influx.url.trim().is_empty()).then(|| Arc::new(InfluxStore::new(influx)));
        if let Some(store) = &influx_store {
            let (w, p) = (store.clone(), store.clone());
            backends.push(Backend::new(
                "influxdb",
                spool("influxdb")?,
                Arc::new(move |items: Vec<String>| {
                    let store = w.clone();
                    Box::pin(async move { store.write(&items).await.map(|o| o.rejected) })
                }),
                Arc::new(move || {
                    let store = p.clone();
                    Box::pin(async move { store.ping().await })
                }),
            ));
        }
        for b in &backends {
            if b.stats.spooled > 0 {
                info!(backend = b.name, spooled = b.stats.spooled, "replaying writes spooled by an earlier run");
            }
        }
        Ok(Self {
            memory: MemoryStore::default(),
            pending: HashMap::new(),
            settings: settings.clone(),
            redis: redis_store,
            influx: influx_store,
            backends,
            metrics,
            instance: Arc::from(format!("{}-{}", std::process::id(), fastrand::u64(..))),
            synced: Vec::new(),
        })
    }

    /// The Redis store, for the live feed.
    pub fn redis(&self) -> Option<Arc<RedisStore>> {
        self.redis.clone()
    }

    pub fn instance(&self) -> Arc<str> {
        self.instance.clone()
    }

    fn backend(&mut self, name: &str) -> Option<&mut Backend> {
        self.backends.iter_mut().find(|b| b.name == name)
    }

    /// Hands `items` to a backend's queue (in order, after everything handed before).
    fn enqueue(&mut self, name: &'static str, items: Vec<String>, ctx: &mut Context<Self>) {
        let Some(index) = self.backends.iter().position(|b| b.name == name) else { return };
        if items.is_empty() {
            return;
        }
        let backend = &mut self.backends[index];
        backend.pushed += items.len() as u64;
        let push = backend.queue.call(move |queue| {
            let mut outcome = Ok(0);
            for item in items {
                match (queue.push(item), &mut outcome) {
                    (Ok(moved), Ok(total)) => *total += moved,
                    (Ok(_), Err(_)) => {}
                    (Err(e), _) => outcome = Err(e),
                }
            }
            outcome
        });
        ctx.spawn(push.into_actor(self).map(move |result, act, ctx| act.queued(index, result, ctx)));
    }

    /// A push reached the queue.
    fn queued(
        &mut self,
        index: usize,
        result: Result<(std::io::Result<usize>, QueueStats), QueueGone>,
        ctx: &mut Context<Self>,
    ) {
        let metrics = self.metrics.clone();
        let batch_max = self.settings.batch_max_items.max(1);
        let backend = &mut self.backends[index];
        let Some((moved, stats)) = backend.answered(result) else { return };
        backend.spooled(moved, &metrics);
        backend.apply(stats, &metrics);
        // A full batch, or someone waiting: write now rather than at the next interval.
        if !backend.in_flight && (backend.stats.len >= batch_max || !backend.durable_waiters.is_empty()) {
            self.flush(ctx);
        }
    }

    /// Moves coalesced snapshots to memory and the Redis queue; returns how many.
    fn drain_pending(&mut self, ctx: &mut Context<Self>) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        let pending: Vec<_> = self.pending.drain().collect();
        let n = pending.len();
        let mut for_memory = Vec::with_capacity(n);
        let mut for_redis = Vec::new();
        for (id, (snapshot, current)) in pending {
            if self.redis.is_some() {
                let json = snapshot_to_json(&snapshot, current.as_ref());
                for_redis.push(RedisWrite::Snapshot { id: id.clone(), json }.encode());
            }
            for_memory.push((id, snapshot));
        }
        self.enqueue("redis", for_redis, ctx);
        self.memory.write(for_memory);
        n
    }

    /// Starts the next write of every backend that is not writing, not backing off, and
    /// may have something to write.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.drain_pending(ctx);
        let now = Instant::now();
        let batch_max = self.settings.batch_max_items.max(1);
        for index in 0..self.backends.len() {
            let backend = &mut self.backends[index];
            if backend.in_flight || now < backend.next_attempt || backend.idle() {
                continue;
            }
            backend.in_flight = true;
            let next = backend.queue.call(move |queue| queue.next_batch(batch_max));
            ctx.spawn(next.into_actor(self).map(move |result, act, ctx| act.batch_ready(index, result, ctx)));
        }
    }

    /// The queue answered the next batch: write it.
    fn batch_ready(
        &mut self,
        index: usize,
        result: Result<(std::io::Result<Vec<String>>, QueueStats), QueueGone>,
        ctx: &mut Context<Self>,
    ) {
        let (retry_max, metrics) = (self.settings.retry_max_ms, self.metrics.clone());
        let backend = &mut self.backends[index];
        let Some((items, stats)) = backend.answered(result) else { return };
        backend.apply(stats, &metrics);
        match items {
            Ok(items) if !items.is_empty() => {
                let count = items.len();
                let write = (backend.write)(items);
                ctx.spawn(write.into_actor(self).map(move |result, act, ctx| act.written(index, count, result, ctx)));
            }
            Ok(_) => {
                backend.in_flight = false;
                self.answer_synced();
            }
            Err(e) => {
                backend.in_flight = false;
                error!(backend = backend.name, error = %e, "cannot read the spool");
                backend.next_attempt = Instant::now() + Duration::from_millis(retry_max);
            }
        }
    }

    fn written(
        &mut self,
        index: usize,
        count: usize,
        result: Result<Option<String>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let (retry_base, retry_max) = (self.settings.retry_base_ms, self.settings.retry_max_ms);
        let metrics = self.metrics.clone();
        let backend = &mut self.backends[index];
        let name = backend.name;
        match result {
            Ok(rejected) => {
                metrics.persist_written.with_label_values(&[name]).inc_by(count as u64);
                if let Some(reason) = rejected {
                    metrics.persist_errors.with_label_values(&[name]).inc();
                    error!(backend = name, reason, "backend refused points of a batch; the rest was written");
                }
                if backend.last_error.take().is_some() {
                    info!(backend = name, "backend is back");
                }
                backend.failures = 0;
                let ack = backend.queue.call(|queue| queue.ack());
                ctx.spawn(ack.into_actor(self).map(move |result, act, ctx| act.acked(index, result, ctx)));
            }
            Err(e) => {
                metrics.persist_errors.with_label_values(&[name]).inc();
                backend.failures += 1;
                let delay = retry_base.saturating_mul(1 << backend.failures.min(10)).min(retry_max);
                backend.next_attempt = Instant::now() + Duration::from_millis(delay);
                if backend.last_error.is_none() {
                    warn!(backend = name, error = %e, "backend write failed; queueing to disk and retrying");
                }
                backend.last_error = Some(e.to_string());
                let fail = backend.queue.call(|queue| queue.fail());
                ctx.spawn(fail.into_actor(self).map(move |result, act, _| {
                    let metrics = act.metrics.clone();
                    let backend = &mut act.backends[index];
                    backend.in_flight = false;
                    if let Some((moved, stats)) = backend.answered(result) {
                        backend.spooled(moved, &metrics);
                        backend.apply(stats, &metrics);
                    }
                }));
            }
        }
    }

    /// The queue recorded a written batch.
    fn acked(
        &mut self,
        index: usize,
        result: Result<(std::io::Result<()>, QueueStats), QueueGone>,
        ctx: &mut Context<Self>,
    ) {
        let metrics = self.metrics.clone();
        let backend = &mut self.backends[index];
        backend.in_flight = false;
        let name = backend.name;
        let Some((acked, stats)) = backend.answered(result) else { return };
        if let Err(e) = acked {
            error!(backend = name, error = %e, "cannot record spool progress");
        }
        backend.apply(stats, &metrics);
        // Everything the spool refused has been written since.
        if backend.stats.len == 0 && backend.spool_error.take().is_some() {
            info!(backend = name, "every write the spool refused is written");
        }
        if backend.idle() {
            self.answer_synced();
        } else {
            // More waiting (a backlog or a replayed spool): keep going.
            ctx.run_later(Duration::ZERO, |act, ctx| act.flush(ctx));
        }
    }

    /// Answers the hand-overs once Redis holds everything queued for it, and forgets the
    /// local copies they name.
    fn answer_synced(&mut self) {
        if self.synced.is_empty() || !self.backends.iter().any(|b| b.name == "redis" && b.idle() && !b.in_flight) {
            return;
        }
        for (waiter, forget) in std::mem::take(&mut self.synced) {
            for id in &forget {
                self.memory.remove(id);
            }
            let _ = waiter.send(());
        }
    }
}

impl Backend {
    fn new(name: &'static str, (queue, stats): (QueueThread, QueueStats), write: WriteFn, ping: PingFn) -> Self {
        Self {
            name,
            queue,
            stats,
            pushed: stats.pushed,
            write,
            ping,
            in_flight: false,
            failures: 0,
            next_attempt: Instant::now(),
            last_error: None,
            spool_error: None,
            durable_waiters: Vec::new(),
        }
    }

    /// Nothing queued, and nothing on its way to the queue.
    fn idle(&self) -> bool {
        self.stats.len == 0 && self.stats.pushed == self.pushed
    }

    /// A queue call's answer; `None` (logged) when the queue's thread is gone.
    fn answered<R>(&mut self, result: Result<(R, QueueStats), QueueGone>) -> Option<(R, QueueStats)> {
        if result.is_err() {
            self.in_flight = false;
            error!(backend = self.name, "the spool's thread is gone; writes to this backend stop");
        }
        result.ok()
    }

    /// Takes the queue's state after a call (unless a later call's is known already),
    /// and answers the waiters it makes durable.
    fn apply(&mut self, stats: QueueStats, metrics: &Metrics) {
        if stats.calls > self.stats.calls {
            self.stats = stats;
        }
        metrics.persist_queue_depth.with_label_values(&[self.name]).set(self.stats.len as i64);
        metrics.persist_spool_bytes.with_label_values(&[self.name]).set(self.stats.spool_bytes as i64);
        self.settle();
    }

    /// Answers the waiters whose items are durable now; with the spool refusing writes,
    /// the rest are told so at once (their items wait in memory, not on disk).
    fn settle(&mut self) {
        if self.durable_waiters.is_empty() {
            return;
        }
        let durable = self.stats.durable;
        for (target, waiter) in std::mem::take(&mut self.durable_waiters) {
            if target <= durable {
                let _ = waiter.send(Ok(()));
            } else if let Some(refused) = &self.spool_error {
                let _ = waiter.send(Err(format!("{}: the spool refuses writes: {refused}", self.name)));
            } else {
                self.durable_waiters.push((target, waiter));
            }
        }
    }

    /// Takes the outcome of moving items to the spool: counts what moved, and keeps (and
    /// logs once) why the spool refused them.
    fn spooled(&mut self, result: std::io::Result<usize>, metrics: &Metrics) {
        match result {
            Ok(moved) => {
                if moved > 0 {
                    metrics.persist_spilled.with_label_values(&[self.name]).inc_by(moved as u64);
                }
                if moved > 0 && self.spool_error.take().is_some() {
                    info!(backend = self.name, "the spool takes writes again");
                }
            }
            Err(e) => {
                metrics.persist_errors.with_label_values(&[self.name]).inc();
                if self.spool_error.is_none() {
                    error!(backend = self.name, error = %e, "the spool refuses writes; they wait in memory");
                }
                self.spool_error = Some(e.to_string());
            }
        }
    }
}

impl Actor for Persister {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for b in &self.backends {
            self.metrics.persist_queue_depth.with_label_values(&[b.name]).set(b.stats.len as i64);
            self.metrics.persist_spool_bytes.with_label_values(&[b.name]).set(b.stats.spool_bytes as i64);
            // The counters at 0 from the start: the first failure is an increase alerts see.
            for counter in [&self.metrics.persist_written, &self.metrics.persist_errors, &self.metrics.persist_spilled]
            {
                counter.with_label_values(&[b.name]);
            }
        }
        // Create the InfluxDB database up front, so the first writes do not find it missing.
        if let Some(influx) = self.influx.clone() {
            ctx.spawn(
                async move {
                    if let Err(e) = influx.ping().await {
                        warn!(error = %e, "InfluxDB not ready at start; writes queue until it is");
                    }
                }
                .into_actor(self),
            );
        }
        let interval = Duration::from_millis(self.settings.flush_interval_ms.max(1));
        ctx.run_interval(interval, |act, ctx| act.flush(ctx));
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        self.drain_pending(ctx);
        // The last moment: wait for the spool threads here (they never wait for this one).
        for b in &self.backends {
            match futures_executor::block_on(b.queue.call(|queue| queue.spill_all())) {
                Ok((Ok(_), _)) => {}
                Ok((Err(e), stats)) => {
                    error!(backend = b.name, error = %e, queued = stats.len, "writes the spool refused are lost at exit")
                }
                Err(QueueGone) => {
                    error!(backend = b.name, "the spool's thread is gone; queued writes are lost at exit")
                }
            }
        }
        Running::Stop
    }
}

impl Handler<SaveSnapshot> for Persister {
    type Result = ();

    fn handle(&mut self, msg: SaveSnapshot, _: &mut Context<Self>) {
        self.pending.insert(msg.snapshot.location_id.clone(), (msg.snapshot, msg.current));
    }
}

impl Handler<LoadSnapshot> for Persister {
    type Result = ResponseFuture<Result<Option<Arc<Snapshot>>, StoreError>>;

    fn handle(&mut self, msg: LoadSnapshot, _: &mut Context<Self>) -> Self::Result {
        let local = self
            .pending
            .get(&msg.location_id)
            .map(|(s, _)| s.clone())
            .or_else(|| self.memory.snapshot(&msg.location_id));
        let redis = self.redis.clone();
        Box::pin(async move {
            let Some(redis) = redis else { return Ok(local) };
            // A local copy may be older than what another instance wrote since (it owned
            // the location meanwhile): the newer by (epoch, seq) wins. Without Redis
            // answering, a local copy is the best there is.
            let stored = match redis.load_snapshot(&msg.location_id).await {
                Ok(text) => text,
                Err(_) if local.is_some() => return Ok(local),
                Err(e) => return Err(e),
            };
            let stored = stored.and_then(|text| match snapshot_from_json(&text, &msg.location_id) {
                Ok(snapshot) => Some(Arc::new(snapshot)),
                Err(e) => {
                    warn!(location = %msg.location_id, error = %e, "ignoring a foreign value under an isobar key");
                    None
                }
            });
            Ok(match (local, stored) {
                (Some(l), Some(s)) => Some(if (s.epoch, s.seq) > (l.epoch, l.seq) { s } else { l }),
                (l, s) => l.or(s),
            })
        })
    }
}

impl Handler<StoreReadings> for Persister {
    type Result = ();

    fn handle(&mut self, msg: StoreReadings, ctx: &mut Context<Self>) {
        if self.influx.is_none() {
            return;
        }
        let mut lines: Vec<String> = msg.readings.iter().filter_map(reading_line).collect();
        if let Some(update) = &msg.consensus {
            lines.push(consensus_line(&update.current, update.changed_at));
        }
        self.enqueue("influxdb", lines, ctx);
    }
}

impl Handler<Durable> for Persister {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Durable, ctx: &mut Context<Self>) -> Self::Result {
        // Snapshots wait in `pending` to coalesce: they count from their queue on.
        if msg.backend == "redis" {
            self.drain_pending(ctx);
        }
        let Some(backend) = self.backend(msg.backend) else { return Box::pin(std::future::ready(Ok(()))) };
        let target = backend.pushed;
        if backend.stats.durable >= target {
            return Box::pin(std::future::ready(Ok(())));
        }
        if let Some(refused) = &backend.spool_error {
            let refused = format!("{}: the spool refuses writes: {refused}", backend.name);
            return Box::pin(std::future::ready(Err(refused)));
        }
        let (tx, rx) = oneshot::channel();
        backend.durable_waiters.push((target, tx));
        // Someone waits: write now rather than at the next interval (a write in flight
        // is followed at once by the next batch).
        if !backend.in_flight {
            self.flush(ctx);
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("the persister stopped".into())) })
    }
}

impl Handler<SaveStation> for Persister {
    type Result = ();

    fn handle(&mut self, msg: SaveStation, ctx: &mut Context<Self>) {
        if self.redis.is_some() {
            let write = RedisWrite::Station { id: msg.location.id.clone(), json: location_to_json(&msg.location) };
            self.enqueue("redis", vec![write.encode()], ctx);
        }
    }
}

impl Handler<LoadStations> for Persister {
    type Result = ResponseFuture<Result<Vec<Location>, StoreError>>;

    fn handle(&mut self, _: LoadStations, _: &mut Context<Self>) -> Self::Result {
        let redis = self.redis.clone();
        Box::pin(async move {
            let Some(redis) = redis else { return Ok(Vec::new()) };
            let raw = tokio::time::timeout(PING_TIMEOUT, redis.load_stations())
                .await
                .map_err(|_| StoreError::Redis("no answer".into()))??;
            Ok(raw
                .into_iter()
                .filter_map(|(id, json)| {
                    let location = location_from_json(&json).filter(|l| l.id.as_str() == id);
                    if location.is_none() {
                        warn!(station = id, "ignoring a foreign value in the stations hash");
                    }
                    location
                })
                .collect())
        })
    }
}

impl Handler<LoadStation> for Persister {
    type Result = ResponseFuture<Result<Option<Location>, StoreError>>;

    fn handle(&mut self, msg: LoadStation, _: &mut Context<Self>) -> Self::Result {
        let redis = self.redis.clone();
        Box::pin(async move {
            let Some(redis) = redis else { return Ok(None) };
            let json = tokio::time::timeout(PING_TIMEOUT, redis.load_station(&msg.id))
                .await
                .map_err(|_| StoreError::Redis("no answer".into()))??;
            Ok(json.and_then(|json| location_from_json(&json)).filter(|l| l.id == msg.id))
        })
    }
}

impl Handler<Publish> for Persister {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        let Some(redis) = self.redis.clone() else { return };
        let payload = format!("{}\n{}", self.instance, msg.text);
        let channel = updates_channel(&msg.id);
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                if let Err(e) = redis.publish(channel, payload).await {
                    metrics.persist_errors.with_label_values(&["redis"]).inc();
                    tracing::debug!(error = %e, "publish failed");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<Flush> for Persister {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let flushed = self.drain_pending(ctx);
        let batch_max = self.settings.batch_max_items.max(1);
        let backends = self.backends.iter().map(|b| {
            let (name, queue, write) = (b.name, b.queue.clone(), b.write.clone());
            let try_write = !b.in_flight && b.last_error.is_none();
            async move {
                let mut written = 0;
                if try_write && let Ok((Ok(items), _)) = queue.call(move |q| q.next_batch(batch_max)).await {
                    let count = items.len();
                    if count > 0
                        && matches!(tokio::time::timeout(SHUTDOWN_WRITE_TIMEOUT, write(items)).await, Ok(Ok(_)))
                    {
                        let _ = queue.call(|q| q.ack()).await;
                        written = count;
                    }
                }
                // Whatever is still queued (a batch whose write failed too) survives the
                // exit on disk.
                (name, written, queue.call(|q| q.spill_all()).await)
            }
        });
        let backends: Vec<_> = backends.collect();
        Box::pin(futures_util::future::join_all(backends).into_actor(self).map(move |results, act, _| {
            for (name, written, spilled) in results {
                if written > 0 {
                    act.metrics.persist_written.with_label_values(&[name]).inc_by(written as u64);
                }
                match spilled {
                    Ok((Ok(0), _)) => {}
                    Ok((Ok(n), _)) => {
                        act.metrics.persist_spilled.with_label_values(&[name]).inc_by(n as u64);
                        info!(backend = name, spooled = n, "writes kept on disk for the next start");
                    }
                    Ok((Err(e), stats)) => {
                        error!(backend = name, error = %e, queued = stats.len, "writes the spool refused are lost at exit")
                    }
                    Err(QueueGone) => error!(backend = name, "the spool's thread is gone; queued writes are lost at exit"),
                }
            }
            flushed
        }))
    }
}

impl Handler<SyncSnapshots> for Persister {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: SyncSnapshots, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_pending(ctx);
        let Some(redis) = self.backends.iter().find(|b| b.name == "redis") else {
            return Box::pin(std::future::ready(Ok(())));
        };
        if redis.idle() && !redis.in_flight {
            for id in &msg.forget {
                self.memory.remove(id);
            }
            return Box::pin(std::future::ready(Ok(())));
        }
        let (tx, rx) = oneshot::channel();
        self.synced.push((tx, msg.forget));
        self.flush(ctx);
        Box::pin(async move {
            match tokio::time::timeout(SYNC_TIMEOUT, rx).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(format!("Redis did not take the snapshots within {} s", SYNC_TIMEOUT.as_secs())),
            }
        })
    }
}

impl Handler<CheckBackends> for Persister {
    type Result = ResponseFuture<Vec<BackendStatus>>;

    fn handle(&mut self, _: CheckBackends, _: &mut Context<Self>) -> Self::Result {
        let probes: Vec<_> = self
            .backends
            .iter()
            .map(|b| {
                let (name, queued, ping) = (b.name, b.stats.len, b.ping.clone());
                let spool_error = b.spool_error.clone();
                async move {
                    let result = tokio::time::timeout(PING_TIMEOUT, ping()).await;
                    let backend = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some(format!("{name}: no answer within {} s", PING_TIMEOUT.as_secs())),
                    };
                    // A backend whose spool refuses writes is not ready, even if it answers.
                    let detail = match (backend, spool_error) {
                        (None, None) => None,
                        (Some(e), None) => Some(e),
                        (None, Some(spool)) => Some(format!("spool: {spool}")),
                        (Some(e), Some(spool)) => Some(format!("{e}; spool: {spool}")),
                    };
                    BackendStatus { name, state: if detail.is_none() { "up" } else { "down" }, detail, queued }
                }
            })
            .collect();
        Box::pin(async move {
            let mut statuses = vec![BackendStatus { name: "memory", state: "up", detail: None, queued: 0 }];
            statuses.extend(futures_util::future::join_all(probes).await);
            statuses
        })
    }
}

impl Handler<StoreAnomaly> for Persister {
    type Result = ();

    fn handle(&mut self, msg: StoreAnomaly, ctx: &mut Context<Self>) {
        if self.influx.is_some() {
            self.enqueue("influxdb", vec![anomaly_line(&msg.location_id, &msg.anomaly)], ctx);
        }
    }
}

impl Handler<QueryAnomalies> for Persister {
    type Result = ResponseFuture<Option<Result<Vec<Anomaly>, StoreError>>>;

    fn handle(&mut self, msg: QueryAnomalies, _: &mut Context<Self>) -> Self::Result {
        let influx = self.influx.clone();
        Box::pin(async move { Some(influx?.anomalies(&msg.id, msg.from, msg.to).await) })
    }
}

impl Handler<QueryHistory> for Persister {
    type Result = ResponseFuture<Option<Result<Vec<Reading>, StoreError>>>;

    fn handle(&mut self, msg: QueryHistory, _: &mut Context<Self>) -> Self::Result {
        let influx = self.influx.clone();
        Box::pin(async move { Some(influx?.history(&msg.id, msg.from, msg.to, msg.step_secs).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, seq: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            location_id: LocationId::parse(id).unwrap(),
            readings: Vec::new(),
            latest: Vec::new(),
            seq,
            epoch: 1,
        })
    }

    /// Persist settings for a test: no flush unless asked, the spool under `dir`.
    fn test_settings(dir: &Path) -> PersistSettings {
        PersistSettings {
            flush_interval_ms: 3_600_000,
            snapshot_interval_ms: 1000,
            batch_max_items: 100,
            queue_max_items: 100,
            spool_max_bytes: 1 << 20,
            spool_fsync: false,
            data_dir: dir.to_string_lossy().into_owned(),
            retry_base_ms: 10,
            retry_max_ms: 100,
        }
    }

    fn test_influx() -> InfluxSettings {
        InfluxSettings { url: String::new(), database: "x".into(), username: String::new(), password: String::new() }
    }

    #[actix::test]
    async fn a_saved_snapshot_loads_before_and_after_a_flush_and_writes_coalesce() {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path());
        let off = RedisSettings { url: String::new(), cluster: false, snapshot_ttl_secs: 60 };
        let no_influx = test_influx();
        let p = Persister::new(&settings, &off, &no_influx, Arc::new(Metrics::new())).unwrap().start();
        p.do_send(SaveSnapshot { snapshot: snapshot("KJFK", 1), current: None });
        p.do_send(SaveSnapshot { snapshot: snapshot("KJFK", 2), current: None });
        p.do_send(SaveSnapshot { snapshot: snapshot("KLGA", 7), current: None });
        let id = LocationId::parse("KJFK").unwrap();
        let loaded = p.send(LoadSnapshot { location_id: id.clone() }).await.unwrap().unwrap().unwrap();
        assert_eq!(loaded.seq, 2);
        assert_eq!(p.send(Flush).await.unwrap(), 2);
        assert_eq!(p.send(Flush).await.unwrap(), 0);
        assert_eq!(p.send(LoadSnapshot { location_id: id }).await.unwrap().unwrap().unwrap().seq, 2);
        let unknown = LocationId::parse("EGLL").unwrap();
        assert_eq!(p.send(LoadSnapshot { location_id: unknown }).await.unwrap(), Ok(None));
    }

    #[actix::test]
    async fn a_hand_over_keeps_the_local_copy_until_redis_holds_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path());
        // Nothing listens on port 1: every Redis write fails.
        let unreachable = RedisSettings { url: "redis://127.0.0.1:1".into(), cluster: false, snapshot_ttl_secs: 60 };
        let no_influx = test_influx();
        let p = Persister::new(&settings, &unreachable, &no_influx, Arc::new(Metrics::new())).unwrap().start();
        p.do_send(SaveSnapshot { snapshot: snapshot("KJFK", 4), current: None });
        let id = LocationId::parse("KJFK").unwrap();
        let synced = p.send(SyncSnapshots { forget: vec![id.clone()] }).await.unwrap();
        assert_eq!(synced, Err("Redis did not take the snapshots within 10 s".into()));
        let kept = p.send(LoadSnapshot { location_id: id }).await.unwrap().unwrap();
        assert_eq!(kept.map(|s| s.seq), Some(4), "the only copy is kept");
    }
}
