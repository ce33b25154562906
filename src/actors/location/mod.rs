//! `LocationActor`: the single writer of one location's state (DESIGN §1), a thin shell
//! around its [`LocationCore`].
//!
//! The core holds the state and the rules; the actor gives it a mailbox, timers,
//! passivation and snapshots, and hands every event the core returns to its sinks (the
//! shared ones chosen at start-up, and its own WebSocket [`Subscribers`]). Started by the
//! `Directory` on first use under a `Supervisor`; it restores from the persister when it
//! starts or is restarted (`restore.rs`), applies batches and answers once they are safe
//! (`ingest.rs`), hands snapshots back (after each batch and periodically when Redis
//! keeps them, and when it stops), tells the pollers to track its location while it runs,
//! and follows other instances' updates as its [`Ownership`] says.
//!
//! Failure: every call into the core runs under a panic guard: a panic is logged with the
//! location, the actor stops, and its supervisor restarts it from its last state with the
//! mailbox kept. When it stops for any reason, its subscribers are told, so they can
//! re-resolve and resubscribe.

mod ingest;
pub mod messages;
pub mod ownership;
mod restore;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

pub use self::messages::*;
pub use self::ownership::{Feed, Ownership};
use crate::actors::messages::{ProviderReport, RelayUpdate, Track, Untrack};
use crate::actors::persister::{Persister, SaveSnapshot};
use crate::actors::sinks::{Sinks, Subscribers};
use crate::actors::wire;
use crate::core::{Analysis, AnomalyState, CoreSettings, LocationCore, LocationEvent, Update};
use crate::domain::{AirReport, Anomaly, Forecast, Location, Reading};
use crate::telemetry::Metrics;

/// Builds the analyses of a location's core (again after every restart).
pub type Analyses = Arc<dyn Fn(&Location) -> Vec<Box<dyn Analysis>> + Send + Sync>;

/// What a location actor needs besides its own location; shared by all of them.
#[derive(Clone)]
pub struct LocationDeps {
    pub core: Arc<CoreSettings>,
    pub analyses: Analyses,
    /// Where every event goes besides the actor's own subscribers.
    pub sinks: Sinks,
    /// Who else may show this location, and how this actor follows them.
    pub ownership: Ownership,
    /// Hand snapshots to the persister this often when changed (a durable store is
    /// configured); `None`: only when the actor stops, which the in-memory store needs.
    pub snapshot_every: Option<Duration>,
    pub idle_passivate: Duration,
    pub persister: Addr<Persister>,
    /// The source pollers, told to track the location while the actor runs.
    pub pollers: Arc<[(Recipient<Track>, Recipient<Untrack>)]>,
    pub directory: Recipient<RequestPassivation>,
    pub metrics: Arc<Metrics>,
}

impl LocationDeps {
    /// Whether a durable store (Redis) keeps the snapshots, so that a batch is safe only
    /// once the snapshot holding it is (the periodic snapshots are on exactly then).
    fn snapshots_kept(&self) -> bool {
        self.snapshot_every.is_some()
    }
}

pub struct LocationActor {
    location: Arc<Location>,
    deps: Arc<LocationDeps>,
    core: LocationCore,
    subscribers: Subscribers,
    /// This run of the actor (new after each restart), for the pollers.
    run: u64,
    /// Last request or ingest; with no subscribers, decides passivation.
    last_activity: Instant,
    /// Set once passivation was requested, so the Directory is asked only once.
    passivation_requested: bool,
    /// Whether the actor follows other instances' updates now.
    following: bool,
    /// The store was read (or said it holds nothing) in this run. Until then the actor
    /// writes no snapshot, so it never overwrites a stored state with less, and does not
    /// passivate.
    restored: bool,
    /// Failed attempts to read the store in a row, for the backoff.
    restore_failures: u32,
    /// Set when the actor stops to hand its location over (a partition moved): the
    /// supervisor's restart that follows (someone still holds its address) is no error.
    handed_over: bool,
    /// Requests waiting for the first current conditions (cold location).
    current_waiters: Vec<oneshot::Sender<Option<Arc<Update>>>>,
    /// Requests waiting for the first forecast.
    forecast_waiters: Vec<oneshot::Sender<Option<Arc<Forecast>>>>,
}

