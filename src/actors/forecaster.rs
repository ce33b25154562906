//! `Forecaster`: learns each place's own forecast from the readings it gets, and serves
//! every model's run with its live skill.
//!
//! Each location core runs a [`ForecastFeed`] analysis: it keeps the readings of the hour
//! under way and, when a reading of a later hour arrives, hands the completed hour to
//! the forecaster (one message per place and hour). The forecaster keeps each place's
//! hourly means (`forecast.history_hours`, for at most `forecast.max_locations` places),
//! and at every completed hour:
//! - scores the forecasts issued earlier for the hours now observed (the live skill:
//!   a rolling 14-day MAE per model, quantity and horizon);
//! - runs the baselines, the learned models (once trained) and the providers' blend (when
//!   providers run for the place), blends them by skill, and issues them to be scored;
//! - hands the runs to the location's actor, which shows them in `/forecast` and sends
//!   them to its WebSocket subscribers;
//! - queues the place for training when it has no models yet and enough history, or when
//!   `forecast.retrain_hours` hours were observed since its models were fitted.
//!
//! A place the forecaster has not kept starts from its stored history when InfluxDB keeps
//! one (hourly means of every reading stored in `forecast.history_hours`, read a day per
//! query), else from the readings it gets from now on.
//!
//! Training runs on the blocking pool, at most `forecast.train_concurrency` places at
//! once, never on an actor's thread; `TrainNow` trains a place on demand. Each place's
//! series and skill, and its fitted models, are kept under `persist.data_dir/forecast`,
//! so a restart keeps them. The forecaster runs on an arbiter of its own.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::actors::directory::{Directory, Resolve};
use crate::actors::location::ApplyLearned;
use crate::actors::persister::QueryHistory;
use crate::analytics::forecast::corrected::{Corrected, Issued, MIN_ORIGINS};
use crate::analytics::forecast::features::Position;
use crate::analytics::forecast::hourly::{Column, Hour, Hourly, hour_of};
use crate::analytics::forecast::skill::Skill;
use crate::analytics::forecast::{self as models, HORIZONS, Model, NotTrained, Run, Trained};
use crate::core::{Analysis, LocationEvent, LocationState};
use crate::domain::units::round2;
use crate::domain::{
    Forecast, LEARNED_QUANTITIES, Learned, LearnedStatus, LocationId, ModelHour, ModelRun, ModelSkill, Reading,
    TrainedSummary,
};
use crate::telemetry::Metrics;

/// A place not heard from for this long makes room for a new one when the forecaster is full.
const IDLE: Duration = Duration::from_secs(48 * 3600);
/// After a training that left a quantity without models, hours observed before the
/// place is tried again.
const RETRY_HOURS: i64 = 24;
/// Horizons the MAE metric is exported for.
const METRIC_HORIZONS: [(u8, &str); 5] = [(1, "1"), (3, "3"), (6, "6"), (12, "12"), (24, "24")];

#[derive(Debug, Clone)]
pub struct ForecasterSettings {
    pub max_locations: usize,
    pub history_hours: usize,
    pub retrain_hours: u32,
    pub train_concurrency: usize,
    /// Where each place's series and models are kept; `None`: not kept.
    pub dir: Option<PathBuf>,
    /// The stored history (InfluxDB, through the persister) a place new to the forecaster
    /// starts from; `None` without InfluxDB.
    pub history: Option<Recipient<QueryHistory>>,
    pub models: models::Settings,
}

/// A place's readings of one hour for the forecaster, as means: a completed hour's
/// (`closed`), or a late reading's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Observed {
    pub id: LocationId,
    pub position: Position,
    /// Hours since the epoch.
    pub hour: i64,
    pub means: Hour,
    pub closed: bool,
}

/// The providers' blend of a place changed: its hourly values of the learned quantities.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProvidersBlend {
    pub id: LocationId,
    pub hours: Vec<(i64, [Option<f32>; 4])>,
}

/// Trains a place now (ahead of any queued); answers what was fitted.
#[derive(Message)]
#[rtype(result = "Result<Vec<TrainedSummary>, TrainError>")]
pub struct TrainNow {
    pub id: LocationId,
}

/// Where the forecaster sends each place's runs (set once the Directory runs).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub directory: Addr<Directory>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("location {0} has sent no readings that this instance learns from")]
    NotLearned(LocationId),
    #[error("{0}")]
    NotTrained(String),
    #[error("the forecaster stopped")]
    Stopped,
}

/// The location core's side: hands each completed hour of readings to the forecaster,
/// as their means (nothing is kept per reading).
pub struct ForecastFeed {
    id: LocationId,
    position: Position,
    observed: Recipient<Observed>,
    providers: Recipient<ProvidersBlend>,
    /// The hour under way, and the means of its readings so far.
    open: Option<(i64, Hour)>,
}

impl ForecastFeed {
    pub fn new(
        id: LocationId,
        position: Position,
        observed: Recipient<Observed>,
        providers: Recipient<ProvidersBlend>,
    ) -> Self {
        Self { id, position, observed, providers, open: None }
    }

    fn send(&self, hour: i64, means: Hour, closed: bool) {
        self.observed.do_send(Observed { id: self.id.clone(), position: self.position, hour, means, closed });
    }
}

