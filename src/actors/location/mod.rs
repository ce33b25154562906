//! `LocationActor`: the single writer of one location's state (DESIGN §1).
//!
//! Started by the `Directory` on first use, under a `Supervisor`. It keeps the recent
//! readings (bounded ring), the latest reading per source, the consensus and the
//! subscribers. On a change it serializes the update **once** and sends the same bytes to
//! every subscriber; the same serialized `data` answers `/current` in metric units until
//! the next change. It hands snapshots to the `Persister` (at most once per snapshot
//! interval, and when stopping) and restores from it when it starts or is restarted, so
//! neither a supervisor restart nor a passivation loses state.
//!
//! Failure: nothing from outside can make it panic (readings arrive validated). When it
//! stops for any reason, its subscribers are told, so they can re-resolve and resubscribe.

pub mod published;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use self::published::{Published, PublishedViews};
use self::state::{Ingested, LocationState, Retention};
use crate::actors::directory::RequestPassivation;
use crate::actors::feed::{Follow, Unfollow};
use crate::actors::persister::{LoadSnapshot, Persister, Publish, SaveSnapshot, StoreReadings};
use crate::actors::session::{Deliver, Payload};
use tokio::sync::oneshot;

use crate::analytics::{ConsensusSettings, blend, consensus};
use crate::config::{ConsensusConfig, LocationSettings};
use crate::domain::reading::source_label;
use crate::domain::{Current, Forecast, ForecastRun, Location, LocationId, LocationRef, Reading, SourceName, Units};
use crate::telemetry::Metrics;

/// How long a rendered /current stays valid without a change before ages and the stale
/// flag are recomputed.
pub const RENDER_TTL: Duration = Duration::from_secs(1);

/// What a location actor needs besides its own location; shared by all of them.
#[derive(Clone)]
pub struct LocationDeps {
    pub settings: Arc<LocationSettings>,
    pub consensus: Arc<ConsensusConfig>,
    pub snapshot_interval: Duration,
    pub persister: Addr<Persister>,
    /// Set when InfluxDB is configured: applied readings are handed on for history.
    pub store_history: bool,
    /// Set when Redis is configured: updates are published, and followed from other
    /// instances while this location has subscribers.
    pub feed: Option<(Recipient<Follow>, Recipient<Unfollow>)>,
    /// Follow the feed for as long as the actor runs (Kafka with several instances: the
    /// owner of a location may be another instance, and this actor's view follows its
    /// updates).
    pub follow_always: bool,
    /// Set when Kafka is configured: every update is produced to the updates topic.
    pub updates: Option<Arc<crate::actors::kafka::UpdatesProducer>>,
    /// Where each actor publishes its current conditions for /current to read directly.
    pub views: Arc<PublishedViews>,
    /// Hand snapshots to the persister periodically (a durable store is configured);
    /// otherwise only when the actor stops, which is all the in-memory store needs.
    pub periodic_snapshots: bool,
    pub directory: Recipient<RequestPassivation>,
    pub metrics: Arc<Metrics>,
}

pub struct LocationActor {
    location: Arc<Location>,
    deps: LocationDeps,
    state: LocationState,
    /// The current consensus and its serialized forms; `None` until the first reading.
    rendered: Option<Rendered>,
    /// Each subscribed WebSocket session, by session id.
    subscribers: Vec<(u64, Recipient<Deliver>)>,
    /// Last request or ingest; with no subscribers, decides passivation.
    last_activity: Instant,
    /// Set once passivation was requested, so the Directory is asked only once.
    passivation_requested: bool,
    /// State changed since the last snapshot handed to the persister.
    dirty: bool,
    /// Sources whose last refresh failed: they do not count as fresh.
    failing: Vec<SourceName>,
    /// The rendered view is another instance's update (this one does not own the
    /// location): shown as received, never recomputed from the local state.
    relayed: bool,
    /// The latest run of each forecast provider.
    forecasts: Vec<ForecastRun>,
    /// Their blend, recomputed when a run arrives.
    forecast: Option<Forecast>,
    /// Requests waiting for the first current conditions (cold location).
    current_waiters: Vec<(Units, oneshot::Sender<Option<CurrentView>>)>,
    /// Requests waiting for the first forecast.
    forecast_waiters: Vec<oneshot::Sender<Option<Forecast>>>,
}

