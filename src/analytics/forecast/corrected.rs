//! The providers' blend corrected for the place (model output statistics): per horizon, a
//! ridge regression from what the blend said at the origin of the target hour, how far
//! it was off here lately, and the place's own features (those the learned models see),
//! to the change the place then observed.
//!
//! A numerical forecast errs in ways local to a spot — a valley's cold nights, a coast's
//! sea breeze, a station's siting — that its grid cannot see and the station's own
//! observations show. The runs the blend issued are kept per origin ([`Issued`]) for
//! [`KEPT_DAYS`]; a place is corrected once they cover [`MIN_ORIGINS`] origins.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::features::{FEATURES, Origin, Position, Scaler, Sunlight};
use super::hourly::{Column, Hourly};
use super::ridge::Ridge;
use super::{HORIZONS, Model, Run, Settings, change_spread};
use crate::domain::Quantity;

/// Days of the providers' runs kept and learned from.
pub const KEPT_DAYS: i64 = 28;
/// Origins with the providers' run and the target observed, per horizon, before a horizon
/// is corrected (a week of hours).
pub const MIN_ORIGINS: usize = 7 * 24;
/// The features the correction adds to the place's own.
const PROVIDER_FEATURES: usize = 3;
const CORRECTED_FEATURES: usize = FEATURES + PROVIDER_FEATURES;
/// The penalty on the weights: the correction learns from weeks, not from a year, and a
/// firmer penalty than the learned models' keeps it from chasing a few odd days.
const ALPHA: f64 = 10.0;

/// One run of the providers' blend as issued at an origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IssuedRun {
    origin: i64,
    /// `values[h - 1]`, NaN where the blend said nothing of that hour (stored as `null`).
    #[serde(with = "super::nan_as_null")]
    values: [f32; HORIZONS as usize],
}

/// The providers' runs of one quantity as issued at each origin, for the last
/// [`KEPT_DAYS`] (about 100 bytes an origin).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Issued {
    /// Oldest first, one per origin.
    runs: VecDeque<IssuedRun>,
}

impl Issued {
    /// Keeps the run the blend gave at `origin` (`values[h - 1]`; a value that is not a
    /// finite number counts as none); a run with no values, or not after the last kept, is
    /// not kept. Whether it was kept.
    pub fn issue(&mut self, origin: i64, values: &[Option<f32>]) -> bool {
        let finite = |v: &Option<f32>| v.filter(|v| v.is_finite());
        if values.iter().all(|v| finite(v).is_none()) || self.runs.back().is_some_and(|r| r.origin >= origin) {
            return false;
        }
        let mut run = IssuedRun { origin, values: [f32::NAN; HORIZONS as usize] };
        for (slot, value) in run.values.iter_mut().zip(values) {
            *slot = finite(value).unwrap_or(f32::NAN);
        }
        self.runs.push_back(run);
        while self.runs.front().is_some_and(|r| r.origin <= origin - KEPT_DAYS * 24) {
            self.runs.pop_front();
        }
        true
    }

    /// What the run issued at `origin` said of `horizon` hours later.
    pub fn at(&self, origin: i64, horizon: u8) -> Option<f32> {
        let i = self.runs.binary_search_by_key(&origin, |r| r.origin).ok()?;
        let value = *self.runs[i].values.get(usize::from(horizon).checked_sub(1)?)?;
        (!value.is_nan()).then_some(value)
    }

    /// How many origins are kept.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    fn origins(&self) -> impl Iterator<Item = i64> + '_ {
        self.runs.iter().map(|r| r.origin)
    }
}

/// A place's correction of the providers' blend for one quantity.
#[derive(Debug, Serialize, Deserialize)]
pub struct Corrected {
    pub quantity: Quantity,
    /// Origins it learned from (with the providers' run at 1 h and the target observed).
    pub origins: usize,
    scaler: Scaler,
    /// Per horizon; `None` where too few origins had both the run and the observation.
    ridge: Vec<Option<Ridge>>,
}

