//! MET Norway Locationforecast 2.0, compact (`/weatherapi/locationforecast/2.0/compact`).
//!
//! No key, but an identifying User-Agent with contact details is mandatory (403
//! otherwise); coordinates carry at most 4 decimals; responses must not be re-requested
//! before `Expires`, and `If-Modified-Since` answers 304 (the upstream client does both).
//! 203 means the product is deprecated: the data is still used, with a warning. Every
//! block is optional: later steps lack `next_1_hours`. Data NLOD 2.0 / CC BY 4.0
//! ("Data from MET Norway").

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::sync::Arc;
use std::time::Duration;

use super::upstream::Upstream;
use super::{FetchResult, NotRunning, Provider, ProviderData, ProviderSettings, SourceError, fetch_each};
use super::{four_decimals, num, time};
use crate::domain::Quantity::*;
use crate::domain::{ForecastHour, ForecastRun, Location, LocationId, Reading, SourceName};

pub const NAME: &str = "met-norway";

/// MET Norway as a [`Provider`]: one location per request, a contact in the User-Agent.
pub struct MetNorway;

impl Provider for MetNorway {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "met_norway";

    fn check(_: &ProviderSettings, contact: &str) -> Result<(), NotRunning> {
        if contact.trim().is_empty() {
            return Err(NotRunning::Disabled(
                "MET Norway requires a contact in the User-Agent: set sources.contact (ISOBAR__SOURCES__CONTACT) to your e-mail or URL".into(),
            ));
        }
        Ok(())
    }

    fn new(_: &ProviderSettings) -> Self {
        Self
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        fetch_each(targets, |l| async move {
            let url = forecast_url(upstream.base_url(), l.latitude, l.longitude);
            match upstream.get_json(&url).await {
                Ok(f) => (parse(&f.body, &l.id, Utc::now()), f.fresh_for),
                Err(e) => (Err(explain(e)), Duration::ZERO),
            }
        })
        .await
    }
}

/// A 403 means the User-Agent was refused: name the setting to fix.
fn explain(error: SourceError) -> SourceError {
    match error {
        SourceError::Refused { status: 403, .. } => SourceError::Misconfigured(
            "MET Norway refused the User-Agent (HTTP 403): set sources.contact (ISOBAR__SOURCES__CONTACT) to your e-mail or URL so requests identify you".into(),
        ),
        other => other,
    }
}

pub fn forecast_url(base: &str, latitude: f64, longitude: f64) -> String {
    format!(
        "{}/weatherapi/locationforecast/2.0/compact?lat={}&lon={}",
        base.trim_end_matches('/'),
        four_decimals(latitude),
        four_decimals(longitude)
    )
}

/// WMO code for a MET symbol code (`partlycloudy_day` → 2).
pub fn weather_code(symbol: &str) -> Option<u8> {
    let base = symbol.split('_').next().unwrap_or(symbol);
    let base = base.strip_suffix("andthunder").map(|_| "thunder").unwrap_or(base);
    Some(match base {
        "clearsky" => 0,
        "fair" => 1,
        "partlycloudy" => 2,
        "cloudy" => 3,
        "fog" => 45,
        "lightrain" => 61,
        "rain" => 63,
        "heavyrain" => 65,
        "lightsleet" | "lightsleetshowers" => 66,
        "sleet" | "heavysleet" | "sleetshowers" | "heavysleetshowers" => 67,
        "lightsnow" => 71,
        "snow" => 73,
        "heavysnow" => 75,
        "lightrainshowers" => 80,
        "rainshowers" => 81,
        "heavyrainshowers" => 82,
        "lightsnowshowers" | "snowshowers" => 85,
        "heavysnowshowers" => 86,
        "thunder" => 95,
        _ => return None,
    })
}

fn symbol_of(data: &Value) -> Option<u8> {
    ["next_1_hours", "next_6_hours", "next_12_hours"]
        .iter()
        .find_map(|p| data.get(p)?.get("summary")?.get("symbol_code")?.as_str())
        .and_then(weather_code)
}