/// Hours of forecast in the WebSocket `forecast` message.
const WS_FORECAST_HOURS: usize = 48;

/// The consensus of one `seq`, rendered once.
struct Rendered {
    seq: u64,
    computed_at: Instant,
    /// Wall-clock time of the change that produced `seq` (Last-Modified).
    changed_at: DateTime<Utc>,
    current: Current,
    /// `current` as JSON, metric: /current body and `data` of WebSocket messages.
    metric: ByteString,
    /// Rendered on the first imperial request of this `seq`.
    imperial: Option<ByteString>,
}

/// A rendered /current response.
#[derive(Debug, Clone)]
pub struct CurrentView {
    pub body: ByteString,
    pub seq: u64,
    pub units: Units,
    pub changed_at: DateTime<Utc>,
}

/// Readings for this location, already validated. Sent by the `Directory`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IngestBatch {
    pub readings: Vec<Reading>,
}

/// Current conditions in `units`; `None` while no source has reported, after waiting up
/// to `wait` for the first data. Sent by /current.
#[derive(Message)]
#[rtype(result = "Option<CurrentView>")]
pub struct GetCurrent {
    pub units: Units,
    pub wait: Option<Duration>,
}

/// The blended forecast (metric, every hour held); `None` while no provider has sent
/// one, after waiting up to `wait`. Sent by /forecast.
#[derive(Message)]
#[rtype(result = "Option<Forecast>")]
pub struct GetForecast {
    pub wait: Option<Duration>,
}

/// A provider's new forecast run. Sent by the `Directory` for a `SourcePoller`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyForecast {
    pub run: ForecastRun,
}

/// Whether a source's last refresh worked (`error: None`) or failed. A failing source
/// stops counting as fresh, so the consensus marks the data stale when none is left.
/// Sent by the `Directory` for a `SourcePoller`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SourceHealth {
    pub source: SourceName,
    pub error: Option<String>,
}

/// Stored readings with `from <= observed_at <= to`, oldest first. Sent by /history.
#[derive(Message)]
#[rtype(result = "Vec<Reading>")]
pub struct GetHistory {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Sent by a `WsSession`: deliver a snapshot now, then every update.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub session_id: u64,
    pub recipient: Recipient<Deliver>,
}

/// Sent by a `WsSession` that no longer follows this location (or is closing).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session_id: u64,
}

/// Sent by the `Directory` after it forgot this actor: save and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Passivate;

/// Sent at shutdown: hand the current snapshot to the persister now (if it changed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint;

/// Sent by the `Directory` when another instance takes this location over (its Kafka
/// partition moved): the latest state goes to the persister before the answer, then the
/// actor stops without writing again, so a late write can never overwrite the new
/// owner's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandOver;

/// An update another instance published; forwarded as is to local subscribers.
/// Sent by the `Directory` for the `RedisFeed`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayUpdate {
    pub text: ByteString,
}

/// Sent by the `Directory` before the first readings of a location this instance just
/// took over: an actor that applied nothing itself restores from the store again, since
/// the previous owner may have changed the location after this one started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt;

/// Stops the actor from the inside, as an unrecoverable error would: its supervisor
/// restarts it and `restarting()` rebuilds the state from the store. For operators and
/// tests exercising supervision.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;

impl LocationActor {
    pub fn new(location: Arc<Location>, deps: LocationDeps) -> Self {
        Self {
            location,
            deps,
            state: LocationState::default(),
            rendered: None,
            subscribers: Vec::new(),
            last_activity: Instant::now(),
            passivation_requested: false,
            dirty: false,
            failing: Vec::new(),
            relayed: false,
            forecasts: Vec::new(),
            forecast: None,
            current_waiters: Vec::new(),
            forecast_waiters: Vec::new(),
        }
    }

