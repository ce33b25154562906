//! OpenWeatherMap current weather (`/data/2.5/weather`) and 5-day / 3-hour forecast
//! (`/data/2.5/forecast`). Needs an API key (`appid`); isobar always sends
//! `units=metric` (the default would be Kelvin). Trust the HTTP status, never `cod`
//! (it is a number in one endpoint and a string in the other). Visibility is in metres,
//! rain and snow in mm per 1 h (current) or 3 h (forecast); `pop` is 0-1.

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::sync::Arc;
use std::time::Duration;

use super::require_api_key;
use super::upstream::Upstream;
use super::{FetchResult, NotRunning, Provider, ProviderData, ProviderSettings, SourceError, combine, fetch_each, num};
use crate::domain::Quantity::*;
use crate::domain::{ForecastHour, ForecastRun, Location, LocationId, Reading, SourceName};

pub const NAME: &str = "openweathermap";

/// OpenWeatherMap as a [`Provider`]: current weather and the 5-day forecast per location.
pub struct OpenWeatherMap {
    api_key: String,
}

impl Provider for OpenWeatherMap {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "openweathermap";

    fn check(settings: &ProviderSettings, _: &str) -> Result<(), NotRunning> {
        require_api_key(settings, Self::KEY)
    }

    fn new(settings: &ProviderSettings) -> Self {
        Self { api_key: settings.api_key.trim().to_owned() }
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        fetch_each(targets, |l| async move {
            let (result, fresh) = self.fetch_one(upstream, l).await;
            (result.map_err(|e| explain(e, Self::KEY)), fresh)
        })
        .await
    }
}

/// A 401 is a bad key: name the setting to fix (`sources.<key>.api_key`; the air
/// pollution API takes the same kind of key).
pub(super) fn explain(error: SourceError, key: &str) -> SourceError {
    match error {
        SourceError::Refused { status: 401, .. } => SourceError::Misconfigured(format!(
            "OpenWeatherMap rejected the API key (HTTP 401): check sources.{key}.api_key (a new key can take a while to activate)"
        )),
        other => other,
    }
}

impl OpenWeatherMap {
    async fn fetch_one(&self, upstream: &Upstream, l: &Location) -> (Result<ProviderData, SourceError>, Duration) {
        let base = upstream.base_url();
        let current = upstream.get_json(&current_url(base, l.latitude, l.longitude, &self.api_key)).await;
        if let Err(e) = &current
            && !e.retryable()
        {
            return (Err(e.clone()), Duration::ZERO);
        }
        let forecast = upstream.get_json(&forecast_url(base, l.latitude, l.longitude, &self.api_key)).await;
        combine(
            current,
            forecast,
            |body| parse_current(body, &l.id, Units::Metric),
            |body| parse_forecast(body, Units::Metric, Utc::now()),
        )
    }
}

/// Units a body is in: what isobar asks for, or the API default the fixtures were
/// recorded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    Metric,
    /// Kelvin, m/s.
    Standard,
}

pub fn current_url(base: &str, latitude: f64, longitude: f64, key: &str) -> String {
    format!(
        "{}/data/2.5/weather?lat={latitude:.4}&lon={longitude:.4}&appid={key}&units=metric",
        base.trim_end_matches('/')
    )
}

pub fn forecast_url(base: &str, latitude: f64, longitude: f64, key: &str) -> String {
    format!(
        "{}/data/2.5/forecast?lat={latitude:.4}&lon={longitude:.4}&appid={key}&units=metric",
        base.trim_end_matches('/')
    )
}

/// WMO code for an OpenWeatherMap condition id.
pub fn weather_code(id: u64) -> Option<u8> {
    Some(match id {
        200..=299 => 95,
        300 => 51,
        302 | 312 | 314 => 55,
        301..=399 => 53,
        500 => 61,
        501 => 63,
        502..=504 => 65,
        511 => 66,
        520 => 80,
        521 => 81,
        522 | 531 => 82,
        600 => 71,
        601 => 73,
        602 => 75,
        611..=616 => 66,
        620 => 85,
        621 | 622 => 86,
        701 | 711 | 721 | 741 => 45,
        800 => 0,
        801 => 1,
        802 => 2,
        803 | 804 => 3,
        _ => return None,
    })
}

fn source() -> SourceName {
    SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"))
}

fn celsius(value: Option<f64>, units: Units) -> Option<f64> {
    match units {
        Units::Metric => value,
        Units::Standard => value.map(|k| ((k - 273.15) * 100.0).round() / 100.0),
    }
}

fn condition(item: &Value) -> Option<u8> {
    item.get("weather")?.get(0)?.get("id")?.as_u64().and_then(weather_code)
}