/// Numbers the runs of location actors.
static RUNS: AtomicU64 = AtomicU64::new(1);

impl LocationActor {
    pub fn new(location: Arc<Location>, deps: Arc<LocationDeps>) -> Self {
        let core = LocationCore::new(location.clone(), deps.core.clone(), (deps.analyses)(&location));
        Self {
            location,
            deps,
            core,
            subscribers: Subscribers::default(),
            run: 0,
            last_activity: Instant::now(),
            passivation_requested: false,
            following: false,
            restored: false,
            restore_failures: 0,
            handed_over: false,
            current_waiters: Vec::new(),
            forecast_waiters: Vec::new(),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
        self.passivation_requested = false;
    }

    /// Hands `events` to the subscribers and every sink, then answers waiting requests.
    fn emit(&mut self, events: impl IntoIterator<Item = LocationEvent>, ctx: &mut Context<Self>) {
        for event in events {
            if let LocationEvent::Anomaly(update) = &event
                && update.state == AnomalyState::Started
            {
                let labels = [update.anomaly.kind.name(), update.anomaly.quantity.name()];
                self.deps.metrics.anomalies.with_label_values(&labels).inc();
            }
            if let LocationEvent::AirQuality(update) = &event {
                let label = update.air_quality.category.key();
                self.deps.metrics.air_quality_updates.with_label_values(&[label]).inc();
            }
            if self.subscribers.deliver(&event) {
                self.on_last_subscriber_gone(ctx);
            }
            for sink in self.deps.sinks.iter() {
                sink.deliver(&self.location.id, &event);
            }
        }
        if !self.current_waiters.is_empty()
            && let Some(shown) = self.core.shown()
        {
            for waiter in self.current_waiters.drain(..) {
                let _ = waiter.send(Some(shown.clone()));
            }
        }
        if !self.forecast_waiters.is_empty()
            && let Some(forecast) = self.core.forecast()
        {
            for waiter in self.forecast_waiters.drain(..) {
                let _ = waiter.send(Some(forecast.clone()));
            }
        }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        if let Ok(event) = self.guarded("refresh", ctx, |act| act.core.refresh(Utc::now())) {
            self.emit(event, ctx);
        }
    }

    /// Runs `f` (the core's work for one message) under a panic guard. A panic is logged
    /// with the location and the message, and stops the actor: its supervisor restarts it
    /// with its mailbox kept, and it restores its last state from the store
    /// (`isobar_location_restarts_total` counts it). Readings are never half-applied by a
    /// caught panic the core raises before it changes anything (its fail point).
    fn guarded<R>(
        &mut self,
        handler: &'static str,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self) -> R,
    ) -> Result<R, Restarting> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(result) => Ok(result),
            Err(payload) => {
                let message = crate::telemetry::panic_message(&*payload);
                error!(location = %self.location.id, handler, panic = %message, "location actor panicked; restarting it from its last state");
                ctx.stop();
                Err(Restarting)
            }
        }
    }

    fn follow(&mut self, on: bool, ctx: &mut Context<Self>) {
        let Some(feed) = self.deps.ownership.feed() else { return };
        if on != self.following {
            self.following = on;
            feed.set(&self.location.id, on, ctx.address().recipient());
        }
    }

    fn on_last_subscriber_gone(&mut self, ctx: &mut Context<Self>) {
        if self.deps.ownership.relays() {
            self.follow(false, ctx);
        }
    }

    fn save_snapshot_if_dirty(&mut self) {
        if self.restored && self.core.is_dirty() {
            let (snapshot, current) = self.core.take_snapshot();
            self.deps.persister.do_send(SaveSnapshot { snapshot, current });
        }
    }
}