    fn id(&self) -> &LocationId {
        &self.location.id
    }

    fn retention(&self) -> Retention {
        Retention {
            window: chrono::Duration::hours(self.deps.settings.history_hours as i64),
            max_readings: self.deps.settings.max_history_readings,
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
        self.passivation_requested = false;
    }

    /// Recomputes the consensus; returns whether it differs from what subscribers saw.
    fn recompute(&mut self, changed_at: Option<DateTime<Utc>>) -> bool {
        let now = Utc::now();
        let settings = ConsensusSettings {
            stale_after_secs: self.deps.settings.stale_after_secs,
            trust: &self.deps.consensus.trust,
            outlier_threshold: self.deps.consensus.outlier_threshold,
        };
        let location = LocationRef::from(&*self.location);
        let Some(current) = consensus(location, self.state.latest(), &self.failing, now, settings) else {
            self.rendered = None;
            return false;
        };
        let changed = self.rendered.as_ref().is_none_or(|r| !same_conditions(&r.current, &current));
        let metric = match serde_json::to_string(&current) {
            Ok(json) => ByteString::from(json),
            Err(error) => {
                // Serializing plain numbers and strings cannot fail; keep the old view if it did.
                warn!(location = %self.id(), %error, "could not render current conditions");
                return false;
            }
        };
        if changed && changed_at.is_some() {
            self.state.seq += 1;
        }
        let changed_at = match (&self.rendered, changed_at) {
            (Some(r), _) if !changed => r.changed_at,
            (_, Some(t)) => t,
            (_, None) => current.observed_at,
        };
        self.relayed = false;
        self.show(current, metric, changed_at);
        changed
    }

    /// Makes `current` (rendered as `metric`) the view of `state.seq`: published for
    /// /current, and answered to the requests waiting for one.
    fn show(&mut self, current: Current, metric: ByteString, changed_at: DateTime<Utc>) {
        let computed_at = Instant::now();
        self.deps.views.publish(
            &self.location.id,
            Published { seq: self.state.seq, changed_at, body: metric.clone(), computed_at },
        );
        self.rendered =
            Some(Rendered { seq: self.state.seq, computed_at, changed_at, current, metric, imperial: None });
        for (units, waiter) in std::mem::take(&mut self.current_waiters) {
            let _ = waiter.send(self.view(units));
        }
    }

    /// Takes another instance's update as the view when it is newer than what this actor
    /// shows (a follower; the owner's own state is always at least as new).
    fn show_remote(&mut self, text: &str) {
        #[derive(serde::Deserialize)]
        struct Update {
            seq: u64,
            data: Current,
        }
        let update: Update = match serde_json::from_str(text) {
            Ok(u) => u,
            Err(error) => {
                debug!(location = %self.id(), %error, "ignoring a relayed message that is not an update");
                return;
            }
        };
        if update.seq <= self.state.seq {
            return;
        }
        let Ok(metric) = serde_json::to_string(&update.data) else { return };
        self.state.seq = update.seq;
        self.relayed = true;
        self.show(update.data, ByteString::from(metric), Utc::now());
    }

    /// Re-blends the forecast runs; tells subscribers when the blend changed.
    fn reblend(&mut self) {
        let blended = blend(LocationRef::from(&*self.location), &self.forecasts, Utc::now());
        let changed = self.forecast.as_ref().is_none_or(|f| f.hourly != blended.hourly);
        self.forecast = Some(blended);
        for waiter in std::mem::take(&mut self.forecast_waiters) {
            let _ = waiter.send(self.forecast.clone());
        }
        if !changed || self.subscribers.is_empty() {
            return;
        }
        let Some(window) = self.forecast.as_ref().map(|f| f.window(Utc::now(), WS_FORECAST_HOURS)) else { return };
        let Ok(data) = serde_json::to_string(&window) else { return };
        let text =
            ByteString::from(format!(r#"{{"type":"forecast","location_id":"{}","data":{}}}"#, self.location.id, data));
        self.fan_out(text);
    }

    /// Recomputes ages and the stale flag when the rendered view is older than the TTL.
    fn refresh_if_old(&mut self) {
        if !self.relayed && self.rendered.as_ref().is_some_and(|r| r.computed_at.elapsed() >= RENDER_TTL) {
            self.recompute(None);
        }
    }

    fn view(&mut self, units: Units) -> Option<CurrentView> {
        self.refresh_if_old();
        let r = self.rendered.as_mut()?;
        let body = match units {
            Units::Metric => r.metric.clone(),
            Units::Imperial => r
                .imperial
                .get_or_insert_with(|| {
                    ByteString::from(serde_json::to_string(&r.current.in_units(Units::Imperial)).unwrap_or_default())
                })
                .clone(),
        };
        Some(CurrentView { body, seq: r.seq, units, changed_at: r.changed_at })
    }

    /// The message every subscriber gets on a change: serialized once, shared. (A location
    /// id never needs JSON escaping: its pattern allows only `[A-Za-z0-9._:-]`.)
    fn broadcast_update(&mut self) {
        let Some(r) = &self.rendered else { return };
        let text = ByteString::from(format!(
            r#"{{"type":"update","location_id":"{}","seq":{},"data":{}}}"#,
            self.location.id, r.seq, r.metric
        ));
        if self.deps.feed.is_some() {
            self.deps.persister.do_send(Publish { id: self.location.id.clone(), text: text.clone() });
        }
        if let Some(updates) = &self.deps.updates {
            updates.publish(self.location.id.as_str(), text.as_bytes());
        }
        self.fan_out(text);
    }

    /// Sends the same bytes to every subscriber; drops those that cannot keep up.
    fn fan_out(&mut self, text: ByteString) {
        let had_subscribers = !self.subscribers.is_empty();
        self.subscribers.retain(|(session, recipient)| {
            match recipient.try_send(Deliver { payload: Payload::Text(text.clone()) }) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    debug!(session, "subscriber mailbox full: dropping it");
                    recipient.do_send(Deliver { payload: Payload::Overflowed });
                    false
                }
                Err(SendError::Closed(_)) => false,
            }
        });
        if had_subscribers && self.subscribers.is_empty() {
            self.follow(false);
        }
    }

    fn follow(&self, on: bool) {
        if let Some((follow, unfollow)) = &self.deps.feed {
            let id = self.location.id.clone();
            if on {
                follow.do_send(Follow { id });
            } else {
                unfollow.do_send(Unfollow { id });
            }
        }
    }

    fn snapshot_message(&self) -> ByteString {
        let data = self.rendered.as_ref().map(|r| r.metric.as_ref()).unwrap_or("null");
        ByteString::from(format!(r#"{{"type":"snapshot","location_id":"{}","data":{}}}"#, self.location.id, data))
    }

    fn save_snapshot(&mut self) {
        self.dirty = false;
        let snapshot = Arc::new(self.state.snapshot(self.location.id.clone()));
        let current = self.rendered.as_ref().map(|r| r.current.clone());
        self.deps.persister.do_send(SaveSnapshot { snapshot, current });
    }

    fn restore(&mut self, ctx: &mut Context<Self>) {
        self.restore_if_newer_than(None, ctx);
    }

    /// Restores from the store; with `seq`, only a snapshot newer than that and only
    /// while this actor applied nothing itself.
    fn restore_if_newer_than(&mut self, seq: Option<u64>, ctx: &mut Context<Self>) {
        let load = self.deps.persister.send(LoadSnapshot { location_id: self.location.id.clone() });
        ctx.wait(load.into_actor(self).map(move |result, act, _| match result {
            Ok(Some(snapshot)) if seq.is_some_and(|seq| snapshot.seq <= seq || act.dirty) => {}
            Ok(Some(snapshot)) => {
                act.state = LocationState::from_snapshot(&snapshot);
                act.recompute(None);
            }
            Ok(None) => {}
            Err(error) => warn!(location = %act.id(), %error, "persister unavailable; starting empty"),
        }));
    }
}

/// Whether two consensus documents show the same conditions: everything but what only
/// moves with the clock (ages, age-derived weights, quality score). Compared field by
/// field, without copying either document.
fn same_conditions(a: &Current, b: &Current) -> bool {
    let values = |c: &Current| {
        [c.temperature, c.humidity, c.pressure, c.wind_speed, c.wind_direction, c.visibility, c.precipitation]
    };
    let sources_match = a.sources.len() == b.sources.len()
        && a.sources.iter().zip(&b.sources).all(|(x, y)| {
            x.name == y.name
                && x.observed_at == y.observed_at
                && x.temperature == y.temperature
                && x.outlier == y.outlier
        });
    values(a) == values(b)
        && a.observed_at == b.observed_at
        && a.weather_code == b.weather_code
        && a.sources_count == b.sources_count
        && a.confidence == b.confidence
        && a.stale == b.stale
        && sources_match
}

impl Actor for LocationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.restore(ctx);
        if self.deps.follow_always {
            self.follow(true);
            // The owner publishes an update at once but writes its snapshot a little
            // later: a change published before this actor's subscription took effect is in
            // the store by then.
            let catch_up = self.deps.snapshot_interval * 2 + Duration::from_secs(1);
            ctx.run_later(catch_up, |act, ctx| act.restore_if_newer_than(Some(act.state.seq), ctx));
        }
        if self.deps.periodic_snapshots {
            ctx.run_interval(self.deps.snapshot_interval, |act, _| {
                if act.dirty {
                    act.save_snapshot();
                }
            });
        }
        let idle = Duration::from_secs(self.deps.settings.idle_passivate_secs);
        let check_every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        ctx.run_interval(check_every, move |act, ctx| {
            if act.subscribers.is_empty() && !act.passivation_requested && act.last_activity.elapsed() >= idle {
                act.passivation_requested = true;
                act.deps.directory.do_send(RequestPassivation { id: act.location.id.clone(), addr: ctx.address() });
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        // Only a change is written: an actor that merely restored (or follows a location
        // another instance owns) must not overwrite the store with what it read.
        if self.dirty {
            self.save_snapshot();
        }
        self.deps.views.remove(&self.location.id);
        if !self.subscribers.is_empty() || self.deps.follow_always {
            self.follow(false);
        }
        for (_, recipient) in self.subscribers.drain(..) {
            recipient.do_send(Deliver { payload: Payload::LocationStopped(self.location.id.clone()) });
        }
        Running::Stop
    }
}

impl Supervised for LocationActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        warn!(location = %self.location.id, "location actor restarting; restoring from the store");
        self.deps.metrics.location_restarts.inc();
        self.state = LocationState::default();
        self.rendered = None;
        self.subscribers.clear();
        self.touch();
    }
}

impl Handler<IngestBatch> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: IngestBatch, _: &mut Context<Self>) {
        self.touch();
        let now = Utc::now();
        let retention = self.retention();
        let mut latest_changed = false;
        let mut applied = Vec::new();
        for reading in msg.readings {
            self.failing.retain(|s| *s != reading.source);
            let label = source_label(reading.source.as_str());
            let kept = self.deps.store_history.then(|| reading.clone());
            match self.state.ingest(reading, now, retention) {
                Ingested::Latest => {
                    latest_changed = true;
                    self.deps.metrics.readings_ingested.with_label_values(&[label]).inc();
                    applied.extend(kept);
                }
                Ingested::Stored => {
                    self.deps.metrics.readings_ingested.with_label_values(&[label]).inc();
                    applied.extend(kept);
                }
                Ingested::Duplicate => {
                    self.deps.metrics.readings_rejected.with_label_values(&[label, "duplicate"]).inc()
                }
                Ingested::TooOld => self.deps.metrics.readings_rejected.with_label_values(&[label, "too_old"]).inc(),
            }
        }
        self.dirty = true;
        let changed = latest_changed && self.recompute(Some(now));
        if changed {
            self.broadcast_update();
        }
        if self.deps.store_history && (!applied.is_empty() || changed) {
            let consensus = changed.then(|| self.rendered.as_ref().map(|r| (r.current.clone(), now))).flatten();
            self.deps.persister.do_send(StoreReadings { readings: applied, consensus });
        }
    }
}

