//! Rolling-origin evaluation: train on the first 70 % of the hours, then walk through the
//! remaining 30 % in time order, forecasting from every hour and re-fitting every
//! `refit_hours` on the data before the origin only (all of it, or the last
//! `history_hours`, as a live place keeps). Every model is scored on the same
//! (origin, horizon) pairs: those where the target and every baseline exist (a model that
//! does not forecast that far, as the boosted trees beyond six hours, has no score). The blend
//! (`ensemble`) weighs the models by their skill on the forecasts verified so far, as when
//! serving.

use serde::Serialize;

use super::features::Position;
use super::hourly::{Column, Hourly};
use super::skill::Skill;
use super::{Model, NotTrained, Settings, Trained, baselines, blend, train};
use crate::domain::Quantity;

/// Share of the hours trained on before the first test origin.
pub const TRAIN_SHARE: f64 = 0.7;

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub quantity: Quantity,
    /// Hours in the series (first to last observation).
    pub hours: usize,
    /// Hours before the first test origin.
    pub train_hours: usize,
    /// When the models were fitted again, and on how much of the past (`refit_hours`
    /// and `history_hours` in JSON).
    #[serde(flatten)]
    pub refits: Refits,
    pub fits: usize,
    pub models: Vec<ModelScore>,
}

/// When the models are fitted again during the test, and on how much of the past.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Refits {
    /// Hours between fits.
    #[serde(rename = "refit_hours")]
    pub every: usize,
    /// The most hours a fit sees, up to its origin (`None`: every hour before it).
    #[serde(rename = "history_hours")]
    pub history: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelScore {
    pub model: Model,
    pub horizons: Vec<Score>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub horizon: u8,
    /// Test points: (origin, horizon) pairs scored.
    pub n: usize,
    pub mae: f64,
    pub rmse: f64,
    /// MAE over persistence's MAE on the same points.
    pub ratio_to_persistence: f64,
}

#[derive(Default, Clone, Copy)]
struct Sums {
    n: usize,
    abs: f64,
    sq: f64,
}

pub fn evaluate(
    series: &Hourly,
    quantity: Quantity,
    position: Position,
    horizons: &[u8],
    settings: &Settings,
    refits: Refits,
) -> Result<Evaluation, NotTrained> {
    let column = Column::of(quantity).ok_or(NotTrained::Quantity { quantity: quantity.name() })?;
    let hours = series.len();
    let train_hours = (hours as f64 * TRAIN_SHARE) as usize;
    let mut sums = vec![vec![Sums::default(); horizons.len()]; Model::ALL.len()];
    let mut trained: Option<Trained> = None;
    let mut skill = Skill::default();
    let mut fits = 0;
    for offset in train_hours..hours {
        let origin = series.start + offset as i64;
        if (offset - train_hours).is_multiple_of(refits.every.max(1)) {
            // Only what was known at the origin.
            let known = series.as_of(offset + 1, refits.history.unwrap_or(usize::MAX));
            trained = Some(train(&known, quantity, position, settings)?);
            fits += 1;
        }
        let Some(model) = &trained else { continue };
        skill.verify(origin, |hour| series.get(hour, column));
        let mut runs = baselines(series, quantity, origin);
        runs.extend(model.forecast(series, position, origin));
        runs.push(blend(&skill, &runs, Some(model)));
        skill.issue(origin, &runs);
        for (k, &h) in horizons.iter().enumerate() {
            let Some(truth) = series.get(origin + i64::from(h), column) else { continue };
            let index = usize::from(h) - 1;
            // Every model that forecasts this far must have a value.
            let predictions: Option<Vec<(Model, f32)>> = runs
                .iter()
                .filter(|r| r.model.reach() >= h)
                .map(|r| Some((r.model, r.values.get(index).copied().flatten()?)))
                .collect();
            let reaching = Model::ALL.iter().filter(|m| !m.needs_providers() && m.reach() >= h).count();
            let Some(predictions) = predictions.filter(|p| p.len() == reaching) else { continue };
            for (model, prediction) in predictions {
                let error = f64::from(prediction - truth);
                let s = &mut sums[model.index()][k];
                s.n += 1;
                s.abs += error.abs();
                s.sq += error * error;
            }
        }
    }
    let persistence: Vec<f64> = sums[0].iter().map(|s| s.abs / s.n.max(1) as f64).collect();
    // Every model but the providers', which an offline history has none of.
    let models = (Model::ALL.into_iter().filter(|&m| !m.needs_providers()))
        .map(|model| (model, &sums[model.index()]))
        .map(|(model, per)| ModelScore {
            model,
            horizons: horizons
                .iter()
                .zip(per)
                .zip(&persistence)
                .map(|((&horizon, s), &p)| {
                    // NaN (null in JSON) where the model does not forecast this far.
                    let n = if s.n == 0 { f64::NAN } else { s.n as f64 };
                    let mae = s.abs / n;
                    Score {
                        horizon,
                        n: s.n,
                        mae: round3(mae),
                        rmse: round3((s.sq / n).sqrt()),
                        ratio_to_persistence: if p > 0.0 { round3(mae / p) } else { f64::NAN },
                    }
                })
                .collect(),
        })
        .collect();
    Ok(Evaluation { quantity, hours, train_hours, refits, fits, models })
}