impl Actor for LocationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.run = RUNS.fetch_add(1, Ordering::Relaxed);
        self.restore(None, ctx);
        for (track, _) in self.deps.pollers.iter() {
            let reports = ctx.address().recipient();
            track.do_send(Track { location: self.location.clone(), run: self.run, reports });
        }
        if let Ownership::Partitioned { catch_up, .. } = self.deps.ownership {
            self.follow(true, ctx);
            // The owner publishes an update at once but writes its snapshot a little
            // later: a change published before this actor followed is in the store by then.
            ctx.run_later(catch_up, |act, ctx| act.restore(Some(act.core.seq()), ctx));
        }
        if let Some(every) = self.deps.snapshot_every {
            ctx.run_interval(every, |act, _| act.save_snapshot_if_dirty());
        }
        let idle = self.deps.idle_passivate;
        let check_every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        ctx.run_interval(check_every, move |act, ctx| {
            let idle_now = act.subscribers.is_empty() && act.last_activity.elapsed() >= idle;
            if idle_now && act.restored && !act.passivation_requested {
                act.passivation_requested = true;
                act.deps.directory.do_send(RequestPassivation { id: act.location.id.clone(), addr: ctx.address() });
            }
        });
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        // Only a change is written: an actor that merely restored (or follows a location
        // another instance owns) must not overwrite the store with what it read.
        if !self.restored && self.core.is_dirty() {
            warn!(location = %self.location.id, "stopping before the stored state could be read: what it applied is not saved");
        }
        self.save_snapshot_if_dirty();
        for sink in self.deps.sinks.iter() {
            sink.stopped(&self.location.id);
        }
        self.follow(false, ctx);
        for (_, untrack) in self.deps.pollers.iter() {
            untrack.do_send(Untrack { id: self.location.id.clone(), run: self.run });
        }
        self.subscribers.stop(&self.location.id);
        Running::Stop
    }
}

impl Supervised for LocationActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if std::mem::take(&mut self.handed_over) {
            debug!(location = %self.location.id, "handed over; following the new owner from the store");
        } else {
            warn!(location = %self.location.id, "location actor restarting; restoring from the store");
            self.deps.metrics.location_restarts.inc();
        }
        let analyses = (self.deps.analyses)(&self.location);
        self.core = LocationCore::new(self.location.clone(), self.deps.core.clone(), analyses);
        self.restored = false;
        self.restore_failures = 0;
        self.touch();
    }
}

impl Handler<GetCurrent> for LocationActor {
    type Result = ResponseFuture<Option<Arc<Update>>>;

    fn handle(&mut self, msg: GetCurrent, ctx: &mut Context<Self>) -> Self::Result {
        self.touch();
        self.refresh(ctx);
        match (self.core.shown().cloned(), msg.wait) {
            (None, Some(wait)) => {
                let (tx, rx) = oneshot::channel();
                self.current_waiters.push(tx);
                Box::pin(async move { tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok).flatten() })
            }
            (shown, _) => Box::pin(std::future::ready(shown)),
        }
    }
}

impl Handler<GetForecast> for LocationActor {
    type Result = ResponseFuture<Option<Arc<Forecast>>>;

    fn handle(&mut self, msg: GetForecast, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        match (self.core.forecast().cloned(), msg.wait) {
            (None, Some(wait)) => {
                let (tx, rx) = oneshot::channel();
                self.forecast_waiters.push(tx);
                Box::pin(async move { tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok).flatten() })
            }
            (forecast, _) => Box::pin(std::future::ready(forecast)),
        }
    }
}

