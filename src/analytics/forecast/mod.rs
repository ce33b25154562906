//! Forecasts learned per place: 1 to 24 hours ahead of the last complete hour, from the
//! place's own hourly history.
//!
//! Four learned models — ridge regression per horizon, one random forest and one small
//! neural network over every horizon, and gradient-boosted trees per horizon for the
//! first six hours — predict the change from the origin hour to the target hour from the
//! same [`features`](features::Origin). They are judged against
//! baselines that need no training: persistence (the origin's value), the same hour the
//! day before, and the hour's climatology (its mean over the last 14 days).
//!
//! Pure functions: [`train`] fits a [`Trained`] set from a [`Hourly`] series and
//! [`Trained::forecast`] runs it; [`evaluate`](evaluate::evaluate) replays a history with
//! a rolling origin. Serving (scheduling, persistence, live skill) is the forecaster
//! actor's.

pub mod boost;
pub mod corrected;
pub mod evaluate;
pub mod features;
pub mod forest;
pub mod grid;
pub mod hourly;
pub mod mlp;
pub mod ridge;
pub mod skill;
#[cfg(test)]
pub(crate) mod testing;
pub mod tree;

use serde::{Deserialize, Serialize};

use crate::domain::Quantity;
use boost::{BOOSTED_HORIZONS, Boosted, Boosting};
use features::{FEATURES, FOREST_FEATURES, Origin, Position, Scaler, Sunlight, climatology};
use forest::{Forest, Forestry};
use grid::Grid;
use hourly::{Column, Hourly};
use mlp::Mlp;
use ridge::Ridge;
use skill::Skill;

/// Hours ahead forecast: 1 to `HORIZONS`.
pub const HORIZONS: u8 = 24;

/// Every forecaster, learned or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    Persistence,
    Yesterday,
    Climatology,
    Ridge,
    RandomForest,
    Mlp,
    /// Gradient-boosted trees, for the first [`BOOSTED_HORIZONS`] hours.
    GradientBoosting,
    /// The providers' blend (when providers run for the place), weighed like a model.
    Providers,
    /// The providers' blend corrected for the place by what it observed (see
    /// [`corrected`]), once providers have run there for a week.
    ProvidersCorrected,
    /// Every model weighted by its live skill (the inverse square of its rolling MAE);
    /// the learned models' mean until any skill is known.
    Ensemble,
}

impl Model {
    pub const ALL: [Model; 10] = [
        Model::Persistence,
        Model::Yesterday,
        Model::Climatology,
        Model::Ridge,
        Model::RandomForest,
        Model::Mlp,
        Model::GradientBoosting,
        Model::Providers,
        Model::ProvidersCorrected,
        Model::Ensemble,
    ];
    pub const LEARNED: [Model; 4] = [Model::Ridge, Model::RandomForest, Model::Mlp, Model::GradientBoosting];

    pub fn name(self) -> &'static str {
        match self {
            Model::Persistence => "persistence",
            Model::Yesterday => "yesterday",
            Model::Climatology => "climatology",
            Model::Ridge => "ridge",
            Model::RandomForest => "random_forest",
            Model::Mlp => "mlp",
            Model::GradientBoosting => "gradient_boosting",
            Model::Providers => "providers",
            Model::ProvidersCorrected => "providers_corrected",
            Model::Ensemble => "ensemble",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// How many hours ahead it forecasts (from the first).
    pub fn reach(self) -> u8 {
        if self == Model::GradientBoosting { BOOSTED_HORIZONS } else { HORIZONS }
    }

    /// Whether it runs only where providers forecast the place (never in an offline
    /// evaluation of observations alone).
    pub fn needs_providers(self) -> bool {
        matches!(self, Model::Providers | Model::ProvidersCorrected)
    }

    /// Its place in [`Model::ALL`] (the order they are declared in).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How the models are trained.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hours of the target observed at an origin, with 24 hours before it, needed to train.
    pub min_hours: usize,
    pub ridge_alpha: f64,
    /// Reweightings toward least absolute error (0: least squares).
    pub ridge_iterations: usize,
    pub forest: Forestry,
    pub mlp: mlp::Training,
    pub boosting: Boosting,
    /// Whether runs are snapped to the values the place reports (see [`grid`]).
    pub grid: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_hours: 14 * 24,
            ridge_alpha: 1.0,
            ridge_iterations: 2,
            forest: Forestry::default(),
            mlp: mlp::Training::default(),
            boosting: Boosting::default(),
            grid: true,
        }
    }
}

impl Settings {
    /// The same settings with the random draws of the forest, the network and the boosted
    /// trees moved by `offset` (0: the defaults'): how much of a score is the draw.
    pub fn reseeded(mut self, offset: u64) -> Self {
        self.forest.seed = self.forest.seed.wrapping_add(offset);
        self.mlp.seed = self.mlp.seed.wrapping_add(offset);
        self.boosting.seed = self.boosting.seed.wrapping_add(offset);
        self
    }
}