impl Analysis for ForecastFeed {
    fn on_reading(&mut self, reading: &Reading, _: &LocationState, _: &mut Vec<LocationEvent>) {
        let hour = hour_of(reading.observed_at);
        let mut late = Hour::EMPTY;
        match &mut self.open {
            Some((open, means)) if hour == *open => means.add(&reading.values),
            Some((open, _)) if hour < *open => {
                late.add(&reading.values);
                self.send(hour, late, false);
            }
            _ => {
                if let Some((open, means)) = self.open.take() {
                    self.send(open, means, true);
                }
                late.add(&reading.values);
                self.open = Some((hour, late));
            }
        }
    }

    fn on_forecast(&mut self, forecast: &Forecast, _: &mut Vec<LocationEvent>) {
        let f = |v: Option<f64>| v.map(|v| v as f32);
        let hours = forecast
            .hourly
            .iter()
            .filter(|h| h.time.timestamp() % 3600 == 0)
            .map(|h| (hour_of(h.time), [f(h.temperature), f(h.humidity), None, f(h.wind_speed)]))
            .collect();
        self.providers.do_send(ProvidersBlend { id: self.id.clone(), hours });
    }
}

/// A place's models for one quantity, and when they were fitted.
#[derive(Serialize, Deserialize)]
struct Fitted {
    trained_at: DateTime<Utc>,
    model: Trained,
    /// Its correction of the providers' blend, once they ran here for a week.
    #[serde(default)]
    corrected: Option<Corrected>,
}

/// What is kept of a place besides its models.
#[derive(Serialize, Deserialize)]
struct Kept {
    position: Position,
    series: Hourly,
    /// Per learned quantity.
    skill: Vec<Skill>,
    origin: Option<i64>,
}

struct Place {
    kept: Kept,
    providers: Vec<(i64, [Option<f32>; 4])>,
    /// Per learned quantity, the providers' runs as issued at each origin (kept in a file
    /// of their own, written when a run is added).
    issued: Vec<Issued>,
    issued_dirty: bool,
    /// Per learned quantity.
    fitted: Vec<Option<Arc<Fitted>>>,
    /// Why the last training left quantities without models.
    not_trained: Option<String>,
    /// Hour from which a failed training may be tried again.
    retry_from: i64,
    training: bool,
    last_seen: Instant,
    /// The series or skill changed since they were written.
    dirty: bool,
    /// Its stored history is being read.
    backfilling: bool,
}

impl Place {
    fn new(kept: Kept) -> Self {
        Self {
            kept,
            providers: Vec::new(),
            issued: vec![Issued::default(); LEARNED_QUANTITIES.len()],
            issued_dirty: false,
            fitted: LEARNED_QUANTITIES.iter().map(|_| None).collect(),
            not_trained: None,
            retry_from: i64::MIN,
            training: false,
            last_seen: Instant::now(),
            dirty: false,
            backfilling: false,
        }
    }

    fn trained_until(&self) -> Option<i64> {
        self.fitted.iter().flatten().map(|f| f.model.trained_until).min()
    }

    /// Runs every model from `origin`, per learned quantity, blended by skill; with
    /// `score`, scores what earlier runs said of the hours now observed, issues these
    /// runs to be scored and keeps the providers' run to learn their correction from.
    fn run(&mut self, origin: i64, score: bool) -> Vec<Vec<Run>> {
        let Kept { position, series, skill, .. } = &mut self.kept;
        let (issued, issued_dirty) = (&mut self.issued, &mut self.issued_dirty);
        LEARNED_QUANTITIES
            .iter()
            .enumerate()
            .map(|(q, &quantity)| {
                let column = Column::of(quantity);
                if score && let Some(column) = column {
                    skill[q].verify(origin, |hour| series.get(hour, column));
                }
                let mut runs = models::baselines(series, quantity, origin);
                if let Some(fitted) = &self.fitted[q] {
                    runs.extend(fitted.model.forecast(series, *position, origin));
                }
                if !self.providers.is_empty() {
                    let values: Vec<Option<f32>> = (1..=i64::from(HORIZONS))
                        .map(|h| {
                            let hour = origin + h;
                            let i = self.providers.binary_search_by_key(&hour, |(at, _)| *at).ok()?;
                            self.providers[i].1[q]
                        })
                        .collect();
                    if score {
                        *issued_dirty |= issued[q].issue(origin, &values);
                    }
                    runs.push(Run { model: Model::Providers, values });
                }
                if let Some(corrected) = self.fitted[q].as_ref().and_then(|f| f.corrected.as_ref()) {
                    runs.extend(corrected.forecast(series, &issued[q], *position, origin));
                }
                runs.push(models::blend(&skill[q], &runs, self.fitted[q].as_deref().map(|f| &f.model)));
                if score {
                    skill[q].issue(origin, &runs);
                }
                runs
            })
            .collect()
    }

    /// What each quantity's models were fitted on.
    fn trained(&self) -> Vec<TrainedSummary> {
        LEARNED_QUANTITIES
            .iter()
            .zip(&self.fitted)
            .filter_map(|(q, f)| {
                let f = f.as_ref()?;
                Some(TrainedSummary {
                    quantity: q.name().to_owned(),
                    trained_at: f.trained_at,
                    trained_until: hour_start(f.model.trained_until),
                    hours: f.model.origins,
                    providers_hours: f.corrected.as_ref().map(|c| c.origins),
                })
            })
            .collect()
    }