impl Handler<ProviderReport> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: ProviderReport, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let applied = self.guarded("provider report", ctx, |act| {
            let mut events = match msg.forecast {
                Some(run) => act.core.apply_forecast(run, now),
                None => Vec::new(),
            };
            if let Some(report) = msg.air {
                act.core.apply_air_report(report);
            }
            events.extend(act.core.source_health(msg.source, msg.error.is_none(), now));
            events
        });
        if let Ok(events) = applied {
            self.emit(events, ctx);
        }
    }
}

impl Handler<ApplyLearned> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyLearned, ctx: &mut Context<Self>) {
        if let Ok(events) = self.guarded("learned forecast", ctx, |act| act.core.apply_learned(msg.0, Utc::now())) {
            self.emit(events, ctx);
        }
    }
}

impl Handler<GetHistory> for LocationActor {
    type Result = Vec<Reading>;

    fn handle(&mut self, msg: GetHistory, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        self.core.history(msg.from, msg.to)
    }
}

impl Handler<GetAirReports> for LocationActor {
    type Result = Vec<Arc<AirReport>>;

    fn handle(&mut self, _: GetAirReports, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        self.core.air_reports().to_vec()
    }
}

impl Handler<GetAnomalies> for LocationActor {
    type Result = Vec<Anomaly>;

    fn handle(&mut self, msg: GetAnomalies, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        self.core.anomalies(msg.from, msg.to)
    }
}

impl Handler<Subscribe> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) {
        self.touch();
        self.refresh(ctx);
        let shown = self.core.shown().map(|u| &**u);
        let snapshot = wire::snapshot_message(&self.location.id, shown, msg.since);
        let seq = shown.map_or(0, |u| u.seq);
        if self.subscribers.add(msg.session_id, msg.recipient, snapshot, seq) && self.deps.ownership.relays() {
            self.follow(true, ctx);
        }
    }
}

impl Handler<Unsubscribe> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Context<Self>) {
        self.touch();
        if self.subscribers.remove(msg.session_id) {
            self.on_last_subscriber_gone(ctx);
        }
    }
}

impl Handler<Passivate> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Context<Self>) {
        debug!(location = %self.location.id, "passivating");
        ctx.stop();
    }
}

impl Handler<Checkpoint> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: Checkpoint, _: &mut Context<Self>) {
        self.save_snapshot_if_dirty();
    }
}

impl Handler<Adopt> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: Adopt, ctx: &mut Context<Self>) {
        if !self.core.is_dirty() {
            self.restore(None, ctx);
        }
    }
}

impl Handler<HandOver> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: HandOver, ctx: &mut Context<Self>) {
        debug!(location = %self.location.id, "handing over");
        self.save_snapshot_if_dirty();
        self.handed_over = true;
        ctx.stop();
    }
}

impl Handler<RelayUpdate> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: RelayUpdate, ctx: &mut Context<Self>) {
        // Only with one owner per location (Kafka) is another instance's update this
        // location's state; otherwise each instance keeps its own and only relays.
        if self.deps.ownership.adopts_remote_updates()
            && let Some((seq, current)) = wire::parse_update(&msg.text)
        {
            let Ok(shown) = self.guarded("relayed update", ctx, |act| act.core.show_remote(seq, current, Utc::now()))
            else {
                return;
            };
            // The owner's update goes to subscribers in `seq` order, as this actor's own
            // would: one that does not follow what they were told (a feed message lost
            // while Redis reconnected, say) goes out as a snapshot saying how many it
            // replaces, never as a silent jump; an old one not at all. The owner's bytes
            // are sent, not encoded again.
            if let Some(LocationEvent::Refreshed(update)) = &shown {
                let _ = update.message.set(msg.text.clone());
                if self.subscribers.deliver(&LocationEvent::Update(update.clone())) {
                    self.on_last_subscriber_gone(ctx);
                }
            }
            self.emit(shown, ctx);
            return;
        }
        if self.subscribers.send(&msg.text) {
            self.on_last_subscriber_gone(ctx);
        }
    }
}

impl Handler<Restart> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