/// `[f32; 24]` with NaN as `null` (JSON has no NaN).
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HORIZONS;

    pub fn serialize<S: Serializer>(values: &[f32; HORIZONS as usize], s: S) -> Result<S::Ok, S::Error> {
        values.map(|v| (!v.is_nan()).then_some(v)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[f32; HORIZONS as usize], D::Error> {
        let values = <[Option<f32>; HORIZONS as usize]>::deserialize(d)?;
        Ok(values.map(|v| v.unwrap_or(f32::NAN)))
    }
}

/// A place's learned models for one quantity.
#[derive(Debug, Serialize, Deserialize)]
pub struct Trained {
    pub quantity: Quantity,
    /// The last hour (since the epoch) of the history trained on.
    pub trained_until: i64,
    /// Origins trained on (hours with the quantity observed).
    pub origins: usize,
    scaler: Scaler,
    /// Per horizon: the spread of the change (the network's output unit).
    spread: Vec<f32>,
    ridge: Vec<Ridge>,
    forest: Forest,
    mlp: Mlp,
    /// Per horizon up to [`BOOSTED_HORIZONS`] (empty in models kept by a build without).
    #[serde(default)]
    boosted: Vec<Boosted>,
    /// The values the place reports, when on a grid: the learned runs and the blend are
    /// snapped to it.
    #[serde(default)]
    grid: Grid,
}

/// Why a place has no learned models yet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotTrained {
    #[error("{quantity} is not forecast by the learned models")]
    Quantity { quantity: &'static str },
    #[error("too little history: {have} hours of {quantity} with a day before them, {need} needed")]
    TooLittle { quantity: &'static str, have: usize, need: usize },
    #[error("training failed: {0}")]
    Failed(String),
}

/// Fits every learned model on the whole of `series` (the last row included).
pub fn train(
    series: &Hourly,
    quantity: Quantity,
    position: Position,
    settings: &Settings,
) -> Result<Trained, NotTrained> {
    let column = Column::of(quantity).ok_or(NotTrained::Quantity { quantity: quantity.name() })?;
    let (Some(end), start) = (series.end(), series.start) else {
        return Err(NotTrained::TooLittle { quantity: quantity.name(), have: 0, need: settings.min_hours });
    };
    // Per horizon, the features (raw, then scaled in place) and change of every origin
    // with both ends observed.
    let mut rows: Vec<Vec<[f32; FEATURES]>> = vec![Vec::new(); usize::from(HORIZONS)];
    let mut targets: Vec<Vec<f32>> = vec![Vec::new(); usize::from(HORIZONS)];
    let mut origins = 0;
    let sunlight = Sunlight::over(position, start, end + i64::from(HORIZONS));
    for origin in start + 24..end {
        if series.get(origin - 24, column).is_none() {
            continue;
        }
        let Some(at) = Origin::new(series, column, &sunlight, origin) else { continue };
        let now = at.now();
        origins += 1;
        for h in 1..=HORIZONS {
            let Some(then) = series.get(origin + i64::from(h), column) else { continue };
            rows[usize::from(h - 1)].push(at.at(h));
            targets[usize::from(h - 1)].push(then - now);
        }
    }
    if origins < settings.min_hours || targets.iter().any(Vec::is_empty) {
        return Err(NotTrained::TooLittle { quantity: quantity.name(), have: origins, need: settings.min_hours });
    }
    let scaler = Scaler::fit(&rows[0]);
    rows.iter_mut().flatten().for_each(|row| *row = scaler.apply(row));

    // Per horizon the ridge, and for the first hours the boosted trees, on the same rows.
    let mut ridge = Vec::with_capacity(rows.len());
    let mut boosted = Vec::with_capacity(usize::from(BOOSTED_HORIZONS));
    let mut spread = Vec::with_capacity(rows.len());
    for (rows, targets) in rows.iter().zip(&targets) {
        let sd = change_spread(targets);
        spread.push(sd);
        let floor = f64::from(sd) / 20.0;
        ridge.push(
            Ridge::fit_absolute(rows, targets, settings.ridge_alpha, floor, settings.ridge_iterations)
                .ok_or_else(|| failed("ridge: singular"))?,
        );
        if boosted.len() < usize::from(BOOSTED_HORIZONS) {
            boosted.push(
                Boosted::fit(rows, targets, settings.boosting)
                    .ok_or_else(|| failed("gradient boosting: no samples"))?,
            );
        }
    }

    // The forest and the network see every horizon; the forest an eighth of each
    // horizon's origins, spread so that every origin gives three horizons. Both in units
    // of each horizon's spread, so that the long horizons' large changes do not decide
    // every split.
    let every = || (0..rows.len()).flat_map(|h| (0..rows[h].len()).map(move |k| (h, k)));
    let pooled: Vec<(usize, usize)> = every().filter(|(h, k)| (k + 3 * h) % 8 == 0).collect();
    let pooled_rows: Vec<[f32; FEATURES]> = pooled.iter().map(|&(h, k)| rows[h][k]).collect();
    let pooled_targets: Vec<f32> = pooled.iter().map(|&(h, k)| targets[h][k] / spread[h]).collect();
    let forest = Forest::fit(&pooled_rows, &pooled_targets, FOREST_FEATURES, settings.forest)
        .ok_or_else(|| failed("random forest: no samples"))?;

    let flat: Vec<(usize, usize)> = every().collect();
    let mlp = Mlp::fit(
        flat.len(),
        rows[0].len(),
        |i| {
            let (h, k) = flat[i];
            (rows[h][k], targets[h][k] / spread[h])
        },
        settings.mlp,
    )
    .ok_or_else(|| failed("mlp: no samples"))?;

    let grid = if settings.grid {
        Grid::of((start..=end).filter_map(|hour| series.get(hour, column)))
    } else {
        Grid::default()
    };
    Ok(Trained { quantity, trained_until: end, origins, scaler, spread, ridge, forest, mlp, boosted, grid })
}

/// The standard deviation of a horizon's changes (at least 0.1): the network's output
/// unit, and a twentieth of it the ridge's floor on absolute residuals.
fn change_spread(changes: &[f32]) -> f32 {
    let n = changes.len() as f32;
    let mean = changes.iter().sum::<f32>() / n;
    (changes.iter().map(|y| (y - mean).powi(2)).sum::<f32>() / n).sqrt().max(0.1)
}

fn failed(message: impl Into<String>) -> NotTrained {
    NotTrained::Failed(message.into())
}

/// Forecasts for horizons 1..=HORIZONS: `values[h - 1]`, `None` where the model has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub model: Model,
    pub values: Vec<Option<f32>>,
}

/// The baselines' forecasts from `origin`.
pub fn baselines(series: &Hourly, quantity: Quantity, origin: i64) -> Vec<Run> {
    let Some(column) = Column::of(quantity) else { return Vec::new() };
    let now = series.get(origin, column);
    let horizons = || 1..=i64::from(HORIZONS);
    vec![
        Run { model: Model::Persistence, values: horizons().map(|_| now).collect() },
        Run { model: Model::Yesterday, values: horizons().map(|h| series.get(origin + h - 24, column)).collect() },
        Run {
            model: Model::Climatology,
            values: horizons().map(|h| climatology(series, column, origin, origin + h)).collect(),
        },
    ]
}

/// The skill-weighted blend of `runs` (the `ensemble`), on the place's grid when it has
/// learned models.
pub fn blend(skill: &Skill, runs: &[Run], trained: Option<&Trained>) -> Run {
    let mut blend = skill.blend(runs);
    if let Some(trained) = trained {
        trained.snap(&mut blend);
    }
    blend
}

impl Trained {
    /// Whether these models were fitted on this build's features (models kept by an
    /// earlier version with other features are trained again).
    pub fn is_current(&self) -> bool {
        self.scaler.features() == FEATURES && self.boosted.len() == usize::from(BOOSTED_HORIZONS)
    }

    /// Moves a run's values to the place's grid (see [`grid`]); the learned models' runs
    /// already are, and [`blend`] puts the blend there.
    pub fn snap(&self, run: &mut Run) {
        for value in run.values.iter_mut().flatten() {
            *value = self.grid.snap(*value);
        }
    }

    /// The learned models' forecasts from `origin` (their blend is
    /// [`Skill::blend`](skill::Skill::blend)'s); empty when the quantity was not observed
    /// at the origin.
    pub fn forecast(&self, series: &Hourly, position: Position, origin: i64) -> Vec<Run> {
        let Some(column) = Column::of(self.quantity) else { return Vec::new() };
        let sunlight = Sunlight::over(position, origin, origin + i64::from(HORIZONS));
        let Some(at) = Origin::new(series, column, &sunlight, origin) else { return Vec::new() };
        let now = at.now();
        let rows: Vec<[f32; FEATURES]> = (1..=HORIZONS).map(|h| self.scaler.apply(&at.at(h))).collect();
        let ridge: Vec<f32> = rows.iter().zip(&self.ridge).map(|(x, m)| now + m.predict(x)).collect();
        let forest: Vec<f32> = rows.iter().zip(&self.spread).map(|(x, s)| now + self.forest.predict(x) * s).collect();
        let mlp: Vec<f32> = rows.iter().zip(&self.spread).map(|(x, s)| now + self.mlp.predict(x) * s).collect();
        let some = |v: Vec<f32>| v.into_iter().map(|v| Some(self.grid.snap(v))).collect::<Vec<_>>();
        let boosted = (rows.iter().zip(&self.boosted).map(|(x, m)| Some(self.grid.snap(now + m.predict(x)))))
            .chain(std::iter::repeat(None))
            .take(usize::from(HORIZONS))
            .collect();
        vec![
            Run { model: Model::Ridge, values: some(ridge) },
            Run { model: Model::RandomForest, values: some(forest) },
            Run { model: Model::Mlp, values: some(mlp) },
            Run { model: Model::GradientBoosting, values: boosted },
        ]
    }
}