/// The features at `origin` for `horizon`: the place's own, then the blend's change to the
/// target hour, its error at the origin (as issued an hour before) and its error at the
/// same lead a day before the target. `None` without the blend's value for the target.
fn row(
    at: &Origin,
    issued: &Issued,
    series: &Hourly,
    column: Column,
    origin: i64,
    horizon: u8,
) -> Option<[f32; CORRECTED_FEATURES]> {
    let forecast = issued.at(origin, horizon)?;
    let now = at.now();
    let before = origin + i64::from(horizon) - 24;
    let error_now = issued.at(origin - 1, 1).map_or(f32::NAN, |v| v - now);
    let error_yesterday = match (issued.at(before - i64::from(horizon), horizon), series.get(before, column)) {
        (Some(said), Some(observed)) => said - observed,
        _ => f32::NAN,
    };
    let mut row = [0.0; CORRECTED_FEATURES];
    row[..FEATURES].copy_from_slice(&at.at(horizon));
    row[FEATURES..].copy_from_slice(&[forecast - now, error_now, error_yesterday]);
    Some(row)
}

impl Corrected {
    /// Fits the correction on every kept run whose target hours `series` observed; `None`
    /// when no horizon has [`MIN_ORIGINS`] of them.
    pub fn fit(
        series: &Hourly,
        issued: &Issued,
        quantity: Quantity,
        position: Position,
        settings: &Settings,
    ) -> Option<Self> {
        let column = Column::of(quantity)?;
        let mut raw: Vec<Vec<([f32; CORRECTED_FEATURES], f32)>> = vec![Vec::new(); usize::from(HORIZONS)];
        let (first, last) = (issued.origins().next()?, issued.origins().last()?);
        let sunlight = Sunlight::over(position, first, last + i64::from(HORIZONS));
        for origin in issued.origins() {
            let Some(at) = Origin::new(series, column, &sunlight, origin) else { continue };
            let now = at.now();
            for h in 1..=HORIZONS {
                let Some(then) = series.get(origin + i64::from(h), column) else { continue };
                if let Some(row) = row(&at, issued, series, column, origin, h) {
                    raw[usize::from(h - 1)].push((row, then - now));
                }
            }
        }
        let origins = raw[0].len();
        if raw.iter().all(|list| list.len() < MIN_ORIGINS) {
            return None;
        }
        let longest = raw.iter().max_by_key(|list| list.len())?;
        let scaler = Scaler::fit(&longest.iter().map(|(x, _)| *x).collect::<Vec<_>>());
        let ridge = raw
            .into_iter()
            .map(|list| {
                if list.len() < MIN_ORIGINS {
                    return None;
                }
                let (rows, targets): (Vec<_>, Vec<_>) = list.into_iter().map(|(x, y)| (scaler.apply(&x), y)).unzip();
                let floor = f64::from(change_spread(&targets)) / 20.0;
                Ridge::fit_absolute(&rows, &targets, ALPHA, floor, settings.ridge_iterations)
            })
            .collect();
        Some(Self { quantity, origins, scaler, ridge })
    }

    /// Whether it was fitted on this build's features.
    pub fn is_current(&self) -> bool {
        self.scaler.features() == CORRECTED_FEATURES && self.ridge.len() == usize::from(HORIZONS)
    }

