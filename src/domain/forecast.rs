//! Hourly forecasts: each provider's own run, and the blend of all of them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{LocationRef, SourceName, Units};

/// One forecast hour, metric. A quantity the source does not forecast is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ForecastHour {
    pub time: DateTime<Utc>,
    pub temperature: Option<f64>,
    pub humidity: Option<f64>,
    /// mm in the hour.
    pub precipitation: Option<f64>,
    /// %, 0-100.
    pub precipitation_probability: Option<f64>,
    pub wind_speed: Option<f64>,
    pub wind_direction: Option<f64>,
    pub weather_code: Option<u8>,
    /// Standard deviation across sources (blend only; `null` with fewer than two).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
}

/// Disagreement between sources for one blended hour.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Spread {
    pub temperature: Option<f64>,
    pub wind_speed: Option<f64>,
    pub precipitation: Option<f64>,
}

impl ForecastHour {
    pub fn empty(time: DateTime<Utc>) -> Self {
        Self {
            time,
            temperature: None,
            humidity: None,
            precipitation: None,
            precipitation_probability: None,
            wind_speed: None,
            wind_direction: None,
            weather_code: None,
            spread: None,
        }
    }

    fn in_units(&self, units: Units) -> Self {
        use super::Quantity::{Precipitation, Temperature, WindSpeed};
        let mut h = self.clone();
        h.temperature = h.temperature.map(|v| units.convert(Temperature, v));
        h.precipitation = h.precipitation.map(|v| units.convert(Precipitation, v));
        h.wind_speed = h.wind_speed.map(|v| units.convert(WindSpeed, v));
        if let (Some(s), Units::Imperial) = (&mut h.spread, units) {
            // A spread is a difference: scale it, do not offset it.
            let scale = |q: super::Quantity, v: f64| q.spec().imperial.apply_to_difference(v);
            s.temperature = s.temperature.map(|v| scale(Temperature, v));
            s.wind_speed = s.wind_speed.map(|v| scale(WindSpeed, v));
            s.precipitation = s.precipitation.map(|v| scale(Precipitation, v));
        }
        h
    }
}

/// One provider's forecast run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ForecastRun {
    #[schema(value_type = String)]
    pub name: SourceName,
    pub issued_at: DateTime<Utc>,
    pub hourly: Vec<ForecastHour>,
}

/// `/forecast` and `data` of the WebSocket `forecast` message.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Forecast {
    pub location: LocationRef,
    pub generated_at: DateTime<Utc>,
    pub units: Units,
    pub hourly: Vec<ForecastHour>,
    pub sources: Vec<ForecastRun>,
    /// The models learned from this place's own history (absent where forecasting is off
    /// or the place is not learned by this instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Learned>,
}

/// What the learned models say of a place: every model's run from the last complete
/// hour, with its live skill.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Learned {
    /// `trained`: the learned models run; `learning`: only the baselines do yet, and
    /// `detail` says why.
    pub status: LearnedStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The last complete hour (its start): every run forecasts the hours after it.
    pub issued_at: DateTime<Utc>,
    /// Each quantity's learned models: when they were fitted and on how much.
    pub trained: Vec<TrainedSummary>,
    pub runs: Vec<ModelRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LearnedStatus {
    Trained,
    Learning,
}

/// One quantity's learned models.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TrainedSummary {
    pub quantity: String,
    pub trained_at: DateTime<Utc>,
    /// The last hour of the history they were fitted on.
    pub trained_until: DateTime<Utc>,
    /// Hours of that history used as forecast origins.
    pub hours: usize,
    /// Origins of the providers' runs the `providers_corrected` model learned from; `null`
    /// until the providers' blend has run here for a week.
    pub providers_hours: Option<usize>,
}

/// One model's forecast and its skill.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelRun {
    /// persistence, yesterday, climatology, ridge, random_forest, mlp, gradient_boosting
    /// (the first 6 hours; null beyond), providers, providers_corrected (the providers'
    /// blend corrected for the place) or ensemble (every other weighed by its skill).
    pub model: String,
    /// 1 to 24 hours ahead of `issued_at`.
    pub hourly: Vec<ModelHour>,
    /// Per quantity, the rolling mean absolute error at each horizon.
    pub skill: Vec<ModelSkill>,
}

/// One forecast hour of a model (the quantities it learns).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelHour {
    pub time: DateTime<Utc>,
    pub temperature: Option<f64>,
    pub humidity: Option<f64>,
    pub pressure: Option<f64>,
    pub wind_speed: Option<f64>,
}