fn unix(item: &Value) -> Option<DateTime<Utc>> {
    item.get("dt")?.as_i64().and_then(|s| DateTime::from_timestamp(s, 0))
}

/// A current-weather body as a reading of `id`.
pub fn parse_current(body: &Value, id: &LocationId, units: Units) -> Result<Reading, SourceError> {
    let observed_at = unix(body).ok_or_else(|| SourceError::Malformed("no dt".into()))?;
    let mut r = Reading::new(id.clone(), source(), observed_at);
    r.set(Temperature, celsius(num(body, &["main", "temp"]), units));
    r.set(Humidity, num(body, &["main", "humidity"]));
    r.set(Pressure, num(body, &["main", "pressure"]));
    r.set(WindSpeed, num(body, &["wind", "speed"]));
    r.set(WindDirection, num(body, &["wind", "deg"]));
    r.set(Visibility, num(body, &["visibility"]).map(|m| m / 1000.0));
    let rain = num(body, &["rain", "1h"]);
    let snow = num(body, &["snow", "1h"]);
    let precipitation = match (rain, snow) {
        (None, None) if body.get("weather").is_some() => Some(0.0),
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)).filter(|_| a.is_some() || b.is_some()),
    };
    r.set(Precipitation, precipitation);
    r.set(CloudCover, num(body, &["clouds", "all"]));
    r.weather_code = condition(body);
    Ok(r)
}

/// A 5-day / 3-hour forecast body. Each 3-hour step becomes one hour of the run, with
/// the step's precipitation spread evenly (mm per hour).
pub fn parse_forecast(body: &Value, units: Units, fetched_at: DateTime<Utc>) -> Result<ForecastRun, SourceError> {
    let list = body.get("list").and_then(Value::as_array).ok_or_else(|| SourceError::Malformed("no list".into()))?;
    let hourly = list
        .iter()
        .filter_map(|item| {
            let mut h = ForecastHour::empty(unix(item)?);
            h.temperature = celsius(num(item, &["main", "temp"]), units);
            h.humidity = num(item, &["main", "humidity"]);
            h.wind_speed = num(item, &["wind", "speed"]);
            h.wind_direction = num(item, &["wind", "deg"]);
            h.precipitation_probability = num(item, &["pop"]).map(|p| (p * 100.0).round());
            let rain = num(item, &["rain", "3h"]).unwrap_or(0.0) + num(item, &["snow", "3h"]).unwrap_or(0.0);
            h.precipitation = Some((rain / 3.0 * 100.0).round() / 100.0);
            h.weather_code = condition(item);
            Some(h)
        })
        .collect();
    Ok(ForecastRun { name: source(), issued_at: fetched_at, hourly })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "current" => include_str!("../../../tests/fixtures/upstream/owm-current.json"),
            "forecast" => include_str!("../../../tests/fixtures/upstream/owm-forecast.json"),
            _ => include_str!("../../../tests/fixtures/upstream/owm-forecast-no-city.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn always_asks_for_metric_units() {
        assert_eq!(
            current_url("https://api.openweathermap.org", 51.51, -0.13, "KEY"),
            "https://api.openweathermap.org/data/2.5/weather?lat=51.5100&lon=-0.1300&appid=KEY&units=metric"
        );
    }

    #[test]
    fn parses_the_recorded_current_body_from_kelvin() {
        let r = parse_current(&fixture("current"), &LocationId::parse("2643743").unwrap(), Units::Standard).unwrap();
        assert_eq!(r.observed_at, DateTime::from_timestamp(1588048665, 0).unwrap());
        assert_eq!(
            r.values.to_array()[..9],
            [Some(8.93), Some(87.0), Some(1005.0), Some(5.7), Some(90.0), Some(8.0), Some(1.52), None, Some(75.0)]
        );
        assert_eq!(r.weather_code, Some(63));
    }

    #[test]
    fn parses_the_recorded_forecast_with_its_forty_steps() {
        let run = parse_forecast(&fixture("forecast"), Units::Standard, Utc::now()).unwrap();
        assert_eq!(run.hourly.len(), 40);
        let h = &run.hourly[0];
        assert_eq!(h.time, DateTime::from_timestamp(1742504400, 0).unwrap());
        assert_eq!(h.temperature, Some(14.87));
        assert_eq!(h.precipitation_probability, Some(0.0));
        assert_eq!(h.weather_code, Some(2));
        assert_eq!(parse_forecast(&fixture("no-city"), Units::Standard, Utc::now()).unwrap().hourly.len(), 40);
    }
}