impl Handler<GetCurrent> for LocationActor {
    type Result = ResponseFuture<Option<CurrentView>>;

    fn handle(&mut self, msg: GetCurrent, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let view = self.view(msg.units);
        match (view, msg.wait) {
            (None, Some(wait)) => {
                let (tx, rx) = oneshot::channel();
                self.current_waiters.push((msg.units, tx));
                Box::pin(async move { tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok).flatten() })
            }
            (view, _) => Box::pin(std::future::ready(view)),
        }
    }
}

impl Handler<GetForecast> for LocationActor {
    type Result = ResponseFuture<Option<Forecast>>;

    fn handle(&mut self, msg: GetForecast, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        match (self.forecast.clone(), msg.wait) {
            (None, Some(wait)) => {
                let (tx, rx) = oneshot::channel();
                self.forecast_waiters.push(tx);
                Box::pin(async move { tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok).flatten() })
            }
            (forecast, _) => Box::pin(std::future::ready(forecast)),
        }
    }
}

impl Handler<ApplyForecast> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyForecast, _: &mut Context<Self>) {
        self.forecasts.retain(|r| r.name != msg.run.name);
        self.forecasts.push(msg.run);
        self.reblend();
    }
}

impl Handler<SourceHealth> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: SourceHealth, _: &mut Context<Self>) {
        let was_failing = self.failing.contains(&msg.source);
        match msg.error {
            Some(_) if !was_failing => self.failing.push(msg.source),
            None if was_failing => self.failing.retain(|s| *s != msg.source),
            _ => return,
        }
        if self.recompute(Some(Utc::now())) {
            self.broadcast_update();
        }
    }
}

