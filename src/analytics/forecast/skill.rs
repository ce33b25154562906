//! Live skill: every forecast issued is kept until the hour it is for has been observed,
//! then scored. The rolling mean absolute error per model and horizon over the last 14
//! days weighs the blend.
//!
//! Lean by design (a forecaster keeps one per place and quantity): errors are summed per
//! UTC day of the hour verified (14 days of 10 models × 24 horizons, 6 bytes each:
//! 20 KiB), and a forecast waits as its whole run (a day of origins: 10 runs × 24 hours).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{HORIZONS, Model, Run};

/// Days of verified forecasts the skill is measured over.
pub const DAYS: i64 = 14;
/// Verified forecasts a model needs at a horizon before its skill counts.
pub const MIN_VERIFIED: usize = 48;

/// A model is blended at a horizon when its MAE there is within this share of the best's:
/// a baseline well behind (yesterday's value at 24 h) would only pull the blend off. The
/// band is 3 % an hour ahead and widens evenly to 15 % at six hours and beyond. In the
/// first hours one model (the boosted trees) leads by a steady margin, and a model a
/// tenth behind it made the blend worse at every place evaluated; further ahead the lead
/// changes from place to place, and the wider band did better there.
fn contender(horizon: u8) -> f64 {
    let (first, last, widest_from) = (1.03, 1.15, 6.0);
    first + (last - first) * ((f64::from(horizon) - 1.0) / (widest_from - 1.0)).min(1.0)
}

const SLOTS: usize = Model::ALL.len() * HORIZONS as usize;

/// The errors of the forecasts verified for the hours of one UTC day, per model and
/// horizon.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Day {
    /// Days since the epoch.
    day: i64,
    sum: Vec<f32>,
    count: Vec<u16>,
}

/// A run waiting for its hours.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    origin: i64,
    model: Model,
    /// `values[h - 1]`, NaN where the run has none (stored as `null`).
    #[serde(with = "super::nan_as_null")]
    values: [f32; HORIZONS as usize],
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Skill {
    /// Newest last; only the last [`DAYS`] count.
    days: VecDeque<Day>,
    pending: VecDeque<Issued>,
    /// Hours up to this one (since the epoch) have been scored.
    verified_until: Option<i64>,
}

fn slot(model: Model, horizon: u8) -> usize {
    model.index() * usize::from(HORIZONS) + usize::from(horizon.clamp(1, HORIZONS) - 1)
}

impl Skill {
    /// Whether it counts this build's models (one kept by a build with other models
    /// has days of another length, whose slots mean other models).
    pub fn is_current(&self) -> bool {
        self.days.iter().all(|d| d.sum.len() == SLOTS && d.count.len() == SLOTS)
    }

    /// Keeps the runs issued at `origin` for scoring.
    pub fn issue(&mut self, origin: i64, runs: &[Run]) {
        // 112 bytes a run, per place and quantity.
        crate::growth::grow_by_quarter(&mut self.pending, runs.len(), 0, usize::MAX);
        for run in runs {
            let mut values = [f32::NAN; HORIZONS as usize];
            for (slot, value) in values.iter_mut().zip(&run.values) {
                *slot = value.unwrap_or(f32::NAN);
            }
            self.pending.push_back(Issued { origin, model: run.model, values });
        }
        // A day of origins waits normally; never more than two (a place that stops
        // reporting).
        let cap = 2 * Model::ALL.len() * usize::from(HORIZONS);
        while self.pending.len() > cap {
            self.pending.pop_front();
        }
    }

    /// Scores every waiting forecast for the hours up to `now` not scored yet against
    /// `observed(hour)`; forecasts whose hour has no observation are dropped.
    pub fn verify(&mut self, now: i64, observed: impl Fn(i64) -> Option<f32>) {
        let after = self.verified_until.unwrap_or(i64::MIN);
        if now <= after {
            return;
        }
        for i in 0..self.pending.len() {
            let (origin, model) = (self.pending[i].origin, self.pending[i].model);
            for h in 1..=HORIZONS {
                let hour = origin + i64::from(h);
                if hour <= after || hour > now {
                    continue;
                }
                let value = self.pending[i].values[usize::from(h) - 1];
                if value.is_nan() {
                    continue;
                }
                let Some(truth) = observed(hour) else { continue };
                let Some(day) = self.day(hour.div_euclid(24)) else { continue };
                let k = slot(model, h);
                day.sum[k] += (value - truth).abs();
                day.count[k] = day.count[k].saturating_add(1);
            }
        }
        self.pending.retain(|p| p.origin + i64::from(HORIZONS) > now);
        self.verified_until = Some(now);
    }

    /// The errors of `day`, made if it is new (days that leave the window go); `None`
    /// for a day already out of it.
    fn day(&mut self, day: i64) -> Option<&mut Day> {
        let newest = self.days.back().map_or(day, |d| d.day.max(day));
        if day <= newest - DAYS {
            return None;
        }
        while self.days.front().is_some_and(|d| d.day <= newest - DAYS) {
            self.days.pop_front();
        }
        let i = self.days.iter().position(|d| d.day >= day).unwrap_or(self.days.len());
        if self.days.get(i).is_none_or(|d| d.day != day) {
            self.days.insert(i, Day { day, sum: vec![0.0; SLOTS], count: vec![0; SLOTS] });
        }
        self.days.get_mut(i)
    }

    /// The days in the window: the last [`DAYS`] up to the newest verified.
    fn window(&self) -> impl Iterator<Item = &Day> {
        let newest = self.days.back().map_or(0, |d| d.day);
        self.days.iter().filter(move |d| d.day > newest - DAYS)
    }