    /// The corrected run from `origin`; `None` when the quantity was not observed there or
    /// the providers issued no run then.
    pub fn forecast(&self, series: &Hourly, issued: &Issued, position: Position, origin: i64) -> Option<Run> {
        let column = Column::of(self.quantity)?;
        let sunlight = Sunlight::over(position, origin, origin + i64::from(HORIZONS));
        let at = Origin::new(series, column, &sunlight, origin)?;
        let now = at.now();
        let values: Vec<Option<f32>> = (1..=HORIZONS)
            .zip(&self.ridge)
            .map(|(h, ridge)| {
                let row = row(&at, issued, series, column, origin, h)?;
                Some(now + ridge.as_ref()?.predict(&self.scaler.apply(&row)))
            })
            .collect();
        values.iter().any(Option::is_some).then_some(Run { model: Model::ProvidersCorrected, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::forecast::testing::{self, KEWR};

    /// KEWR's real hours from 2013-04-01 for `days` days.
    fn kewr(days: i64) -> Hourly {
        testing::kewr(90, days)
    }

    /// A numerical model's run for KEWR's real hours with the errors such runs make at a
    /// spot: too warm by night and too cool by day (its grid cell is bigger than the
    /// airport's heat), and an error of the run's own that grows with the hours ahead.
    fn provider_runs(series: &Hourly, from: i64, to: i64, seed: u64) -> Issued {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut issued = Issued::default();
        for origin in from..to {
            let mut drift = 0.0f32;
            let values: Vec<Option<f32>> = (1..=i64::from(HORIZONS))
                .map(|h| {
                    drift += (rng.f32() - 0.5) * 0.5;
                    let target = origin + h;
                    let local = (2.0 * std::f32::consts::PI * ((target - 5).rem_euclid(24)) as f32 / 24.0).cos();
                    series.get(target, Column::Temperature).map(|t| t + 1.5 * local + drift)
                })
                .collect();
            issued.issue(origin, &values);
        }
        issued
    }

    fn mae(pairs: &[(f32, f32)]) -> f32 {
        pairs.iter().map(|(f, o)| (f - o).abs()).sum::<f32>() / pairs.len() as f32
    }

    #[test]
    fn issued_runs_are_kept_in_order_for_four_weeks() {
        let mut issued = Issued::default();
        assert!(issued.issue(100, &[Some(1.0), None, Some(3.0)]));
        assert!(!issued.issue(100, &[Some(9.0)])); // not after the last: not kept
        assert!(!issued.issue(101, &[None, Some(f32::INFINITY)])); // nothing usable said: not kept
        assert!(issued.issue(102, &[Some(2.0), Some(f32::NAN)]));
        assert_eq!((issued.at(100, 1), issued.at(100, 2), issued.at(100, 3)), (Some(1.0), None, Some(3.0)));
        assert_eq!(
            (issued.at(101, 1), issued.at(102, 1), issued.at(102, 2), issued.at(102, 0), issued.at(102, 25)),
            (None, Some(2.0), None, None, None)
        );
        issued.issue(102 + KEPT_DAYS * 24, &[Some(5.0)]);
        assert_eq!(issued.len(), 1);
        let back: Issued = serde_json::from_str(&serde_json::to_string(&issued).unwrap()).unwrap();
        assert_eq!(back.at(102 + KEPT_DAYS * 24, 1), Some(5.0));
    }

    /// Four weeks of runs that are off at KEWR by night and by day: the correction learns
    /// it, and over the next ten days it is far closer to what was observed than the runs.
    #[test]
    fn a_week_of_runs_teaches_the_places_correction_of_the_providers_blend() {
        let series = kewr(60);
        let (start, end) = (series.start, series.end().unwrap());
        let split = start + 48 * 24;
        // The runs issued up to the split, and those after it (the same up to the split).
        let (then, issued) = (provider_runs(&series, start + 24, split, 3), provider_runs(&series, start + 24, end, 3));
        let known = series.as_of(48 * 24, usize::MAX);
        let corrected = Corrected::fit(&known, &then, Quantity::Temperature, KEWR, &Settings::default()).unwrap();
        assert!(corrected.is_current());
        // Origins up to the split with the hour after them observed, in the four weeks kept.
        assert!((600..=28 * 24).contains(&corrected.origins), "{}", corrected.origins);
        let (mut raw, mut fixed) = (vec![Vec::new(); 3], vec![Vec::new(); 3]);
        for origin in split..end - 24 {
            let run = corrected.forecast(&series, &issued, KEWR, origin).unwrap();
            for (k, h) in [1u8, 6, 24].into_iter().enumerate() {
                let (Some(observed), Some(said)) =
                    (series.get(origin + i64::from(h), Column::Temperature), issued.at(origin, h))
                else {
                    continue;
                };
                raw[k].push((said, observed));
                fixed[k].push((run.values[usize::from(h - 1)].unwrap(), observed));
            }
        }
        for k in 0..3 {
            let (before, after) = (mae(&raw[k]), mae(&fixed[k]));
            assert!(after < 0.6 * before, "horizon #{k}: {before} → {after}");
        }
        // Without the runs of the origin there is nothing to correct.
        assert_eq!(corrected.forecast(&series, &Issued::default(), KEWR, split), None);
    }

    #[test]
    fn less_than_a_week_of_runs_is_not_corrected() {
        let series = kewr(30);
        let issued = provider_runs(&series, series.start + 24, series.start + 24 + 6 * 24, 4);
        assert!(Corrected::fit(&series, &issued, Quantity::Temperature, KEWR, &Settings::default()).is_none());
        assert!(Corrected::fit(&series, &issued, Quantity::Visibility, KEWR, &Settings::default()).is_none());
    }
}