/// Evaluates every station of `rows` (time-ordered observations), one per core at a time.
pub fn by_station(
    rows: &[crate::observations::Row],
    positions: &[(String, (f64, f64))],
    quantity: Quantity,
    horizons: &[u8],
    settings: &Settings,
    refits: Refits,
) -> Vec<(String, Result<Evaluation, NotTrained>)> {
    let mut stations: Vec<&str> = Vec::new();
    for row in rows {
        if !stations.contains(&row.station.as_str()) {
            stations.push(&row.station);
        }
    }
    let one = |station: &str| {
        let series = Hourly::from_observations(rows.iter().filter(|r| r.station == station).map(|r| (r.at, &r.values)));
        let position = positions.iter().find(|(s, _)| s == station).map(|(_, p)| *p);
        (station.to_owned(), evaluate(&series, quantity, position, horizons, settings, refits))
    };
    let mut results = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for pair in stations.chunks(cores) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = pair.iter().map(|s| scope.spawn(move || one(s))).collect();
            for handle in handles {
                if let Ok(result) = handle.join() {
                    results.push(result);
                }
            }
        });
    }
    results
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Evaluation {
    /// A plain-text table: MAE (ratio to persistence) per model and horizon, then RMSE.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let Some(first) = self.models.first() else { return out };
        let header: Vec<String> =
            first.horizons.iter().map(|s| format!("{:>14}", format!("{} h", s.horizon))).collect();
        out.push_str(&format!(
            "{}: {} hours, trained on the first {}, re-fitted every {} h on {} ({} fits); test points per horizon: {}\n",
            self.quantity.name(),
            self.hours,
            self.train_hours,
            self.refits.every,
            self.refits.history.map_or("all hours before".to_owned(), |h| format!("at most the last {h} hours")),
            self.fits,
            first.horizons.iter().map(|s| s.n.to_string()).collect::<Vec<_>>().join(", ")
        ));
        // A section: a row per model, `-` where it does not forecast that far.
        let mut section = |title: &str, cell: fn(&Score) -> String| {
            out.push_str(&format!("{title}\n{:<18}{}\n", "model", header.join("")));
            for m in &self.models {
                let cells: Vec<String> = m
                    .horizons
                    .iter()
                    .map(|s| format!("{:>14}", if s.n == 0 { "-".to_owned() } else { cell(s) }))
                    .collect();
                out.push_str(&format!("{:<18}{}\n", m.model.name(), cells.join("")));
            }
        };
        section("MAE (ratio to persistence)", |s| format!("{:.2} ({:.2})", s.mae, s.ratio_to_persistence));
        section("RMSE", |s| format!("{:.2}", s.rmse));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::forecast::Run;
    use crate::analytics::forecast::forest::Forestry;
    use crate::analytics::forecast::testing;

    const WEEKLY: Refits = Refits { every: 24 * 7, history: None };

    /// KEWR's real observations from 2013-01-01 for `days` days.
    fn kewr(days: i64) -> Hourly {
        testing::kewr(0, days)
    }

    #[test]
    fn on_real_hours_every_learned_model_beats_persistence_six_hours_ahead() {
        let series = kewr(75);
        let settings = Settings { forest: Forestry { trees: 8, ..Forestry::default() }, ..Settings::default() };
        let e = evaluate(&series, Quantity::Temperature, testing::KEWR, &[1, 6], &settings, WEEKLY).unwrap();
        assert_eq!((e.hours, e.train_hours, e.fits), (1800, 1260, 4));
        let ratio = |model: Model, k: usize| {
            let score = &e.models.iter().find(|m| m.model == model).unwrap().horizons[k];
            assert!(score.n > 500, "{model:?}: {} points", score.n);
            score.ratio_to_persistence
        };
        for model in [Model::Ridge, Model::RandomForest, Model::Mlp, Model::GradientBoosting, Model::Ensemble] {
            assert!(ratio(model, 1) < 0.75, "{model:?} at 6 h: {}", ratio(model, 1));
        }
        assert_eq!(ratio(Model::Persistence, 0), 1.0);
        // The same hour yesterday is no forecast for the next hour.
        assert!(ratio(Model::Yesterday, 0) > 2.0);
    }

    #[test]
    fn on_whole_fahrenheit_hours_the_learned_runs_are_values_the_station_reported() {
        let series = kewr(30);
        let kewr = testing::KEWR;
        let settings = Settings { forest: Forestry { trees: 4, ..Forestry::default() }, ..Settings::default() };
        let trained = train(&series, Quantity::Temperature, kewr, &settings).unwrap();
        let end = series.end().unwrap();
        let reported: Vec<f32> = (series.start..=end).filter_map(|h| series.get(h, Column::Temperature)).collect();
        // Ten days before the end: the month's last days were warmer than any before
        // (17 °C on the 31st), and a forecast beyond what was reported is left alone.
        let runs = trained.forecast(&series, kewr, end - 240);
        assert_eq!(runs.len(), 4);
        for run in &runs {
            let values: Vec<f32> = run.values.iter().flatten().copied().collect();
            assert_eq!(values.len(), usize::from(run.model.reach()));
            assert!(values.iter().all(|v| reported.contains(v)), "{:?}: {values:?}", run.model);
        }
        let beyond = trained.forecast(&series, kewr, end);
        assert!(beyond[0].values.iter().flatten().any(|v| *v > 17.8 && !reported.contains(v)), "{beyond:?}");
        // The blend too, however the models are weighed.
        let mut blend = Run { model: Model::Ensemble, values: vec![Some(-1.08); 24] };
        trained.snap(&mut blend);
        assert_eq!(blend.values[0], Some(-1.1)); // 30 °F (-1.0 was reported too)
    }

    /// A fit sees at most the history a live place keeps: 300 hours give 275 origins (the
    /// first day has no day before it, the last hour nothing after it), too few to train
    /// on, however many hours the file has.
    #[test]
    fn a_fit_sees_only_the_last_history_hours() {
        let series = kewr(40);
        let kept = Refits { every: 24 * 7, history: Some(300) };
        let error = evaluate(&series, Quantity::Temperature, None, &[1], &Settings::default(), kept).unwrap_err();
        assert_eq!(error, NotTrained::TooLittle { quantity: "temperature", have: 275, need: 336 });
    }

    #[test]
    fn every_model_is_at_its_index_in_all() {
        assert!(Model::ALL.iter().enumerate().all(|(i, m)| m.index() == i));
    }

    #[test]
    fn too_little_history_is_said_with_how_much_there_is() {
        let series = kewr(10);
        let error = train(&series, Quantity::Temperature, None, &Settings::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "too little history: 214 hours of temperature with a day before them, 336 needed"
        );
        assert!(matches!(
            train(&series, Quantity::Visibility, None, &Settings::default()),
            Err(NotTrained::Quantity { .. })
        ));
    }
}