    /// The rolling MAE of a model at a horizon, once it has enough verified forecasts.
    pub fn mae(&self, model: Model, horizon: u8) -> Option<f64> {
        let k = slot(model, horizon);
        let (sum, count) =
            self.window().fold((0.0, 0usize), |(s, n), d| (s + f64::from(d.sum[k]), n + usize::from(d.count[k])));
        (count >= MIN_VERIFIED).then(|| sum / count as f64)
    }

    /// How many forecasts of a model at a horizon were verified in the window.
    pub fn verified(&self, model: Model, horizon: u8) -> usize {
        let k = slot(model, horizon);
        self.window().map(|d| usize::from(d.count[k])).sum()
    }

    /// The blend of `runs`: per horizon, the models whose known skill is within the
    /// [`contender`] band of the best's, weighted by the inverse square of their MAE;
    /// until any skill is known, the mean of the learned models and the providers' runs.
    pub fn blend(&self, runs: &[Run]) -> Run {
        let values = (0..usize::from(HORIZONS))
            .map(|i| {
                let horizon = (i + 1) as u8;
                let value = |model: Model| runs.iter().find(|r| r.model == model)?.values.get(i).copied().flatten();
                // Every model but the blend itself.
                let known: Vec<(f32, f64)> = (Model::ALL.into_iter().filter(|&m| m != Model::Ensemble))
                    .filter_map(|m| Some((value(m)?, self.mae(m, horizon)?.max(0.01))))
                    .collect();
                let reach = known.iter().map(|(_, mae)| *mae).fold(f64::INFINITY, f64::min) * contender(horizon);
                let weighted: Vec<(f32, f64)> =
                    known.iter().filter(|(_, mae)| *mae <= reach).map(|&(v, mae)| (v, 1.0 / mae.powi(2))).collect();
                if !weighted.is_empty() {
                    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
                    return Some((weighted.iter().map(|(v, w)| f64::from(*v) * w).sum::<f64>() / total) as f32);
                }
                let learned: Vec<f32> = Model::LEARNED
                    .iter()
                    .chain(&[Model::Providers, Model::ProvidersCorrected])
                    .filter_map(|&m| value(m))
                    .collect();
                (!learned.is_empty()).then(|| learned.iter().sum::<f32>() / learned.len() as f32)
            })
            .collect();
        Run { model: Model::Ensemble, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(model: Model, value: f32) -> Run {
        Run { model, values: vec![Some(value); usize::from(HORIZONS)] }
    }

    /// A skill kept by the build before the boosted trees (8 models a day) is not read as
    /// this one's: its slots would give one model's errors to another.
    #[test]
    fn a_skill_of_other_models_is_not_current() {
        let old = Day { day: 0, sum: vec![0.0; 8 * 24], count: vec![0; 8 * 24] };
        assert!(!Skill { days: VecDeque::from([old]), ..Skill::default() }.is_current());
        let mut skill = Skill::default();
        skill.issue(0, &[run(Model::Ridge, 11.0)]);
        skill.verify(5, |_| Some(10.0));
        assert_eq!(skill.verified(Model::Ridge, 1), 1);
        assert!(skill.is_current());
    }

    #[test]
    fn forecasts_are_scored_when_their_hour_is_observed_and_the_better_model_weighs_more() {
        let mut skill = Skill::default();
        // Truth is always 10; ridge says 11, persistence 14.
        for origin in 0..100 {
            skill.issue(origin, &[run(Model::Ridge, 11.0), run(Model::Persistence, 14.0)]);
            skill.verify(origin, |_| Some(10.0));
        }
        // Origin 99's 1 h forecast is for hour 100: not yet verified.
        assert_eq!(skill.verified(Model::Ridge, 1), 99);
        assert_eq!(skill.mae(Model::Ridge, 1), Some(1.0));
        assert_eq!(skill.mae(Model::Persistence, 24), Some(4.0));
        assert_eq!(skill.mae(Model::Mlp, 1), None);
        // Persistence is 4 times worse: left out.
        let blend = skill.blend(&[run(Model::Ridge, 11.0), run(Model::Persistence, 14.0)]);
        assert_eq!(blend.values[0], Some(11.0));
        // Six hours ahead, within 15 %: weights 1/1 and 1/1.1²: (11 + 9 / 1.21) / (1 +
        // 1 / 1.21) = 10.095; the forest, 20 % behind, is left out. An hour ahead the band
        // is 3 %: the network, 10 % behind, is left out too.
        for origin in 100..500 {
            let runs = [run(Model::Ridge, 11.0), run(Model::Mlp, 8.9), run(Model::RandomForest, 8.8)];
            skill.issue(origin, &runs);
            skill.verify(origin, |_| Some(10.0));
        }
        // The last 14 days (hours 168 to 499) count, not the older ones.
        assert_eq!(skill.verified(Model::Ridge, 1), 499 - 168 + 1);
        let runs = [run(Model::Ridge, 11.0), run(Model::Mlp, 9.0), run(Model::RandomForest, 0.0)];
        let blend = skill.blend(&runs);
        assert!((blend.values[5].unwrap() - 10.095).abs() < 1e-3, "{:?}", blend.values[5]);
        assert!((blend.values[23].unwrap() - 10.095).abs() < 1e-3, "{:?}", blend.values[23]);
        assert_eq!(blend.values[0], Some(11.0));
        // Three hours ahead the band is 7.8 %: the network is still left out.
        assert_eq!(blend.values[2], Some(11.0));
        // Without skill yet: the mean of the learned models.
        let fresh =
            Skill::default().blend(&[run(Model::Ridge, 11.0), run(Model::Mlp, 13.0), run(Model::Persistence, 0.0)]);
        assert_eq!(fresh.values[5], Some(12.0));
    }
}