    /// The document of `runs` (per learned quantity, as [`Place::run`] gives them) from
    /// `origin`.
    fn learned(&self, origin: i64, runs: &[Vec<Run>]) -> Learned {
        let trained = self.trained();
        let runs = Model::ALL
            .iter()
            .filter(|&&model| runs.iter().any(|list| list.iter().any(|r| r.model == model)))
            .map(|&model| {
                let mut hourly: Vec<ModelHour> =
                    (1..=i64::from(HORIZONS)).map(|h| ModelHour::empty(hour_start(origin + h))).collect();
                let mut skill = Vec::new();
                for (q, &quantity) in LEARNED_QUANTITIES.iter().enumerate() {
                    let Some(run) = runs.get(q).and_then(|list| list.iter().find(|r| r.model == model)) else {
                        continue;
                    };
                    for (hour, value) in hourly.iter_mut().zip(&run.values) {
                        hour.set(quantity, value.map(|v| round2(f64::from(v))));
                    }
                    let s = &self.kept.skill[q];
                    skill.push(ModelSkill {
                        quantity: quantity.name().to_owned(),
                        mae: (1..=HORIZONS).map(|h| s.mae(model, h).map(round2)).collect(),
                        verified: (1..=HORIZONS).map(|h| s.verified(model, h) as u32).collect(),
                    });
                }
                ModelRun { model: model.name().to_owned(), hourly, skill }
            })
            .collect();
        let status = if trained.is_empty() { LearnedStatus::Learning } else { LearnedStatus::Trained };
        let detail = match status {
            LearnedStatus::Learning => Some(self.not_trained.clone().unwrap_or_else(|| {
                let need = 14 * 24;
                format!(
                    "not trained yet: the learned models need {need} hours of history with a day before each; until then only the baselines run"
                )
            })),
            LearnedStatus::Trained => {
                // Providers run here, and their correction is not fitted yet: say when it will be.
                let kept = self.issued.iter().map(Issued::len).max().unwrap_or(0);
                let correcting = self.fitted.iter().flatten().any(|f| f.corrected.is_some());
                let waiting = (kept > 0 && !correcting).then(|| {
                    format!(
                        "the providers' blend is corrected for this place (providers_corrected) at the first training with {MIN_ORIGINS} hours of its runs kept; {kept} are"
                    )
                });
                match (self.not_trained.clone(), waiting) {
                    (Some(why), Some(waiting)) => Some(format!("{why}; {waiting}")),
                    (why, waiting) => why.or(waiting),
                }
            }
        };
        Learned { status, detail, issued_at: hour_start(origin), trained, runs }
    }
}

/// The start of an hour since the epoch.
fn hour_start(hour: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(hour * 3600, 0).single().unwrap_or_default()
}

/// A place's stored history, read.
#[derive(Message)]
#[rtype(result = "()")]
struct Backfill {
    id: LocationId,
    /// Its hourly means.
    series: Hourly,
    /// How many readings made them.
    readings: usize,
}

/// A finished training.
#[derive(Message)]
#[rtype(result = "()")]
struct Done {
    id: LocationId,
    fitted: Vec<Result<Arc<Fitted>, NotTrained>>,
    took: Duration,
}

type Waiter = oneshot::Sender<Result<Vec<TrainedSummary>, TrainError>>;

pub struct Forecaster {
    settings: Arc<ForecasterSettings>,
    places: HashMap<LocationId, Place>,
    queue: VecDeque<LocationId>,
    training: usize,
    /// On-demand trainings waiting for the next training of their place to start.
    waiters: HashMap<LocationId, Vec<Waiter>>,
    /// Those waiting for a training under way.
    running: HashMap<LocationId, Vec<Waiter>>,
    /// Hands each place's runs to its location actor, in order; `None` until connected.
    publisher: Option<Publisher>,
    metrics: Arc<Metrics>,
    /// Places refused since the last warning (the forecaster was full).
    refused: u64,
    /// While full, when to look for an idle place to drop next (not at every message).
    next_eviction: Instant,
}

