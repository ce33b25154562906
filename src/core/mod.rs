//! `LocationCore`: one location's state and rules, with no actors and no I/O.
//!
//! It owns the recent readings (a bounded ring, deduplicated by source and time), the
//! latest reading of each source, which sources are failing, the consensus on show, the
//! providers' forecast runs and their blend. Every change it makes comes back to the
//! caller as typed [`LocationEvent`]s, which the `LocationActor` hands to its sinks; the
//! core never formats a wire message and never talks to anything.
//!
//! Per-location analytics plug in through [`Analysis`]: each gets every applied reading,
//! every consensus change and every new blend, and may add events of its own.

pub mod air;
pub mod events;
pub mod state;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use self::events::{
    AirQualityUpdate, AnomalyState, AnomalyUpdate, ForecastUpdate, LocationEvent, Update, Validators,
};
pub use self::state::{Ingested, LocationState, Retention, Snapshot};
use crate::analytics::anomaly::{Change, Profiles, Watch};
use crate::analytics::{ConsensusSettings, blend, consensus, with_learned};
use crate::domain::{
    AirQualitySummary, AirReport, Anomaly, AnomalyKind, Current, Forecast, ForecastRun, Learned, Location, LocationId,
    LocationRef, Reading, SourceName,
};

/// How long a consensus on show stays valid without a change before ages and the stale
/// flag are recomputed (the /current views are served this long without an actor).
pub const RENDER_TTL: Duration = Duration::from_secs(1);

/// The rules every location core follows; shared by all of them.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub retention: Retention,
    /// A source whose latest reading is older than this stops counting.
    pub stale_after_secs: u64,
    /// Weight multiplier per source name (1.0 when unlisted).
    pub trust: BTreeMap<String, f64>,
    /// Robust z-score above which a source's value is an outlier.
    pub outlier_threshold: f64,
    /// How long a shown consensus stays valid without a change before ages and the
    /// stale flag are recomputed.
    pub render_ttl: Duration,
    /// Keep applied readings for an [`LocationEvent::Applied`] (a sink stores history).
    pub keep_applied: bool,
    /// Anomaly detection; `None` when it is off.
    pub anomalies: Option<AnomalyRules>,
}

/// How a location core looks for anomalies.
#[derive(Debug, Clone)]
pub struct AnomalyRules {
    /// The detectors' settings per quantity, shared by every location.
    pub detectors: Arc<Profiles>,
    /// Kinds whose flagged values are left out of the consensus while active.
    pub exclude: Vec<AnomalyKind>,
    /// Anomalies kept (started and ended, newest last) for the anomaly history.
    pub history: usize,
}

/// A per-location analysis run by the core (anomaly detection, learned forecasts, air
/// quality). Every hook has a default that does nothing.
pub trait Analysis: Send {
    /// A reading this location just applied, with the state it was applied to (its
    /// ring and the latest reading per source).
    fn on_reading(&mut self, reading: &Reading, state: &LocationState, out: &mut Vec<LocationEvent>) {
        let _ = (reading, state, out);
    }

    /// The consensus changed.
    fn on_update(&mut self, update: &Update, out: &mut Vec<LocationEvent>) {
        let _ = (update, out);
    }

    /// The forecast blend changed.
    fn on_forecast(&mut self, forecast: &Forecast, out: &mut Vec<LocationEvent>) {
        let _ = (forecast, out);
    }
}

pub struct LocationCore {
    location: Arc<Location>,
    settings: Arc<CoreSettings>,
    state: LocationState,
    /// Sources whose last refresh failed: they do not count as fresh.
    failing: Vec<SourceName>,
    /// The consensus on show; `None` until the first reading.
    shown: Option<Arc<Update>>,
    /// `shown` is another instance's update (this one does not own the location): shown
    /// as received, never recomputed from the local state.
    remote: bool,
    /// The latest run of each forecast provider.
    runs: Vec<ForecastRun>,
    /// Their blend, recomputed when a run arrives.
    /// Boxed: most locations (stations) never get a provider's run, and 50,000 are held.
    blended: Option<Box<Forecast>>,
    /// What the models learned from this place's history say, when a forecaster learns it.
    learned: Option<Learned>,
    /// The forecast on show: the blend with the learned models.
    forecast: Option<Arc<Forecast>>,
    /// Changed since the last snapshot was taken.
    dirty: bool,
    analyses: Vec<Box<dyn Analysis>>,
    /// The anomaly detectors, when on.
    watch: Option<Watch>,
    /// Recent anomalies, oldest first (an ended one updated in place).
    anomalies: VecDeque<Anomaly>,
    /// The air quality the watch last told, shown in the consensus.
    air_quality: Option<AirQualitySummary>,
    /// The latest report of each air-quality provider (its own index and forecast).
    air_reports: Vec<Arc<AirReport>>,
}

