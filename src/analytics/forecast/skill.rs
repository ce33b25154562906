//! Live skill: every forecast issued is kept until the hour it is for has been observed,
//! then scored. The rolling mean absolute error per model and horizon weighs the blend.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{HORIZONS, Model, Run};

/// Verified forecasts kept per model and horizon (14 days of hourly origins).
pub const WINDOW: usize = 14 * 24;
/// Verified forecasts a model needs at a horizon before its skill counts.
pub const MIN_VERIFIED: usize = 48;

/// A model is blended at a horizon when its MAE there is within 15 % of the best's: a
/// baseline well behind (yesterday's value at 24 h) would only pull the blend off.
const CONTENDER: f64 = 1.15;

/// The models the blend may weigh (every one but the blend itself).
const WEIGHED: [Model; 7] = [
    Model::Persistence,
    Model::Yesterday,
    Model::Climatology,
    Model::Ridge,
    Model::RandomForest,
    Model::Mlp,
    Model::Providers,
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Errors {
    recent: VecDeque<f32>,
    sum: f64,
}

impl Errors {
    fn push(&mut self, error: f32) {
        self.recent.push_back(error);
        self.sum += f64::from(error);
        if self.recent.len() > WINDOW
            && let Some(old) = self.recent.pop_front()
        {
            self.sum -= f64::from(old);
        }
    }

    fn mae(&self) -> Option<f64> {
        (self.recent.len() >= MIN_VERIFIED).then(|| self.sum / self.recent.len() as f64)
    }
}

/// One forecast waiting for its hour.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Pending {
    /// Hours since the epoch of the hour forecast.
    hour: i64,
    model: Model,
    horizon: u8,
    value: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Skill {
    errors: Vec<Errors>,
    pending: VecDeque<Pending>,
}

fn slot(model: Model, horizon: u8) -> usize {
    model.index() * usize::from(HORIZONS) + usize::from(horizon.clamp(1, HORIZONS) - 1)
}

impl Skill {
    /// Keeps the runs issued at `origin` for scoring.
    pub fn issue(&mut self, origin: i64, runs: &[Run]) {
        for run in runs {
            for (i, value) in run.values.iter().enumerate() {
                if let Some(value) = value {
                    let horizon = (i + 1) as u8;
                    self.pending.push_back(Pending {
                        hour: origin + i64::from(horizon),
                        model: run.model,
                        horizon,
                        value: *value,
                    });
                }
            }
        }
        // A day of origins waits normally; never more than two (a place that stops
        // reporting).
        let cap = 2 * Model::ALL.len() * usize::from(HORIZONS) * usize::from(HORIZONS);
        while self.pending.len() > cap {
            self.pending.pop_front();
        }
    }

    /// Scores every waiting forecast for hours up to `now` against `observed(hour)`;
    /// forecasts whose hour has no observation are dropped.
    pub fn verify(&mut self, now: i64, observed: impl Fn(i64) -> Option<f32>) {
        if self.errors.is_empty() {
            self.errors = vec![Errors::default(); Model::ALL.len() * usize::from(HORIZONS)];
        }
        let mut keep = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            if p.hour > now {
                keep.push_back(p);
            } else if let Some(truth) = observed(p.hour) {
                self.errors[slot(p.model, p.horizon)].push((p.value - truth).abs());
            }
        }
        self.pending = keep;
    }

    /// The rolling MAE of a model at a horizon, once it has enough verified forecasts.
    pub fn mae(&self, model: Model, horizon: u8) -> Option<f64> {
        self.errors.get(slot(model, horizon))?.mae()
    }

    /// How many forecasts of a model at a horizon have been verified (up to the window).
    pub fn verified(&self, model: Model, horizon: u8) -> usize {
        self.errors.get(slot(model, horizon)).map_or(0, |e| e.recent.len())
    }

    /// The blend of `runs`: per horizon, the models whose known skill is within 15 % of
    /// the best's, weighted by the inverse square of their MAE; until any skill is known,
    /// the mean of the learned models and the providers' blend.
    pub fn blend(&self, runs: &[Run]) -> Run {
        let values = (0..usize::from(HORIZONS))
            .map(|i| {
                let horizon = (i + 1) as u8;
                let value = |model: Model| runs.iter().find(|r| r.model == model)?.values.get(i).copied().flatten();
                let known: Vec<(f32, f64)> =
                    WEIGHED.iter().filter_map(|&m| Some((value(m)?, self.mae(m, horizon)?.max(0.01)))).collect();
                let best = known.iter().map(|(_, mae)| *mae).fold(f64::INFINITY, f64::min);
                let weighted: Vec<(f32, f64)> = known
                    .iter()
                    .filter(|(_, mae)| *mae <= best * CONTENDER)
                    .map(|&(v, mae)| (v, 1.0 / mae.powi(2)))
                    .collect();
                if !weighted.is_empty() {
                    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
                    return Some((weighted.iter().map(|(v, w)| f64::from(*v) * w).sum::<f64>() / total) as f32);
                }
                let learned: Vec<f32> =
                    Model::LEARNED.iter().chain(&[Model::Providers]).filter_map(|&m| value(m)).collect();
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
        // Within 15 %: weights 1/1 and 1/1.1²: (11 + 9 / 1.21) / (1 + 1 / 1.21) = 10.095.
        for origin in 100..500 {
            skill.issue(origin, &[run(Model::Mlp, 8.9)]);
            skill.verify(origin, |_| Some(10.0));
        }
        let blend = skill.blend(&[run(Model::Ridge, 11.0), run(Model::Mlp, 9.0), run(Model::Persistence, 14.0)]);
        assert!((blend.values[0].unwrap() - 10.095).abs() < 1e-3, "{:?}", blend.values[0]);
        // Without skill yet: the mean of the learned models.
        let fresh =
            Skill::default().blend(&[run(Model::Ridge, 11.0), run(Model::Mlp, 13.0), run(Model::Persistence, 0.0)]);
        assert_eq!(fresh.values[5], Some(12.0));
    }
}