impl Forecaster {
    pub fn new(settings: ForecasterSettings, metrics: Arc<Metrics>) -> Self {
        if let Some(dir) = &settings.dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            warn!(dir = %dir.display(), error = %e, "cannot create the forecaster's directory: places are not kept");
        }
        Self {
            settings: Arc::new(settings),
            places: HashMap::new(),
            queue: VecDeque::new(),
            training: 0,
            waiters: HashMap::new(),
            running: HashMap::new(),
            publisher: None,
            metrics,
            refused: 0,
            next_eviction: Instant::now(),
        }
    }

    fn file(&self, id: &LocationId, what: &str) -> Option<PathBuf> {
        Some(self.settings.dir.as_ref()?.join(format!("{id}.{what}.json")))
    }

    /// The place of `id`, loaded from its files or new (then its stored history is read);
    /// `None` when the forecaster is full.
    fn place(&mut self, id: &LocationId, position: Position, ctx: &mut Context<Self>) -> Option<&mut Place> {
        if !self.places.contains_key(id) {
            if self.places.len() >= self.settings.max_locations && !self.evict_idle() {
                self.refused += 1;
                return None;
            }
            let mut place = self.load(id, position);
            if place.kept.series.is_empty()
                && let Some(history) = self.settings.history.clone()
            {
                place.backfilling = true;
                let hours = self.settings.history_hours as i64;
                let (id, addr) = (id.clone(), ctx.address());
                actix_rt::spawn(async move {
                    let (series, readings) = read_history(&history, &id, hour_of(Utc::now()) + 1, hours).await;
                    addr.do_send(Backfill { id, series, readings });
                });
            }
            self.places.insert(id.clone(), place);
        }
        let place = self.places.get_mut(id)?;
        place.last_seen = Instant::now();
        Some(place)
    }

    /// Makes room by dropping the place idle longest, if it was idle for two days (looked
    /// for at most once a minute).
    fn evict_idle(&mut self) -> bool {
        if Instant::now() < self.next_eviction {
            return false;
        }
        self.next_eviction = Instant::now() + Duration::from_secs(60);
        let Some(id) = self
            .places
            .iter()
            .filter(|(_, p)| p.last_seen.elapsed() >= IDLE && !p.training)
            .min_by_key(|(_, p)| p.last_seen)
            .map(|(id, _)| id.clone())
        else {
            return false;
        };
        self.save(&id);
        self.places.remove(&id);
        true
    }

    fn load(&self, id: &LocationId, position: Position) -> Place {
        let read = |what: &str| -> Option<Vec<u8>> { std::fs::read(self.file(id, what)?).ok() };
        let kept = read("series")
            .and_then(|bytes| match serde_json::from_slice::<Kept>(&bytes) {
                Ok(mut kept) if kept.skill.len() == LEARNED_QUANTITIES.len() => {
                    // Skill kept by a build with other models is measured again.
                    kept.skill.iter_mut().filter(|s| !s.is_current()).for_each(|s| *s = Skill::default());
                    Some(kept)
                }
                Ok(_) => None,
                Err(e) => {
                    warn!(location = %id, error = %e, "the kept forecast series cannot be read: starting afresh");
                    None
                }
            })
            .unwrap_or_else(|| Kept {
                position,
                series: Hourly::default(),
                skill: vec![Skill::default(); LEARNED_QUANTITIES.len()],
                origin: None,
            });
        let mut place = Place::new(kept);
        place.kept.position = position.or(place.kept.position);
        if let Some(bytes) = read("providers") {
            match serde_json::from_slice::<Vec<Issued>>(&bytes) {
                Ok(issued) if issued.len() == LEARNED_QUANTITIES.len() => place.issued = issued,
                Ok(_) => {}
                Err(e) => {
                    warn!(location = %id, error = %e, "the kept providers' runs cannot be read: keeping them afresh")
                }
            }
        }
        if let Some(bytes) = read("models") {
            match serde_json::from_slice::<Vec<Option<Fitted>>>(&bytes) {
                Ok(fitted) if fitted.len() == LEARNED_QUANTITIES.len() => {
                    // Models fitted on another version's features are trained again.
                    place.fitted = fitted
                        .into_iter()
                        .map(|f| {
                            let mut f = f.filter(|f| f.model.is_current())?;
                            f.corrected = f.corrected.filter(Corrected::is_current);
                            Some(Arc::new(f))
                        })
                        .collect();
                }
                Ok(_) => {}
                Err(e) => warn!(location = %id, error = %e, "the kept models cannot be read: training again"),
            }
        }
        place
    }

    /// Writes a place's series and skill, and the providers' runs, where changed (its
    /// models are written when fitted).
    fn save(&mut self, id: &LocationId) {
        let (Some(series), Some(issued)) = (self.file(id, "series"), self.file(id, "providers")) else { return };
        let Some(place) = self.places.get_mut(id) else { return };
        if place.dirty {
            place.dirty = false;
            match serde_json::to_vec(&place.kept) {
                Ok(bytes) => write_atomically(&series, &bytes),
                Err(e) => warn!(location = %id, error = %e, "cannot encode the forecast series"),
            }
        }
        if place.issued_dirty {
            place.issued_dirty = false;
            match serde_json::to_vec(&place.issued) {
                Ok(bytes) => write_atomically(&issued, &bytes),
                Err(e) => warn!(location = %id, error = %e, "cannot encode the providers' runs"),
            }
        }
    }

    fn observe(&mut self, msg: Observed, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let max_hours = settings.history_hours;
        let Some(place) = self.place(&msg.id, msg.position, ctx) else { return };
        place.kept.series.merge(msg.hour, &msg.means, max_hours);
        place.dirty = true;
        let Some(origin) = Some(msg.hour).filter(|&h| msg.closed && place.kept.origin.is_none_or(|o| h > o)) else {
            return;
        };
        place.kept.origin = Some(origin);
        let runs = place.run(origin, true);
        let learned = place.learned(origin, &runs);
        let retrain = settings.retrain_hours;
        let missing = place.fitted.iter().any(Option::is_none);
        let due = !place.training
            && !place.backfilling
            && origin >= place.retry_from
            && (place.trained_until().is_some_and(|until| origin - until >= i64::from(retrain))
                || (missing && enough_history(&place.kept.series, settings.models.min_hours)));
        publish(&self.publisher, msg.id.clone(), learned);
        if due && !self.queue.contains(&msg.id) {
            self.queue.push_back(msg.id);
            self.pump(ctx);
        }
    }

    /// Starts queued trainings while fewer than `train_concurrency` run.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.training < self.settings.train_concurrency {
            let Some(id) = self.queue.pop_front() else { return };
            let Some(place) = self.places.get_mut(&id) else { continue };
            place.training = true;
            self.training += 1;
            if let Some(waiters) = self.waiters.remove(&id) {
                self.running.insert(id.clone(), waiters);
            }
            let series = place.kept.series.clone();
            let issued = place.issued.clone();
            let position = place.kept.position;
            let settings = self.settings.clone();
            let path = self.file(&id, "models");
            let addr = ctx.address();
            actix_rt::spawn(async move {
                let started = Instant::now();
                let job =
                    actix_rt::task::spawn_blocking(move || train_place(&series, &issued, position, &settings, path));
                let fitted = job.await.unwrap_or_else(|e| {
                    LEARNED_QUANTITIES
                        .iter()
                        .map(|_| Err(NotTrained::Failed(format!("training panicked: {e}"))))
                        .collect()
                });
                addr.do_send(Done { id, fitted, took: started.elapsed() });
            });
        }
    }

    fn trained(&mut self, done: Done, ctx: &mut Context<Self>) {
        self.training -= 1;
        self.metrics.forecast_training_seconds.observe(done.took.as_secs_f64());
        let answer = match self.places.get_mut(&done.id) {
            None => Err(TrainError::NotLearned(done.id.clone())),
            Some(place) => {
                place.training = false;
                let mut failures = Vec::new();
                for ((slot, result), quantity) in place.fitted.iter_mut().zip(done.fitted).zip(LEARNED_QUANTITIES) {
                    let outcome = match result {
                        Ok(fitted) => {
                            *slot = Some(fitted);
                            "trained"
                        }
                        Err(e) => {
                            failures.push(e.to_string());
                            "not_trained"
                        }
                    };
                    self.metrics.forecast_trainings.with_label_values(&[quantity.name(), outcome]).inc();
                }
                place.not_trained = (!failures.is_empty()).then(|| failures.join("; "));
                if !failures.is_empty() {
                    place.retry_from = place.kept.origin.map_or(i64::MIN, |o| o + RETRY_HOURS);
                }
                info!(location = %done.id, took_ms = done.took.as_millis() as u64, failures = failures.len(), "forecast models trained");
                if let Some(origin) = place.kept.origin {
                    // The runs of this hour again, with the new models (issued already: not scored twice).
                    let runs = place.run(origin, false);
                    let learned = place.learned(origin, &runs);
                    publish(&self.publisher, done.id.clone(), learned);
                }
                let trained = place.trained();
                match (&place.not_trained, trained.is_empty()) {
                    (Some(why), true) => Err(TrainError::NotTrained(why.clone())),
                    _ => Ok(trained),
                }
            }
        };
        for waiter in self.running.remove(&done.id).unwrap_or_default() {
            let _ = waiter.send(answer.clone());
        }
        if self.waiters.contains_key(&done.id) && !self.queue.contains(&done.id) {
            // Asked for while this one ran, on less than is observed now.
            self.queue.push_front(done.id);
        }
        self.pump(ctx);
    }

    /// Writes changed series.
    fn save_all(&mut self) {
        let ids: Vec<LocationId> =
            self.places.iter().filter(|(_, p)| p.dirty || p.issued_dirty).map(|(id, _)| id.clone()).collect();
        for id in ids {
            self.save(&id);
        }
    }

    /// Sets the gauges.
    fn gauges(&mut self) {
        let trained = self.places.values().filter(|p| p.fitted.iter().any(Option::is_some)).count();
        self.metrics.forecast_places.with_label_values(&["trained"]).set(trained as i64);
        self.metrics.forecast_places.with_label_values(&["learning"]).set((self.places.len() - trained) as i64);
        for model in Model::ALL {
            for (q, quantity) in LEARNED_QUANTITIES.iter().enumerate() {
                for (h, label) in METRIC_HORIZONS {
                    let known: Vec<f64> = self.places.values().filter_map(|p| p.kept.skill[q].mae(model, h)).collect();
                    let labels = [model.name(), quantity.name(), label];
                    if known.is_empty() {
                        let _ = self.metrics.forecast_mae.remove_label_values(&labels);
                    } else {
                        self.metrics
                            .forecast_mae
                            .with_label_values(&labels)
                            .set(known.iter().sum::<f64>() / known.len() as f64);
                    }
                }
            }
        }
        if self.refused > 0 {
            warn!(
                refused = self.refused,
                max = self.settings.max_locations,
                "the forecaster is full (forecast.max_locations): readings of new places were not learned"
            );
            self.refused = 0;
        }
    }
}