impl LocationCore {
    pub fn new(location: Arc<Location>, settings: Arc<CoreSettings>, analyses: Vec<Box<dyn Analysis>>) -> Self {
        Self {
            location,
            state: LocationState::default(),
            failing: Vec::new(),
            shown: None,
            remote: false,
            runs: Vec::new(),
            blended: None,
            learned: None,
            forecast: None,
            dirty: false,
            analyses,
            watch: settings.anomalies.as_ref().map(|rules| Watch::new(rules.detectors.clone())),
            anomalies: VecDeque::new(),
            air_quality: None,
            air_reports: Vec::new(),
            settings,
        }
    }

    pub fn id(&self) -> &LocationId {
        &self.location.id
    }

    /// Sequence number of the last update.
    pub fn seq(&self) -> u64 {
        self.state.seq
    }

    /// Whether anything changed since the last snapshot (or since the start).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The consensus on show, if any.
    pub fn shown(&self) -> Option<&Arc<Update>> {
        self.shown.as_ref()
    }

    /// The forecast (metric, every hour held): the providers' blend with the learned
    /// models, once a provider sent a run or the models issued one.
    pub fn forecast(&self) -> Option<&Arc<Forecast>> {
        self.forecast.as_ref()
    }

    /// Recent anomalies that started in [from, to], oldest first.
    pub fn anomalies(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Anomaly> {
        self.anomalies.iter().filter(|a| (from..=to).contains(&a.started_at)).cloned().collect()
    }

    /// Stored readings with `from <= observed_at <= to`, oldest first.
    pub fn history(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Reading> {
        self.state.history(from, to)
    }

    /// Applies validated readings of this location, taking them out of `pending` in
    /// order; should this panic, `pending` keeps exactly those not applied yet, last
    /// first. `observe` hears what happened to each (for the metrics).
    pub fn ingest(
        &mut self,
        pending: &mut Vec<Reading>,
        now: DateTime<Utc>,
        mut observe: impl FnMut(&SourceName, Ingested),
    ) -> Vec<LocationEvent> {
        pending.reverse();
        // Fault injection (the `failpoints` feature): before anything changes, so a
        // panic here leaves the state as it was and every reading pending.
        fail::fail_point!("location-apply");
        // Marked before anything changes, so that what a panic leaves applied is saved.
        self.dirty = true;
        let mut events = Vec::new();
        let keep = self.settings.keep_applied;
        let mut applied = Vec::new();
        let mut latest_changed = false;
        let mut changes = Vec::new();
        while let Some(reading) = pending.pop() {
            self.failing.retain(|s| *s != reading.source);
            let copy = (keep || !self.analyses.is_empty()).then(|| reading.clone());
            let source = reading.source.clone();
            let outcome = self.state.ingest(reading, now, self.settings.retention);
            observe(&source, outcome);
            // A reading delivered again (Kafka's redelivery after a crash, a client's
            // retry) goes to the history again: the instance that first applied it may
            // have died before its write, and its state (restored here) already holding
            // the reading says nothing of the history. InfluxDB keeps one point per
            // location, source and time, so the rewrite changes nothing when it was there.
            if outcome == Ingested::Duplicate
                && keep
                && let Some(copy) = copy
            {
                applied.push(copy);
                continue;
            }
            if !matches!(outcome, Ingested::Latest | Ingested::Stored) {
                continue;
            }
            latest_changed |= outcome == Ingested::Latest;
            if let (Some(watch), Ingested::Latest) = (self.watch.as_mut(), outcome) {
                let latest = self.state.latest();
                if let Some(reading) = latest.iter().find(|r| r.source == source) {
                    watch.observe(reading, latest, &mut changes);
                }
            }
            if let Some(copy) = copy {
                for analysis in &mut self.analyses {
                    analysis.on_reading(&copy, &self.state, &mut events);
                }
                if keep {
                    applied.push(copy);
                }
            }
        }
        if let Some(told) = events.iter().rev().find_map(|e| match e {
            LocationEvent::AirQuality(update) => Some(update.air_quality.summary()),
            _ => None,
        }) {
            self.air_quality = Some(told);
        }
        if !applied.is_empty() {
            events.insert(0, LocationEvent::Applied(applied.into()));
        }
        for change in changes {
            events.push(self.record(change));
        }
        if latest_changed {
            events.extend(self.recompute(Some(now), now));
        }
        self.after_update(&mut events);
        events
    }

    /// Keeps an anomaly that started or ended in the history; its event.
    fn record(&mut self, change: Change) -> LocationEvent {
        let (state, anomaly) = match change {
            Change::Started(a) => (AnomalyState::Started, a),
            Change::Ended(a) => (AnomalyState::Ended, a),
        };
        let limit = self.settings.anomalies.as_ref().map_or(0, |rules| rules.history);
        match self.anomalies.iter_mut().rev().find(|a| a.id == anomaly.id) {
            Some(kept) => *kept = anomaly.clone(),
            None if limit > 0 => {
                if self.anomalies.len() >= limit {
                    self.anomalies.pop_front();
                }
                // Most places keep none or one.
                crate::growth::grow_by_quarter(&mut self.anomalies, 1, 1, usize::MAX);
                self.anomalies.push_back(anomaly.clone());
            }
            None => {}
        }
        LocationEvent::Anomaly(Arc::new(AnomalyUpdate::new(self.id().clone(), state, anomaly)))
    }

    /// A provider's new forecast run: re-blends; an event when the blend changed.
    pub fn apply_forecast(&mut self, run: ForecastRun, now: DateTime<Utc>) -> Vec<LocationEvent> {
        self.runs.retain(|r| r.name != run.name);
        self.runs.push(run);
        let blended = blend(LocationRef::from(&*self.location), &self.runs, now);
        let changed = self.blended.as_ref().is_none_or(|f| f.hourly != blended.hourly);
        let mut events = Vec::new();
        if changed {
            for analysis in &mut self.analyses {
                analysis.on_forecast(&blended, &mut events);
            }
        }
        self.blended = Some(Box::new(blended));
        if changed {
            events.insert(0, self.show_forecast(now));
        }
        events
    }

    /// An air-quality provider's report, in place of its previous one.
    pub fn apply_air_report(&mut self, report: AirReport) {
        match self.air_reports.iter_mut().find(|r| r.source == report.source) {
            Some(kept) => *kept = Arc::new(report),
            None => self.air_reports.push(Arc::new(report)),
        }
    }

    /// The latest report of each air-quality provider, in the order they first came.
    pub fn air_reports(&self) -> &[Arc<AirReport>] {
        &self.air_reports
    }

    /// The learned models' latest runs: an event when they changed.
    pub fn apply_learned(&mut self, learned: Learned, now: DateTime<Utc>) -> Vec<LocationEvent> {
        // Runs older than those on show (a message overtaken by a later one) are stale.
        if self.learned.as_ref().is_some_and(|shown| *shown == learned || shown.issued_at > learned.issued_at) {
            return Vec::new();
        }
        self.learned = Some(learned);
        vec![self.show_forecast(now)]
    }

    /// Puts the providers' blend and the learned models together as the forecast on show.
    fn show_forecast(&mut self, now: DateTime<Utc>) -> LocationEvent {
        let base = self.blended.as_deref().cloned().unwrap_or_else(|| Forecast {
            location: LocationRef::from(&*self.location),
            generated_at: now,
            units: crate::domain::Units::Metric,
            hourly: Vec::new(),
            sources: Vec::new(),
            models: None,
        });
        let shown = Arc::new(match &self.learned {
            Some(learned) => with_learned(base, learned),
            None => base,
        });
        self.forecast = Some(shown.clone());
        LocationEvent::Forecast(Arc::new(ForecastUpdate::new(self.id().clone(), shown)))
    }

    /// Whether a source's last refresh worked; a failing source stops counting as fresh.
    pub fn source_health(&mut self, source: SourceName, ok: bool, now: DateTime<Utc>) -> Vec<LocationEvent> {
        let was_failing = self.failing.contains(&source);
        match (ok, was_failing) {
            (false, false) => self.failing.push(source),
            (true, true) => self.failing.retain(|s| *s != source),
            _ => return Vec::new(),
        }
        let mut events: Vec<LocationEvent> = self.recompute(Some(now), now).into_iter().collect();
        self.after_update(&mut events);
        events
    }

    /// Recomputes ages and the stale flag when the consensus on show is older than the
    /// render TTL (not for another instance's update, which is shown as received).
    pub fn refresh(&mut self, now: DateTime<Utc>) -> Option<LocationEvent> {
        let old = self.shown.as_ref().is_some_and(|u| u.computed_at.elapsed() >= self.settings.render_ttl);
        if self.remote || !old {
            return None;
        }
        self.recompute(None, now)
    }

    /// Another instance's update of this location, shown when newer than this core's.
    pub fn show_remote(&mut self, seq: u64, current: Current, now: DateTime<Utc>) -> Option<LocationEvent> {
        if seq <= self.state.seq {
            return None;
        }
        self.state.seq = seq;
        self.remote = true;
        let update = Arc::new(Update::new(self.id().clone(), seq, now, current));
        self.shown = Some(update.clone());
        Some(LocationEvent::Refreshed(update))
    }

    /// The state as it is now, for the store; clears the dirty mark.
    pub fn take_snapshot(&mut self) -> (Arc<Snapshot>, Option<Current>) {
        self.dirty = false;
        let snapshot = Arc::new(self.state.snapshot(self.id().clone()));
        (snapshot, self.shown.as_ref().map(|u| u.current.clone()))
    }

    /// Takes a stored snapshot as this location's state; readings applied here before
    /// it could be read are kept on top of it.
    pub fn restore(&mut self, snapshot: &Snapshot, now: DateTime<Utc>) -> Option<LocationEvent> {
        let local = std::mem::take(&mut self.state);
        let applied_here = !local.is_empty() || !local.latest().is_empty();
        self.state = local.merged_into(snapshot, now, self.settings.retention);
        if let Some(watch) = &mut self.watch {
            watch.warm(&self.state.history(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC));
        }
        if applied_here {
            // The merge is news to the store.
            self.dirty = true;
        }
        self.recompute(None, now)
    }

    /// The owner epoch of this location's state (see `Snapshot::epoch`): set once the
    /// store was read, above the epoch of what it held.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.state.epoch = epoch;
    }

    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// Recomputes the consensus. With `changed_at` (a change happened then) a consensus
    /// that differs from the one on show is a new `seq` and an [`LocationEvent::Update`];
    /// anything else is shown anew as [`LocationEvent::Refreshed`].
    fn recompute(&mut self, changed_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<LocationEvent> {
        let settings = ConsensusSettings {
            stale_after_secs: self.settings.stale_after_secs,
            trust: &self.settings.trust,
            outlier_threshold: self.settings.outlier_threshold,
            anomalies: self.watch.as_ref().map_or(&[], |w| w.active()),
            exclude: self.settings.anomalies.as_ref().map_or(&[], |rules| &rules.exclude),
        };
        let location = LocationRef::from(&*self.location);
        let Some(mut current) = consensus(location, self.state.latest(), &self.failing, now, settings) else {
            self.shown = None;
            return None;
        };
        current.air_quality = self.air_quality.clone();
        let changed = self.shown.as_ref().is_none_or(|u| !same_conditions(&u.current, &current));
        let new_seq = changed && changed_at.is_some();
        if new_seq {
            self.state.seq += 1;
        }
        let changed_at = match (&self.shown, changed_at) {
            (Some(u), _) if !changed => u.changed_at,
            (_, Some(t)) => t,
            (_, None) => current.observed_at,
        };
        self.remote = false;
        let update = Arc::new(Update::new(self.id().clone(), self.state.seq, changed_at, current));
        self.shown = Some(update.clone());
        Some(if new_seq { LocationEvent::Update(update) } else { LocationEvent::Refreshed(update) })
    }

    /// Lets the analyses see a consensus change among `events`.
    fn after_update(&mut self, events: &mut Vec<LocationEvent>) {
        if self.analyses.is_empty() {
            return;
        }
        let updates: Vec<Arc<Update>> = events
            .iter()
            .filter_map(|e| match e {
                LocationEvent::Update(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        for update in updates {
            for analysis in &mut self.analyses {
                analysis.on_update(&update, events);
            }
        }
    }
}

/// Whether two consensus documents show the same conditions: everything but what only
/// moves with the clock (ages, age-derived weights, quality score). Compared field by
/// field, without copying either document.
fn same_conditions(a: &Current, b: &Current) -> bool {
    let sources_match = a.sources.len() == b.sources.len()
        && a.sources.iter().zip(&b.sources).all(|(x, y)| {
            x.name == y.name
                && x.observed_at == y.observed_at
                && x.temperature == y.temperature
                && x.outlier == y.outlier
        });
    a.values == b.values
        && a.observed_at == b.observed_at
        && a.weather_code == b.weather_code
        && a.sources_count == b.sources_count
        && a.confidence == b.confidence
        && a.stale == b.stale
        && a.anomalies == b.anomalies
        && a.air_quality == b.air_quality
        && sources_match
}

/// A hash of what [`same_conditions`] compares, stable across processes of one build.
fn conditions_hash(c: &Current) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    c.location.id.hash(&mut h);
    for (_, value) in c.values.iter() {
        value.map(f64::to_bits).hash(&mut h);
    }
    c.observed_at.hash(&mut h);
    c.weather_code.hash(&mut h);
    c.sources_count.hash(&mut h);
    c.confidence.to_bits().hash(&mut h);
    c.stale.hash(&mut h);
    for s in &c.sources {
        (&s.name, s.observed_at, s.temperature.map(f64::to_bits), s.outlier).hash(&mut h);
    }
    for a in &c.anomalies {
        a.id.hash(&mut h);
    }
    c.air_quality.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::anomaly::DetectorSettings;
    use crate::domain::{ForecastHour, LocationKind, Quantity};
    use chrono::Timelike;

    fn location() -> Arc<Location> {
        Arc::new(Location {
            id: LocationId::parse("KJFK").unwrap(),
            name: "John F Kennedy Intl".into(),
            country: "US".into(),
            latitude: 40.64,
            longitude: -73.78,
            timezone: "America/New_York".into(),
            population: None,
            elevation: None,
            kind: LocationKind::Station,
        })
    }

    fn settings(keep_applied: bool) -> Arc<CoreSettings> {
        Arc::new(CoreSettings {
            retention: Retention { window: chrono::Duration::hours(24), max_readings: 100 },
            stale_after_secs: 7200,
            trust: BTreeMap::new(),
            outlier_threshold: 3.5,
            render_ttl: Duration::from_secs(1),
            keep_applied,
            anomalies: None,
        })
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T09:00:00Z".parse().unwrap()
    }

    fn reading(source: &str, minutes_ago: i64, temperature: f64) -> Reading {
        let mut r = Reading::new(
            LocationId::parse("KJFK").unwrap(),
            SourceName::parse(source).unwrap(),
            now() - chrono::Duration::minutes(minutes_ago),
        );
        r.set(Quantity::Temperature, Some(temperature));
        r
    }

    fn kinds(events: &[LocationEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                LocationEvent::Update(_) => "update",
                LocationEvent::Refreshed(_) => "refreshed",
                LocationEvent::Applied(_) => "applied",
                LocationEvent::Forecast(_) => "forecast",
                LocationEvent::Anomaly(_) => "anomaly",
                LocationEvent::AirQuality(_) => "air_quality",
            })
            .collect()
    }

    #[test]
    fn a_change_is_one_update_with_the_next_seq_and_a_repeat_is_none() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        let events = core.ingest(&mut vec![reading("station", 5, 7.1)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["update"]);
        let LocationEvent::Update(u) = &events[0] else { unreachable!() };
        assert_eq!((u.seq, u.current.values.get(Quantity::Temperature)), (1, Some(7.1)));
        assert_eq!(u.changed_at, now());
        // The same reading again is a duplicate: nothing to tell anyone.
        let mut seen = Vec::new();
        let events = core.ingest(&mut vec![reading("station", 5, 7.1)], now(), |s, o| seen.push((s.to_string(), o)));
        assert!(events.is_empty());
        assert_eq!(seen, [("station".to_owned(), Ingested::Duplicate)]);
        // A newer reading with the same values is still a change: its time moved on.
        let events = core.ingest(&mut vec![reading("station", 1, 7.1)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["update"]);
        assert_eq!(core.seq(), 2);
    }

    #[test]
    fn equal_conditions_have_one_version_whatever_their_seq_and_ages() {
        let mut a = LocationCore::new(location(), settings(false), Vec::new());
        let mut b = LocationCore::new(location(), settings(false), Vec::new());
        a.ingest(&mut vec![reading("station", 30, 7.1)], now(), |_, _| {});
        a.ingest(&mut vec![reading("station", 5, 7.1)], now(), |_, _| {});
        b.ingest(&mut vec![reading("station", 5, 7.1)], now() + chrono::Duration::minutes(3), |_, _| {});
        let (ua, ub) = (a.shown().unwrap(), b.shown().unwrap());
        assert_eq!((ua.seq, ub.seq), (2, 1));
        assert_ne!(ua.current.sources[0].age_seconds, ub.current.sources[0].age_seconds);
        assert_eq!(ua.version(), ub.version());
        b.ingest(&mut vec![reading("station", 4, 7.2)], now(), |_, _| {});
        assert_ne!(b.shown().unwrap().version(), ua.version());
    }

    #[test]
    fn the_update_document_is_serialized_once_and_shared() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        let events = core.ingest(&mut vec![reading("station", 5, 7.1)], now(), |_, _| {});
        let LocationEvent::Update(u) = &events[0] else { unreachable!() };
        let first = u.body(crate::domain::Units::Metric);
        assert!(first.starts_with(r#"{"location":{"id":"KJFK""#), "{first}");
        assert!(std::ptr::eq(first, core.shown().unwrap().body(crate::domain::Units::Metric)));
        assert!(u.body(crate::domain::Units::Imperial).contains(r#""temperature":44.78"#));
    }

    #[test]
    fn applied_readings_come_first_only_when_kept() {
        let mut core = LocationCore::new(location(), settings(true), Vec::new());
        let events = core.ingest(&mut vec![reading("station", 5, 7.1), reading("station", 50, 6.0)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["applied", "update"]);
        let LocationEvent::Applied(applied) = &events[0] else { unreachable!() };
        assert_eq!(applied.len(), 2);
    }

    #[test]
    fn a_failing_source_makes_the_location_stale_and_its_recovery_clears_it() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        core.ingest(&mut vec![reading("open-meteo", 5, 7.1)], now(), |_, _| {});
        let source = SourceName::parse("open-meteo").unwrap();
        let events = core.source_health(source.clone(), false, now());
        let LocationEvent::Update(u) = &events[0] else { panic!("{events:?}") };
        assert!(u.current.stale);
        assert!(core.source_health(source.clone(), false, now()).is_empty(), "already failing");
        let events = core.source_health(source, true, now());
        let LocationEvent::Update(u) = &events[0] else { panic!("{events:?}") };
        assert!(!u.current.stale);
    }

    #[test]
    fn a_forecast_event_only_when_the_blend_changes() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        let mut hour = ForecastHour::empty("2026-11-26T10:00:00Z".parse().unwrap());
        hour.temperature = Some(8.0);
        let run = ForecastRun { name: SourceName::parse("met-norway").unwrap(), issued_at: now(), hourly: vec![hour] };
        assert_eq!(kinds(&core.apply_forecast(run.clone(), now())), ["forecast"]);
        assert!(core.apply_forecast(run, now()).is_empty());
        assert_eq!(core.forecast().unwrap().hourly[0].temperature, Some(8.0));
    }

    /// Learned runs issued at `issued` (hours after 09:00): the ensemble says 10 + h °C.
    fn learned(issued: i64) -> Learned {
        use crate::domain::{LearnedStatus, ModelHour, ModelRun};
        let at = |h: i64| now() + chrono::Duration::hours(issued + h);
        let run = |model: &str, offset: f64| ModelRun {
            model: model.into(),
            hourly: (1..=3)
                .map(|h| ModelHour { temperature: Some(offset + h as f64), ..ModelHour::empty(at(h)) })
                .collect(),
            skill: Vec::new(),
        };
        Learned {
            status: LearnedStatus::Trained,
            detail: None,
            issued_at: at(0),
            trained: Vec::new(),
            runs: vec![run("ridge", 20.0), run("ensemble", 10.0)],
        }
    }

    #[test]
    fn learned_runs_show_their_ensemble_in_the_forecasts_hours_and_older_ones_are_ignored() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        // The providers cover 10:00 and 11:00; the ensemble 10:00 to 12:00.
        let hours = ["2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z"].map(|t| {
            let mut h = ForecastHour::empty(t.parse().unwrap());
            h.temperature = Some(5.0);
            h.humidity = Some(80.0);
            h
        });
        let run =
            ForecastRun { name: SourceName::parse("met-norway").unwrap(), issued_at: now(), hourly: hours.into() };
        core.apply_forecast(run, now());
        assert_eq!(kinds(&core.apply_learned(learned(0), now())), ["forecast"]);
        let shown = core.forecast().unwrap();
        let temperatures: Vec<_> = shown.hourly.iter().map(|h| (h.time.hour(), h.temperature, h.humidity)).collect();
        assert_eq!(temperatures, [(10, Some(11.0), Some(80.0)), (11, Some(12.0), Some(80.0)), (12, Some(13.0), None)]);
        assert_eq!(shown.sources.len(), 1);
        assert_eq!(shown.models.as_ref().unwrap().runs.len(), 2);
        // The same runs again, or runs issued before them: nothing changes.
        assert!(core.apply_learned(learned(0), now()).is_empty());
        assert!(core.apply_learned(learned(-1), now()).is_empty());
        assert_eq!(kinds(&core.apply_learned(learned(1), now())), ["forecast"]);
        // A new provider run keeps the learned runs on show.
        let mut hour = ForecastHour::empty("2026-11-26T10:00:00Z".parse().unwrap());
        hour.temperature = Some(6.0);
        let run = ForecastRun { name: SourceName::parse("nws").unwrap(), issued_at: now(), hourly: vec![hour] };
        core.apply_forecast(run, now());
        assert_eq!(core.forecast().unwrap().models.as_ref().unwrap().issued_at, now() + chrono::Duration::hours(1));
    }

    #[test]
    fn another_instances_update_is_shown_only_when_newer() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        let events = core.ingest(&mut vec![reading("station", 5, 7.1)], now(), |_, _| {});
        let LocationEvent::Update(u) = &events[0] else { unreachable!() };
        let mut remote = u.current.clone();
        remote.values.set(Quantity::Temperature, Some(9.0));
        assert!(core.show_remote(1, remote.clone(), now()).is_none());
        assert_eq!(kinds(&core.show_remote(5, remote, now()).into_iter().collect::<Vec<_>>()), ["refreshed"]);
        assert_eq!(core.seq(), 5);
        assert_eq!(core.shown().unwrap().current.values.get(Quantity::Temperature), Some(9.0));
    }

    #[test]
    fn a_snapshot_restores_the_same_consensus() {
        let mut core = LocationCore::new(location(), settings(false), Vec::new());
        core.ingest(&mut vec![reading("station", 5, 7.1)], now(), |_, _| {});
        assert!(core.is_dirty());
        let (snapshot, current) = core.take_snapshot();
        assert!(!core.is_dirty());
        let mut back = LocationCore::new(location(), settings(false), Vec::new());
        let event = back.restore(&snapshot, now());
        assert!(matches!(event, Some(LocationEvent::Refreshed(_))));
        assert_eq!(back.seq(), 1);
        assert_eq!(back.shown().map(|u| u.current.clone()), current);
    }

    /// Core settings with spikes judged after four changes and left out of the consensus.
    fn watching_spikes() -> Arc<CoreSettings> {
        let rules = AnomalyRules {
            detectors: Arc::new(Profiles::new(DetectorSettings { min_history: 4, ..DetectorSettings::default() })),
            exclude: vec![AnomalyKind::Spike],
            history: 10,
        };
        Arc::new(CoreSettings { anomalies: Some(rules), ..(*settings(false)).clone() })
    }

    /// Eight quiet hours at the station, the provider steady beside it; answers each
    /// ingest's event kinds.
    fn eight_quiet_hours(core: &mut LocationCore) -> Vec<Vec<&'static str>> {
        let quiet = [10.0, 10.3, 10.1, 10.4, 10.2, 10.5, 10.3, 10.2];
        let at = |hour: usize| 60 * (10 - hour as i64);
        (0..quiet.len())
            .map(|h| {
                let batch = &mut vec![reading("station", at(h), quiet[h]), reading("open-meteo", at(h), 10.8)];
                kinds(&core.ingest(batch, now(), |_, _| {}))
            })
            .collect()
    }

    #[test]
    fn a_spike_starts_an_anomaly_leaves_the_consensus_and_ends_with_the_next_reading() {
        let mut core = LocationCore::new(location(), watching_spikes(), Vec::new());
        for (hour, kinds) in eight_quiet_hours(&mut core).iter().enumerate() {
            assert!(!kinds.contains(&"anomaly"), "{hour}");
        }
        let events =
            core.ingest(&mut vec![reading("open-meteo", 60, 10.8), reading("station", 60, 19.0)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["anomaly", "update"]);
        let LocationEvent::Anomaly(started) = &events[0] else { unreachable!() };
        assert_eq!(started.state, AnomalyState::Started);
        assert_eq!(started.anomaly.id, "spike:station:temperature:1795680000");
        let LocationEvent::Update(u) = &events[1] else { unreachable!() };
        // The spiking station is left out: the consensus is the provider's 10.8.
        assert_eq!(u.current.values.get(Quantity::Temperature), Some(10.8));
        assert_eq!(u.current.anomalies, std::slice::from_ref(&started.anomaly));
        // Back to normal: the anomaly ends, the station counts again.
        let events = core.ingest(&mut vec![reading("station", 0, 10.4)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["anomaly", "update"]);
        let LocationEvent::Anomaly(ended) = &events[0] else { unreachable!() };
        assert_eq!((ended.state, ended.anomaly.ended_at), (AnomalyState::Ended, Some(now())));
        let LocationEvent::Update(u) = &events[1] else { unreachable!() };
        assert!(u.current.anomalies.is_empty());
        // (10.4 × 1 + 10.8 × 0.75, the provider an hour old) / 1.75
        assert_eq!(u.current.values.get(Quantity::Temperature), Some(10.57));
        // The history keeps it, ended.
        let kept = core.anomalies(now() - chrono::Duration::hours(2), now());
        assert_eq!(kept, std::slice::from_ref(&ended.anomaly));
    }

    #[test]
    fn a_restored_location_judges_its_next_reading_against_the_restored_past() {
        let settings = watching_spikes();
        let mut core = LocationCore::new(location(), settings.clone(), Vec::new());
        eight_quiet_hours(&mut core);
        let (snapshot, _) = core.take_snapshot();
        // A new run of the actor: what it restores is what its detectors learn from.
        let mut back = LocationCore::new(location(), settings, Vec::new());
        back.restore(&snapshot, now());
        let events =
            back.ingest(&mut vec![reading("open-meteo", 60, 10.8), reading("station", 60, 19.0)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["anomaly", "update"]);
        // Restoring reports nothing by itself.
        assert!(back.anomalies(now() - chrono::Duration::hours(12), now() - chrono::Duration::hours(2)).is_empty());
    }

    /// An analysis that records what it saw and answers each change with an event.
    struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

    impl Analysis for Recorder {
        fn on_reading(&mut self, reading: &Reading, state: &LocationState, _: &mut Vec<LocationEvent>) {
            self.0.lock().unwrap().push(format!("reading {} of {}", reading.source, state.len()));
        }

        fn on_update(&mut self, update: &Update, out: &mut Vec<LocationEvent>) {
            self.0.lock().unwrap().push(format!("update {}", update.seq));
            out.push(LocationEvent::Refreshed(Arc::new(Update::new(
                update.location_id.clone(),
                update.seq,
                update.changed_at,
                update.current.clone(),
            ))));
        }
    }

    #[test]
    fn analyses_see_each_applied_reading_and_each_change_and_add_their_events() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut core = LocationCore::new(location(), settings(false), vec![Box::new(Recorder(seen.clone()))]);
        let events = core.ingest(&mut vec![reading("station", 5, 7.1), reading("station", 5, 7.1)], now(), |_, _| {});
        assert_eq!(kinds(&events), ["update", "refreshed"]);
        assert_eq!(*seen.lock().unwrap(), ["reading station of 1", "update 1"]);
    }
}