/// Parses a compact body: the step at or just before `now` is the current reading, every
/// step goes into the forecast run.
pub fn parse(body: &Value, id: &LocationId, now: DateTime<Utc>) -> Result<ProviderData, SourceError> {
    let series = body
        .get("properties")
        .and_then(|p| p.get("timeseries"))
        .and_then(Value::as_array)
        .ok_or_else(|| SourceError::Malformed("no properties.timeseries".into()))?;
    let source = SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"));
    let steps: Vec<(DateTime<Utc>, &Value)> =
        series.iter().filter_map(|s| Some((time(s, &["time"])?, s.get("data")?))).collect();
    let current = steps.iter().rev().find(|(t, _)| *t <= now).or_else(|| steps.first());
    let reading = current.map(|(t, data)| {
        let details = |k: &str| num(data, &["instant", "details", k]);
        let mut r = Reading::new(id.clone(), source.clone(), *t);
        r.set(Temperature, details("air_temperature"));
        r.set(Humidity, details("relative_humidity"));
        r.set(Pressure, details("air_pressure_at_sea_level"));
        r.set(WindSpeed, details("wind_speed"));
        r.set(WindDirection, details("wind_from_direction"));
        r.set(Precipitation, num(data, &["next_1_hours", "details", "precipitation_amount"]));
        r.set(CloudCover, details("cloud_area_fraction"));
        r.weather_code = symbol_of(data);
        r
    });
    let hourly: Vec<ForecastHour> = steps
        .iter()
        .map(|(t, data)| {
            let details = |k: &str| num(data, &["instant", "details", k]);
            let mut h = ForecastHour::empty(*t);
            h.temperature = details("air_temperature");
            h.humidity = details("relative_humidity");
            h.wind_speed = details("wind_speed");
            h.wind_direction = details("wind_from_direction");
            h.precipitation = num(data, &["next_1_hours", "details", "precipitation_amount"]);
            h.weather_code = symbol_of(data);
            h
        })
        .collect();
    let issued_at = time(body, &["properties", "meta", "updated_at"]).or(steps.first().map(|s| s.0));
    let forecast = issued_at.map(|issued_at| ForecastRun { name: source, issued_at, hourly });
    Ok(ProviderData { reading, forecast, ..ProviderData::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/upstream/met-norway-compact.json")).unwrap()
    }

    #[test]
    fn builds_the_url_with_four_decimals_at_most() {
        assert_eq!(
            forecast_url("https://api.met.no/", 40.639751, -73.778925),
            "https://api.met.no/weatherapi/locationforecast/2.0/compact?lat=40.6397&lon=-73.7789"
        );
    }

    #[test]
    fn parses_the_recorded_compact_body() {
        let id = LocationId::parse("5128581").unwrap();
        let now: DateTime<Utc> = "2020-07-20T11:30:00Z".parse().unwrap();
        let data = parse(&fixture(), &id, now).unwrap();
        let r = data.reading.unwrap();
        assert_eq!(r.observed_at, "2020-07-20T11:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            r.values.to_array()[..9],
            [Some(26.5), Some(81.3), Some(1010.7), Some(3.8), Some(243.4), None, Some(0.0), None, Some(69.5)]
        );
        assert_eq!(r.weather_code, Some(2));
        let f = data.forecast.unwrap();
        assert_eq!(f.issued_at, "2020-07-20T01:30:57Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(f.hourly.len(), 82);
        // Later steps have no next_1_hours: no hourly precipitation there, never a 0.
        assert_eq!(f.hourly.last().unwrap().precipitation, None);
    }

    #[test]
    fn maps_symbol_codes_to_wmo_codes() {
        assert_eq!(weather_code("clearsky_night"), Some(0));
        assert_eq!(weather_code("lightrainshowers_polartwilight"), Some(80));
        assert_eq!(weather_code("heavyrainandthunder"), Some(95));
        assert_eq!(weather_code("unknownthing"), None);
    }

    #[test]
    fn a_body_without_timeseries_is_malformed() {
        let id = LocationId::parse("X").unwrap();
        assert!(matches!(
            parse(&serde_json::json!({"type": "Feature"}), &id, Utc::now()),
            Err(SourceError::Malformed(_))
        ));
    }
}