type Publisher = tokio::sync::mpsc::UnboundedSender<(LocationId, Learned)>;

/// Starts the task that hands runs to the location actors one after the other, in the
/// order they were issued.
fn publisher(directory: Addr<Directory>) -> Publisher {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(LocationId, Learned)>();
    actix_rt::spawn(async move {
        while let Some((id, learned)) = rx.recv().await {
            if let Ok(Ok(actor)) = directory.send(Resolve { id }).await {
                actor.do_send(ApplyLearned(learned));
            }
        }
    });
    tx
}

/// Hands a place's runs to its location actor.
fn publish(publisher: &Option<Publisher>, id: LocationId, learned: Learned) {
    if let Some(publisher) = publisher {
        let _ = publisher.send((id, learned));
    }
}

/// Hours of stored history read per query: a day of a station reporting every minute is
/// 1,440 readings, where the whole of `forecast.history_hours` in one answer would be
/// parsed whole in memory.
const HISTORY_CHUNK_HOURS: i64 = 24;

/// The hourly means of what InfluxDB stores of `id` in the `hours` hours before `until`
/// (an hour since the epoch, not included), and how many readings made them. Read a day
/// at a time, newest first: a query that fails keeps the newer days already read.
async fn read_history(history: &Recipient<QueryHistory>, id: &LocationId, until: i64, hours: i64) -> (Hourly, usize) {
    let (mut series, mut count) = (Hourly::default(), 0);
    let mut end = until;
    while end > until - hours {
        let start = (end - HISTORY_CHUNK_HOURS).max(until - hours);
        let query = QueryHistory {
            id: id.clone(),
            from: hour_start(start),
            // The range includes both ends; the next query's hour starts a millisecond later.
            to: hour_start(end) - chrono::Duration::milliseconds(1),
            step_secs: None,
        };
        let readings = match history.send(query).await {
            Ok(Some(Ok(readings))) => readings,
            Ok(Some(Err(e))) => {
                warn!(location = %id, error = %e, read_from = %hour_start(end), "cannot read the stored history: learning from what was read and new readings");
                break;
            }
            _ => break,
        };
        count += readings.len();
        if !readings.is_empty() {
            let day = Hourly::from_observations(readings.iter().map(|r| (r.observed_at, &r.values)));
            series.prepend(day, usize::MAX);
        }
        end = start;
    }
    (series, count)
}