impl Handler<GetHistory> for LocationActor {
    type Result = Vec<Reading>;

    fn handle(&mut self, msg: GetHistory, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        self.state.history(msg.from, msg.to)
    }
}

impl Handler<Subscribe> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.touch();
        self.refresh_if_old();
        msg.recipient.do_send(Deliver { payload: Payload::Text(self.snapshot_message()) });
        self.subscribers.retain(|(id, _)| *id != msg.session_id);
        if self.subscribers.is_empty() && !self.deps.follow_always {
            self.follow(true);
        }
        self.subscribers.push((msg.session_id, msg.recipient));
    }
}

impl Handler<Unsubscribe> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.touch();
        let before = self.subscribers.len();
        self.subscribers.retain(|(id, _)| *id != msg.session_id);
        if before > 0 && self.subscribers.is_empty() && !self.deps.follow_always {
            self.follow(false);
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
        if self.dirty {
            self.save_snapshot();
        }
    }
}

impl Handler<Adopt> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: Adopt, ctx: &mut Context<Self>) {
        if !self.dirty {
            self.restore(ctx);
        }
    }
}

impl Handler<HandOver> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: HandOver, ctx: &mut Context<Self>) {
        debug!(location = %self.location.id, "handing over");
        if self.dirty {
            self.save_snapshot();
        }
        ctx.stop();
    }
}

impl Handler<RelayUpdate> for LocationActor {
    type Result = ();

    fn handle(&mut self, msg: RelayUpdate, _: &mut Context<Self>) {
        // Only with one owner per location (Kafka) is another instance's update this
        // location's state; without Kafka each instance keeps its own and only relays.
        if self.deps.follow_always {
            self.show_remote(&msg.text);
        }
        self.fan_out(msg.text);
    }
}

impl Handler<Restart> for LocationActor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