/// A model's live skill for one quantity: every forecast it issued scored against the
/// hour later observed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelSkill {
    pub quantity: String,
    /// `mae[h - 1]`: the mean absolute error h hours ahead over the last 14 days;
    /// `null` until 48 forecasts at that horizon were verified.
    pub mae: Vec<Option<f64>>,
    /// `verified[h - 1]`: how many forecasts h hours ahead were verified (up to 336).
    pub verified: Vec<u32>,
}

impl ModelHour {
    pub fn empty(time: DateTime<Utc>) -> Self {
        Self { time, temperature: None, humidity: None, pressure: None, wind_speed: None }
    }

    pub fn get(&self, quantity: super::Quantity) -> Option<f64> {
        use super::Quantity::*;
        match quantity {
            Temperature => self.temperature,
            Humidity => self.humidity,
            Pressure => self.pressure,
            WindSpeed => self.wind_speed,
            _ => None,
        }
    }

    pub fn set(&mut self, quantity: super::Quantity, value: Option<f64>) {
        use super::Quantity::*;
        match quantity {
            Temperature => self.temperature = value,
            Humidity => self.humidity = value,
            Pressure => self.pressure = value,
            WindSpeed => self.wind_speed = value,
            _ => {}
        }
    }
}

/// The quantities the learned models forecast.
pub const LEARNED_QUANTITIES: [super::Quantity; 4] =
    [super::Quantity::Temperature, super::Quantity::Humidity, super::Quantity::Pressure, super::Quantity::WindSpeed];

impl Learned {
    pub fn in_units(&self, units: Units) -> Self {
        let mut out = self.clone();
        for run in &mut out.runs {
            for hour in &mut run.hourly {
                for q in LEARNED_QUANTITIES {
                    hour.set(q, hour.get(q).map(|v| units.convert(q, v)));
                }
            }
            if units == Units::Imperial {
                for skill in &mut run.skill {
                    let Some(q) = super::Quantity::from_name(&skill.quantity) else { continue };
                    let scale = |v: f64| q.spec().imperial.apply_to_difference(v);
                    skill.mae.iter_mut().for_each(|m| *m = m.map(scale));
                }
            }
        }
        out
    }

    /// Only `model`'s run.
    pub fn only(&self, model: &str) -> Self {
        Self { runs: self.runs.iter().filter(|r| r.model == model).cloned().collect(), ..self.clone() }
    }
}

impl Forecast {
    pub fn in_units(&self, units: Units) -> Self {
        let convert = |hours: &[ForecastHour]| hours.iter().map(|h| h.in_units(units)).collect();
        Self {
            location: self.location.clone(),
            generated_at: self.generated_at,
            units,
            hourly: convert(&self.hourly),
            sources: self
                .sources
                .iter()
                .map(|r| ForecastRun { name: r.name.clone(), issued_at: r.issued_at, hourly: convert(&r.hourly) })
                .collect(),
            models: self.models.as_ref().map(|m| m.in_units(units)),
        }
    }

    /// The first `hours` hours from `from` on (the current hour included).
    pub fn window(&self, from: DateTime<Utc>, hours: usize) -> Self {
        let start = from - chrono::Duration::hours(1);
        let end = from + chrono::Duration::hours(hours as i64);
        let cut = |list: &[ForecastHour]| {
            list.iter().filter(|h| h.time > start && h.time < end).take(hours).cloned().collect::<Vec<_>>()
        };
        Self {
            location: self.location.clone(),
            generated_at: self.generated_at,
            units: self.units,
            hourly: cut(&self.hourly),
            sources: self
                .sources
                .iter()
                .map(|r| ForecastRun { name: r.name.clone(), issued_at: r.issued_at, hourly: cut(&r.hourly) })
                .collect(),
            models: self.models.clone(),
        }
    }
}

/// The WMO weather interpretation code's description (the codes Open-Meteo uses).
pub fn describe_weather_code(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "Clear sky",
        1 => "Mainly clear",
        2 => "Partly cloudy",
        3 => "Overcast",
        45 => "Fog",
        48 => "Depositing rime fog",
        51 => "Light drizzle",
        53 => "Moderate drizzle",
        55 => "Dense drizzle",
        56 => "Light freezing drizzle",
        57 => "Dense freezing drizzle",
        61 => "Slight rain",
        63 => "Moderate rain",
        65 => "Heavy rain",
        66 => "Light freezing rain",
        67 => "Heavy freezing rain",
        71 => "Slight snow fall",
        73 => "Moderate snow fall",
        75 => "Heavy snow fall",
        77 => "Snow grains",
        80 => "Slight rain showers",
        81 => "Moderate rain showers",
        82 => "Violent rain showers",
        85 => "Slight snow showers",
        86 => "Heavy snow showers",
        95 => "Thunderstorm",
        96 => "Thunderstorm with slight hail",
        99 => "Thunderstorm with heavy hail",
        _ => return None,
    })
}