/// Whether a series may have enough hours to train on (the training says for sure): the
/// origins are its hours after the first day and before the last one.
fn enough_history(series: &Hourly, min_hours: usize) -> bool {
    let Some(end) = series.end() else { return false };
    let observed = (series.start..=end).filter(|&h| series.get(h, Column::Temperature).is_some()).count();
    observed > min_hours + 24
}

/// Fits every learned quantity of a place (on the blocking pool), and the correction of
/// the providers' runs `issued` (per learned quantity) where a week of them is kept, and
/// writes the models.
fn train_place(
    series: &Hourly,
    issued: &[Issued],
    position: Position,
    settings: &ForecasterSettings,
    path: Option<PathBuf>,
) -> Vec<Result<Arc<Fitted>, NotTrained>> {
    let fitted: Vec<Result<Arc<Fitted>, NotTrained>> = LEARNED_QUANTITIES
        .iter()
        .zip(issued)
        .map(|(&quantity, issued)| {
            let model = models::train(series, quantity, position, &settings.models)?;
            let corrected = Corrected::fit(series, issued, quantity, position, &settings.models);
            Ok(Arc::new(Fitted { trained_at: Utc::now(), model, corrected }))
        })
        .collect();
    if let Some(path) = path {
        let kept: Vec<Option<&Fitted>> = fitted.iter().map(|f| f.as_ref().ok().map(|f| &**f)).collect();
        match serde_json::to_vec(&kept) {
            Ok(bytes) => write_atomically(&path, &bytes),
            Err(e) => warn!(error = %e, "cannot encode the fitted models"),
        }
    }
    fitted
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("json.tmp");
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        warn!(path = %path.display(), error = %e, "cannot write a forecaster file");
    }
}

impl Actor for Forecaster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(60), |this, _| this.save_all());
        ctx.run_interval(Duration::from_secs(5), |this, _| this.gauges());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.save_all();
    }
}

impl Handler<Observed> for Forecaster {
    type Result = ();

    fn handle(&mut self, msg: Observed, ctx: &mut Self::Context) {
        self.observe(msg, ctx);
    }
}

impl Handler<ProvidersBlend> for Forecaster {
    type Result = ();

    fn handle(&mut self, msg: ProvidersBlend, _: &mut Self::Context) {
        if let Some(place) = self.places.get_mut(&msg.id) {
            place.providers = msg.hours;
        }
    }
}

impl Handler<Connect> for Forecaster {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        self.publisher = Some(publisher(msg.directory));
    }
}

impl Handler<Backfill> for Forecaster {
    type Result = ();

    fn handle(&mut self, msg: Backfill, ctx: &mut Self::Context) {
        let Some(place) = self.places.get_mut(&msg.id) else { return };
        place.backfilling = false;
        let hours = msg.series.len();
        place.kept.series.prepend(msg.series, self.settings.history_hours);
        place.dirty = true;
        info!(location = %msg.id, readings = msg.readings, hours, "forecaster: stored history read");
        if place.fitted.iter().all(Option::is_none)
            && enough_history(&place.kept.series, self.settings.models.min_hours)
            && !self.queue.contains(&msg.id)
        {
            self.queue.push_back(msg.id);
            self.pump(ctx);
        }
    }
}

