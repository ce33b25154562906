//! Two detectors on a source's residual against the reference (value − the other source
//! nearest the value at the same time, so that one faulty neighbour does not make the
//! others look faulty):
//!
//! - **Cross-source**: the residual stays beyond `cross_tolerances` tolerances for
//!   `cross_hours` or more (at least three readings): the source keeps disagreeing with
//!   the others, whatever the cause. It ends with the first reading back within.
//! - **Unusual for the hour**: the seed's IQR fence, compared like with like. The value
//!   and the residual are kept per hour of the day for `fence_days` days, so the daily
//!   cycle (of the weather, and of the bias: a sea breeze, a sensor in the afternoon sun)
//!   is part of what is normal at that hour. A reading is unusual when its value is beyond
//!   Q1 − 3·IQR or Q3 + 3·IQR of its hour and its residual beyond a wider fence (k =
//!   `fence_iqr`), each at least `fence_min` tolerances out: unusual
//!   weather alone (a cold snap every source sees) or an unusual gap alone (a sea breeze
//!   reaching one station first) is not enough. It ends with the first reading back
//!   inside.

use std::collections::VecDeque;

use chrono::{DateTime, Timelike, Utc};

use crate::domain::Band;

#[derive(Debug, Clone, PartialEq)]
pub struct ResidualSettings {
    pub cross_tolerances: f64,
    pub cross_hours: f64,
    pub fence_days: usize,
    pub fence_iqr: f64,
    pub fence_min: f64,
}

impl Default for ResidualSettings {
    fn default() -> Self {
        Self { cross_tolerances: 5.0, cross_hours: 12.0, fence_days: 14, fence_iqr: 6.0, fence_min: 3.0 }
    }
}

/// The fence on the values themselves: Tukey's "far out" 3 IQR (the seed's 1.5 IQR
/// flags a reading in every few hundred on real stations, weather included).
const VALUE_FENCE: f64 = 3.0;

/// One hour of the day: (day, value, residual) of the first reading of that hour, per
/// day (12 bytes each: two weeks of them are 4 KiB per series), and the fences they give
/// (value, residual), once there are enough.
#[derive(Debug, Clone, Default)]
struct HourOfDay {
    kept: VecDeque<(i32, f32, f32)>,
    fences: Option<((f64, f64), (f64, f64))>,
}

/// What a reading started or ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ResidualChange {
    CrossStarted { started_at: DateTime<Utc>, expected: Band, score: f64 },
    CrossEnded(DateTime<Utc>),
    UnusualStarted { expected: Band, score: f64 },
    UnusualEnded(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub struct ResidualTracker {
    tolerance: f64,
    settings: ResidualSettings,
    /// Since when the residual is beyond the cross-source limit, readings so, reported.
    beyond: Option<(DateTime<Utc>, u32, bool)>,
    /// Per hour of the day, UTC.
    hours: Vec<HourOfDay>,
    /// The unusual stretch going on, since.
    unusual: Option<DateTime<Utc>>,
}

impl ResidualTracker {
    pub fn new(tolerance: f64, settings: ResidualSettings) -> Self {
        Self { tolerance, settings, beyond: None, hours: vec![HourOfDay::default(); 24], unusual: None }
    }

    pub fn observe(&mut self, at: DateTime<Utc>, value: f64, reference: Option<f64>, out: &mut Vec<ResidualChange>) {
        let Some(reference) = reference else { return };
        let residual = value - reference;
        self.cross(at, reference, residual, out);
        self.fence(at, value, reference, out);
    }

    fn cross(&mut self, at: DateTime<Utc>, reference: f64, residual: f64, out: &mut Vec<ResidualChange>) {
        let limit = self.settings.cross_tolerances * self.tolerance;
        if residual.abs() <= limit {
            if let Some((since, _, true)) = self.beyond {
                out.push(ResidualChange::CrossEnded(since));
            }
            self.beyond = None;
            return;
        }
        let (since, count, reported) = self.beyond.get_or_insert((at, 0, false));
        *count += 1;
        let hours = (at - *since).num_seconds() as f64 / 3600.0;
        if !*reported && *count >= 3 && hours >= self.settings.cross_hours {
            *reported = true;
            out.push(ResidualChange::CrossStarted {
                started_at: *since,
                expected: Band { low: reference - limit, high: reference + limit },
                score: residual.abs() / self.tolerance,
            });
        }
    }

    fn fence(&mut self, at: DateTime<Utc>, value: f64, reference: f64, out: &mut Vec<ResidualChange>) {
        let residual = value - reference;
        let (day, hour) = (at.timestamp().div_euclid(86_400) as i32, at.hour() as usize);
        let outside = |(low, high): (f64, f64), x: f64| x < low || x > high;
        let fences =
            self.hours[hour].fences.filter(|(own, against)| outside(*own, value) && outside(*against, residual));
        match (fences, self.unusual) {
            (Some((_, against)), None) => {
                self.unusual = Some(at);
                let (low, high) = against;
                let score = if residual > high { residual - high } else { low - residual } / self.tolerance;
                out.push(ResidualChange::UnusualStarted {
                    expected: Band { low: reference + low, high: reference + high },
                    score,
                });
            }
            (None, Some(since)) => {
                self.unusual = None;
                out.push(ResidualChange::UnusualEnded(since));
            }
            _ => {}
        }
        let kept = &mut self.hours[hour].kept;
        if kept.back().is_none_or(|k| k.0 < day) {
            kept.push_back((day, value as f32, residual as f32));
            while kept.len() > self.settings.fence_days {
                kept.pop_front();
            }
            // The fences change only here, once a day per hour: not at every reading.
            let kept = &self.hours[hour].kept;
            let fences = (kept.len() >= self.settings.fence_days * 2 / 3).then(|| {
                let own = self.fence_of(kept.iter().map(|k| f64::from(k.1)), VALUE_FENCE);
                (own, self.fence_of(kept.iter().map(|k| f64::from(k.2)), self.settings.fence_iqr))
            });
            self.hours[hour].fences = fences;
        }
    }

    /// The fence of a sample: Q1 − k·IQR to Q3 + k·IQR, at least `fence_min`
    /// tolerances from the quartiles.
    fn fence_of(&self, sample: impl Iterator<Item = f64>, k: f64) -> (f64, f64) {
        let mut values: Vec<f64> = sample.collect();
        if values.is_empty() {
            return (f64::NEG_INFINITY, f64::INFINITY);
        }
        values.sort_by(f64::total_cmp);
        let quartile = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        let (q1, q3) = (quartile(0.25), quartile(0.75));
        let reach = (k * (q3 - q1)).max(self.settings.fence_min * self.tolerance);
        (q1 - reach, q3 + reach)
    }
}
