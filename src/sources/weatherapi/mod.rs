//! WeatherAPI.com current conditions (`/v1/current.json`). Needs an API key (`key=` in
//! the query string); every value comes in both unit systems and isobar reads the metric
//! ones (`temp_c`, `pressure_mb`, `wind_kph`, `vis_km`, `precip_mm`), plus the UV index
//! and cloud cover. Conditions carry WeatherAPI's own codes (1000 = clear …), mapped to
//! WMO codes here. Errors are `{"error": {"code", "message"}}`: 401 or 403 for a key
//! problem, 400 with code 1006 when no location matches. No forecast is read from it
//! (the free plan's `/forecast.json` shape has no recorded body to test against).

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use super::upstream::Upstream;
use super::{FetchResult, NotRunning, Provider, ProviderData, ProviderSettings, SourceError, fetch_each};
use super::{four_decimals, num, require_api_key};
use crate::domain::Quantity::*;
use crate::domain::{Location, LocationId, Reading, SourceName};

pub const NAME: &str = "weatherapi";

/// WeatherAPI.com as a [`Provider`]: current conditions, one location per request.
pub struct WeatherApi {
    api_key: String,
}

impl Provider for WeatherApi {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "weatherapi";

    fn check(settings: &ProviderSettings, _: &str) -> Result<(), NotRunning> {
        require_api_key(settings, Self::KEY)
    }

    fn new(settings: &ProviderSettings) -> Self {
        Self { api_key: settings.api_key.trim().to_owned() }
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        fetch_each(targets, |l| async move {
            let url = current_url(upstream.base_url(), l.latitude, l.longitude, &self.api_key);
            match upstream.get_json(&url).await {
                Ok(f) => (
                    parse_current(&f.body, &l.id).map(|r| ProviderData { reading: Some(r), ..ProviderData::default() }),
                    f.fresh_for,
                ),
                Err(e) => (Err(explain(e)), Duration::ZERO),
            }
        })
        .await
    }
}

/// Turns refusals into errors that say what to change.
fn explain(error: SourceError) -> SourceError {
    match error {
        SourceError::Refused { status: 401 | 403, detail } => SourceError::Misconfigured(format!(
            "WeatherAPI refused the API key: check sources.weatherapi.api_key ({detail})"
        )),
        SourceError::Refused { status: 400, detail } if detail.contains("1006") => {
            SourceError::NotCovered(format!("WeatherAPI knows no location there ({detail})"))
        }
        other => other,
    }
}

pub fn current_url(base: &str, latitude: f64, longitude: f64, key: &str) -> String {
    format!(
        "{}/v1/current.json?key={key}&q={},{}&aqi=no",
        base.trim_end_matches('/'),
        four_decimals(latitude),
        four_decimals(longitude)
    )
}

/// A current-conditions body as a reading of `id`.
pub fn parse_current(body: &Value, id: &LocationId) -> Result<Reading, SourceError> {
    let current = body.get("current").ok_or_else(|| SourceError::Malformed("no current".into()))?;
    let observed_at = current
        .get("last_updated_epoch")
        .and_then(Value::as_i64)
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| SourceError::Malformed("no current.last_updated_epoch".into()))?;
    let source = SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"));
    let mut r = Reading::new(id.clone(), source, observed_at);
    let value = |key: &str| num(current, &[key]);
    r.set(Temperature, value("temp_c"));
    r.set(Humidity, value("humidity"));
    r.set(Pressure, value("pressure_mb"));
    r.set(WindSpeed, value("wind_kph").map(|kph| (kph / 3.6 * 100.0).round() / 100.0));
    r.set(WindDirection, value("wind_degree"));
    r.set(Visibility, value("vis_km"));
    r.set(Precipitation, value("precip_mm"));
    r.set(UvIndex, value("uv"));
    r.set(CloudCover, value("cloud"));
    r.weather_code = num(current, &["condition", "code"]).and_then(|c| weather_code(c as u64));
    Ok(r)
}

/// WMO code for a WeatherAPI condition code.
pub fn weather_code(code: u64) -> Option<u8> {
    Some(match code {
        1000 => 0,
        1003 => 2,
        1006 => 3,
        1009 => 3,
        1030 | 1135 => 45,
        1147 => 48,
        1150 | 1153 => 51,
        1168 => 56,
        1171 => 57,
        1063 | 1180 | 1183 => 61,
        1186 | 1189 => 63,
        1192 | 1195 => 65,
        1072 | 1198 => 66,
        1201 => 67,
        1066 | 1210 | 1213 => 71,
        1216 | 1219 => 73,
        1114 | 1117 | 1222 | 1225 => 75,
        1237 => 77,
        1240 => 80,
        1243 => 81,
        1246 => 82,
        1069 | 1204 | 1207 | 1249 | 1252 | 1261 | 1264 => 66,
        1255 => 85,
        1258 => 86,
        1087 | 1273 | 1276 | 1279 | 1282 => 95,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/upstream/weatherapi-current.json")).unwrap()
    }

    #[test]
    fn asks_for_current_conditions_at_four_decimals() {
        assert_eq!(
            current_url("https://api.weatherapi.com/", 51.507351, -0.127758, "KEY"),
            "https://api.weatherapi.com/v1/current.json?key=KEY&q=51.5073,-0.1277&aqi=no"
        );
    }

    #[test]
    fn parses_the_recorded_body_in_metric_units() {
        let r = parse_current(&fixture(), &LocationId::parse("2643743").unwrap()).unwrap();
        assert_eq!(r.observed_at, DateTime::from_timestamp(1712007000, 0).unwrap());
        assert_eq!(r.source.as_str(), "weatherapi");
        // 11.2 km/h → 3.11 m/s; uv 1.0 and cloud 75 % fill the two later quantities.
        assert_eq!(
            r.values.to_array()[..9],
            [Some(9.0), Some(87.0), Some(997.0), Some(3.11), Some(180.0), Some(10.0), Some(0.0), Some(1.0), Some(75.0)]
        );
        // 1189 "Moderate rain".
        assert_eq!(r.weather_code, Some(63));
    }

    #[test]
    fn a_body_without_current_is_malformed() {
        let err = parse_current(&serde_json::json!({"location": {}}), &LocationId::parse("X").unwrap()).unwrap_err();
        assert_eq!(err, SourceError::Malformed("no current".into()));
    }

    #[test]
    fn key_refusals_name_the_setting() {
        let refused = SourceError::Refused { status: 401, detail: r#"{"error":{"code":2006}}"#.into() };
        assert!(matches!(explain(refused), SourceError::Misconfigured(m) if m.contains("sources.weatherapi.api_key")));
        let nowhere = SourceError::Refused { status: 400, detail: r#"{"error":{"code":1006}}"#.into() };
        assert!(matches!(explain(nowhere), SourceError::NotCovered(_)));
    }
}