impl Handler<Done> for Forecaster {
    type Result = ();

    fn handle(&mut self, msg: Done, ctx: &mut Self::Context) {
        self.trained(msg, ctx);
    }
}

impl Handler<TrainNow> for Forecaster {
    type Result = ResponseFuture<Result<Vec<TrainedSummary>, TrainError>>;

    fn handle(&mut self, msg: TrainNow, ctx: &mut Self::Context) -> Self::Result {
        let Some(place) = self.places.get_mut(&msg.id) else {
            return Box::pin(async move { Err(TrainError::NotLearned(msg.id)) });
        };
        if !place.training {
            self.queue.retain(|id| *id != msg.id);
            self.queue.push_front(msg.id.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(msg.id).or_default().push(tx);
        self.pump(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(TrainError::Stopped)) })
    }
}

/// Writes every changed series now (at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveAll;

impl Handler<SaveAll> for Forecaster {
    type Result = ();

    fn handle(&mut self, _: SaveAll, _: &mut Self::Context) {
        self.save_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::forecast::boost::Boosting;
    use crate::analytics::forecast::forest::Forestry;
    use crate::analytics::forecast::mlp::Training;
    use crate::analytics::forecast::testing::{self, KEWR};
    use crate::domain::{Quantity, SourceName};
    use crate::store::StoreError;

    /// Answers history queries from a list of readings, as the persister does from
    /// InfluxDB (both ends of the range included), and notes each range asked for; fails
    /// every query of a range starting before `fail_before`.
    struct Stored {
        readings: Vec<Reading>,
        asked: Vec<(DateTime<Utc>, DateTime<Utc>)>,
        fail_before: DateTime<Utc>,
    }

    impl Actor for Stored {
        type Context = Context<Self>;
    }

    impl Handler<QueryHistory> for Stored {
        type Result = Option<Result<Vec<Reading>, StoreError>>;

        fn handle(&mut self, q: QueryHistory, _: &mut Self::Context) -> Self::Result {
            self.asked.push((q.from, q.to));
            if q.from < self.fail_before {
                return Some(Err(StoreError::Influx("timeout".into())));
            }
            Some(Ok(self
                .readings
                .iter()
                .filter(|r| r.observed_at >= q.from && r.observed_at <= q.to)
                .cloned()
                .collect()))
        }
    }

    #[derive(Message)]
    #[rtype(result = "Vec<(DateTime<Utc>, DateTime<Utc>)>")]
    struct Asked;

    impl Handler<Asked> for Stored {
        type Result = Vec<(DateTime<Utc>, DateTime<Utc>)>;

        fn handle(&mut self, _: Asked, _: &mut Self::Context) -> Self::Result {
            std::mem::take(&mut self.asked)
        }
    }

    /// The stored history is read a day at a time, newest first: every reading counted
    /// once (one on the hour at a day's edge too), and a failed query keeps the newer days.
    #[actix_rt::test]
    async fn the_stored_history_is_read_a_day_at_a_time_and_a_failure_keeps_the_newer_days() {
        let id = LocationId::parse("KEWR").unwrap();
        let until = 500_000; // hours since the epoch
        // A reading every 20 minutes over the last three days, 10 °C, and 20 °C on the
        // hour that starts the last day.
        let mut readings = stored_readings(&id, until);
        let edge = readings.iter_mut().find(|r| r.observed_at == hour_start(until - 24)).unwrap();
        edge.set(Quantity::Temperature, Some(20.0));
        let stored = Stored { readings, asked: Vec::new(), fail_before: DateTime::<Utc>::MIN_UTC }.start();
        let (series, count) = read_history(&stored.clone().recipient(), &id, until, 80).await;
        assert_eq!((count, series.start, series.len()), (216, until - 72, 72));
        // The hour at the edge holds its three readings once: (20 + 10 + 10) / 3.
        assert_eq!(series.get(until - 24, Column::Temperature), Some(40.0 / 3.0));
        assert_eq!(series.get(until - 25, Column::Temperature), Some(10.0));
        let asked = stored.send(Asked).await.unwrap();
        let ms = chrono::Duration::milliseconds(1);
        assert_eq!(
            asked,
            [
                (hour_start(until - 24), hour_start(until) - ms),
                (hour_start(until - 48), hour_start(until - 24) - ms),
                (hour_start(until - 72), hour_start(until - 48) - ms),
                (hour_start(until - 80), hour_start(until - 72) - ms),
            ]
        );

        // The second day's query fails: the newest day is kept, nothing older is asked.
        let failing =
            Stored { readings: stored_readings(&id, until), asked: Vec::new(), fail_before: hour_start(until - 24) }
                .start();
        let (series, count) = read_history(&failing.clone().recipient(), &id, until, 80).await;
        assert_eq!((count, series.start, series.len()), (72, until - 24, 24));
        assert_eq!(failing.send(Asked).await.unwrap().len(), 2);
    }

    /// A reading every 20 minutes over the three days before `until`.
    fn stored_readings(id: &LocationId, until: i64) -> Vec<Reading> {
        (0..3 * 72)
            .map(|k| {
                let at = hour_start(until - 72) + chrono::Duration::minutes(20 * k);
                let mut r = Reading::new(id.clone(), SourceName::parse("station").unwrap(), at);
                r.set(Quantity::Temperature, Some(10.0));
                r
            })
            .collect()
    }

    /// KEWR's real hours from 2013-04-01 for `days` days.
    fn kewr(days: i64) -> Hourly {
        testing::kewr(90, days)
    }

    /// The providers' blend as a place gets it: each hour, the next 30 hours, here 1.2 °C
    /// warmer than KEWR then was (a blend off at this spot by as much every hour).
    fn blend_at(series: &Hourly, origin: i64) -> Vec<(i64, [Option<f32>; 4])> {
        (origin..origin + 30)
            .map(|hour| (hour, [series.get(hour, Column::Temperature).map(|t| t + 1.2), None, None, None]))
            .collect()
    }

    /// A place keeps the providers' run of every completed hour; after four weeks of them
    /// a training fits their correction, which `/forecast` then serves as
    /// `providers_corrected`, close to what was observed where the blend was 1.2 °C off;
    /// the runs and the correction are kept across a restart.
    #[test]
    fn the_providers_runs_are_kept_per_origin_and_their_correction_is_learned_served_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let series = kewr(40);
        let (start, end) = (series.start, series.end().unwrap());
        let settings = ForecasterSettings {
            max_locations: 4,
            history_hours: 90 * 24,
            retrain_hours: 24,
            train_concurrency: 1,
            dir: Some(dir.path().to_owned()),
            history: None,
            // Small models: what is tested is what is kept and served, not how well they learn.
            models: models::Settings {
                forest: Forestry { trees: 4, ..Forestry::default() },
                mlp: Training { epochs: 2, ..Training::default() },
                boosting: Boosting { trees: 10, ..Boosting::default() },
                ..Default::default()
            },
        };
        let mut forecaster = Forecaster::new(settings, Arc::new(Metrics::new()));
        let id = LocationId::parse("KEWR").unwrap();
        let mut place = forecaster.load(&id, KEWR);
        place.kept.series = series.clone();
        let last = end - 24;
        for origin in start + 240..=last {
            place.providers = blend_at(&series, origin);
            place.run(origin, true);
        }
        // Four weeks of origins are kept (29 days were issued), temperature's only.
        assert_eq!(place.issued.iter().map(Issued::len).collect::<Vec<_>>(), [672, 0, 0, 0]);
        assert_eq!(place.issued[0].at(last, 3), series.get(last + 3, Column::Temperature).map(|t| t + 1.2));

        // Trained without the correction (as before the runs were kept): the detail says
        // when it comes.
        let fitted = train_place(
            &place.kept.series,
            &[Issued::default(), Issued::default(), Issued::default(), Issued::default()],
            KEWR,
            &forecaster.settings,
            None,
        );
        place.fitted = fitted.into_iter().map(Result::ok).collect();
        let runs = place.run(last, false);
        let learned = place.learned(last, &runs);
        assert_eq!(
            learned.detail.as_deref(),
            Some(
                "the providers' blend is corrected for this place (providers_corrected) at the first training with 168 hours of its runs kept; 672 are"
            )
        );
        let path = forecaster.file(&id, "models");
        let fitted = train_place(&place.kept.series, &place.issued, KEWR, &forecaster.settings, path);
        place.fitted = fitted.into_iter().map(Result::ok).collect();
        let runs = place.run(last, false);
        let temperature = |model: Model| runs[0].iter().find(|r| r.model == model).unwrap();
        let error = |run: &Run| {
            let pairs: Vec<f32> = (1..=24)
                .filter_map(|h| Some((run.values[h - 1]? - series.get(last + h as i64, Column::Temperature)?).abs()))
                .collect();
            pairs.iter().sum::<f32>() / pairs.len() as f32
        };
        assert!((error(temperature(Model::Providers)) - 1.2).abs() < 1e-4);
        let corrected = error(temperature(Model::ProvidersCorrected));
        assert!(corrected < 0.3, "{corrected}");
        // Humidity has no providers' runs: no correction.
        assert!(runs[1].iter().all(|r| r.model != Model::ProvidersCorrected));
        let learned = place.learned(last, &runs);
        assert!(learned.runs.iter().any(|r| r.model == "providers_corrected"));
        assert_eq!(learned.trained[0].providers_hours, Some(672));
        assert_eq!(learned.trained[1].providers_hours, None);
        assert_eq!(learned.detail, None);

        place.issued_dirty = true;
        forecaster.places.insert(id.clone(), place);
        forecaster.save(&id);
        let again = forecaster.load(&id, KEWR);
        assert_eq!(again.issued[0].len(), 672);
        assert_eq!(again.issued[0].at(last, 3), series.get(last + 3, Column::Temperature).map(|t| t + 1.2));
        let kept = again.fitted[0].as_ref().and_then(|f| f.corrected.as_ref()).map(|c| c.origins);
        assert_eq!(kept, Some(672));
    }
}
