//! Open-Meteo forecast API (`/v1/forecast`): no key, many coordinates in one request
//! (comma-separated lists answer a JSON array, in request order). Data CC BY 4.0.
//!
//! isobar asks for metric values with wind in m/s and times in GMT. Visibility comes in
//! metres and is converted to km. Values may be `null`; errors are HTTP 400 with
//! `{"error": true, "reason": …}` (the reason is an internal message, shown as is).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use std::sync::Arc;
use std::time::Duration;

use super::upstream::Upstream;
use super::{FetchResult, Provider, ProviderData, ProviderSettings, SourceError, num};
use crate::domain::Quantity::*;
use crate::domain::{ForecastHour, ForecastRun, Location, LocationId, Reading, SourceName};

pub const NAME: &str = "open-meteo";
/// Coordinates per request: keeps URLs short and one bad location from failing many.
pub const MAX_BATCH: usize = 50;

const CURRENT: &str = "temperature_2m,relative_humidity_2m,pressure_msl,wind_speed_10m,wind_direction_10m,visibility,precipitation,weather_code,uv_index,cloud_cover";
const HOURLY: &str = "temperature_2m,relative_humidity_2m,precipitation,precipitation_probability,wind_speed_10m,wind_direction_10m,weather_code";

/// Open-Meteo as a [`Provider`]: one request for up to [`MAX_BATCH`] locations.
pub struct OpenMeteo;

impl Provider for OpenMeteo {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "open_meteo";

    fn new(_: &ProviderSettings) -> Self {
        Self
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        fetch_batch(upstream, targets, forecast_url, parse).await
    }
}

/// One request for every target, as Open-Meteo's APIs take many coordinates at once:
/// `url` builds it from the base URL and the points, `parse` answers per target, in order.
pub async fn fetch_batch(
    upstream: &Upstream,
    targets: &[Arc<Location>],
    url: fn(&str, &[(f64, f64)]) -> String,
    parse: impl FnOnce(&Value, &[LocationId]) -> Result<Vec<ProviderData>, SourceError>,
) -> FetchResult {
    let points: Vec<(f64, f64)> = targets.iter().map(|l| (l.latitude, l.longitude)).collect();
    let ids: Vec<LocationId> = targets.iter().map(|l| l.id.clone()).collect();
    let url = url(upstream.base_url(), &points);
    match upstream.get_json(&url).await.and_then(|f| Ok((parse(&f.body, &ids)?, f.fresh_for))) {
        Ok((data, fresh)) => (ids.into_iter().zip(data.into_iter().map(Ok)).collect(), fresh),
        Err(e) => (ids.into_iter().map(|id| (id, Err(e.clone()))).collect(), Duration::ZERO),
    }
}

/// The per-point objects of a body for `ids` (one object, or an array in request order);
/// Open-Meteo's error body is a refusal with its reason.
pub fn items<'a>(body: &'a Value, ids: &[LocationId]) -> Result<Vec<&'a Value>, SourceError> {
    if body.get("error").and_then(Value::as_bool) == Some(true) {
        let reason = body.get("reason").and_then(Value::as_str).unwrap_or("no reason given");
        return Err(SourceError::Refused { status: 400, detail: reason.to_owned() });
    }
    let items: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    if items.len() != ids.len() {
        return Err(SourceError::Malformed(format!("{} results for {} locations", items.len(), ids.len())));
    }
    if items.iter().any(|item| !item.is_object()) {
        return Err(SourceError::Malformed("expected an object per location".into()));
    }
    Ok(items)
}

/// The forecast URL for `points` (latitude, longitude), in one request.
pub fn forecast_url(base: &str, points: &[(f64, f64)]) -> String {
    let join = |f: fn(&(f64, f64)) -> f64| points.iter().map(|p| format!("{:.4}", f(p))).collect::<Vec<_>>().join(",");
    format!(
        "{}/v1/forecast?latitude={}&longitude={}&current={CURRENT}&hourly={HOURLY}&wind_speed_unit=ms&timezone=GMT&forecast_days=10",
        base.trim_end_matches('/'),
        join(|p| p.0),
        join(|p| p.1)
    )
}

/// Parses a forecast body (one object, or an array for several points) for `ids`, in order.
pub fn parse(body: &Value, ids: &[LocationId]) -> Result<Vec<ProviderData>, SourceError> {
    let items = items(body, ids)?;
    let source = SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"));
    items.into_iter().zip(ids).map(|(item, id)| parse_one(item, id, &source)).collect()
}

/// A time as Open-Meteo writes it (`YYYY-MM-DDTHH:MM`, at `offset_secs` from UTC).
pub fn local_time(raw: &str, offset_secs: i64) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M").ok()?;
    Some(Utc.from_utc_datetime(&naive) - chrono::Duration::seconds(offset_secs))
}

fn parse_one(item: &Value, id: &LocationId, source: &SourceName) -> Result<ProviderData, SourceError> {
    let offset = item.get("utc_offset_seconds").and_then(Value::as_i64).unwrap_or(0);
    let reading = item.get("current").and_then(|c| {
        let observed_at = local_time(c.get("time")?.as_str()?, offset)?;
        let mut r = Reading::new(id.clone(), source.clone(), observed_at);
        r.set(Temperature, num(c, &["temperature_2m"]));
        r.set(Humidity, num(c, &["relative_humidity_2m"]));
        r.set(Pressure, num(c, &["pressure_msl"]));
        r.set(WindSpeed, num(c, &["wind_speed_10m"]));
        r.set(WindDirection, num(c, &["wind_direction_10m"]));
        r.set(Visibility, num(c, &["visibility"]).map(|m| m / 1000.0));
        r.set(Precipitation, num(c, &["precipitation"]));
        r.set(UvIndex, num(c, &["uv_index"]));
        r.set(CloudCover, num(c, &["cloud_cover"]));
        r.weather_code = num(c, &["weather_code"]).map(|v| v as u8);
        Some(r)
    });
    let forecast = item.get("hourly").and_then(|h| {
        let times = h.get("time")?.as_array()?;
        let column = |name: &str, i: usize| h.get(name).and_then(|c| c.get(i)).and_then(Value::as_f64);
        let hourly = times
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let mut hour = ForecastHour::empty(local_time(t.as_str()?, offset)?);
                hour.temperature = column("temperature_2m", i);
                hour.humidity = column("relative_humidity_2m", i);
                hour.precipitation = column("precipitation", i);
                hour.precipitation_probability = column("precipitation_probability", i);
                hour.wind_speed = column("wind_speed_10m", i);
                hour.wind_direction = column("wind_direction_10m", i);
                hour.weather_code = column("weather_code", i).map(|v| v as u8);
                Some(hour)
            })
            .collect::<Vec<_>>();
        let issued_at = hourly.first().map(|h| h.time)?;
        Some(ForecastRun { name: source.clone(), issued_at, hourly })
    });
    Ok(ProviderData { reading, forecast, ..ProviderData::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "forecast" => include_str!("../../../tests/fixtures/upstream/open-meteo-forecast.json"),
            _ => include_str!("../../../tests/fixtures/upstream/open-meteo-error-400.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn builds_one_request_for_many_points() {
        assert_eq!(
            forecast_url("http://x/", &[(52.52, 13.41), (40.7128, -74.006)]),
            format!(
                "http://x/v1/forecast?latitude=52.5200,40.7128&longitude=13.4100,-74.0060&current={CURRENT}&hourly={HOURLY}&wind_speed_unit=ms&timezone=GMT&forecast_days=10"
            )
        );
    }

    #[test]
    fn parses_the_recorded_forecast_with_missing_variables_as_none() {
        let id = LocationId::parse("2950159").unwrap();
        let data = parse(&fixture("forecast"), std::slice::from_ref(&id)).unwrap();
        let r = data[0].reading.as_ref().unwrap();
        assert_eq!(r.observed_at, "2023-11-13T10:45:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(r.weather_code, Some(3));
        assert_eq!((r.get(Temperature), r.get(Humidity), r.get(Visibility)), (None, None, None));
        let f = data[0].forecast.as_ref().unwrap();
        assert_eq!(f.hourly.len(), 168);
        assert_eq!(f.hourly[0].time, "2023-11-13T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(f.hourly[0].temperature, None);
        assert!(f.hourly.iter().all(|h| h.weather_code.is_some()));
    }

    #[test]
    fn parses_full_current_values_and_converts_visibility_to_km() {
        let body = serde_json::json!([
            {"utc_offset_seconds": 0, "current": {"time": "2026-11-26T09:00", "temperature_2m": 7.5, "relative_humidity_2m": 63,
             "pressure_msl": 1016.2, "wind_speed_10m": 3.1, "wind_direction_10m": 240, "visibility": 16000.0,
             "precipitation": 0.0, "weather_code": 3, "uv_index": 0.35, "cloud_cover": 100}},
            {"utc_offset_seconds": 3600, "current": {"time": "2026-11-26T10:00", "temperature_2m": null}}
        ]);
        let ids = [LocationId::parse("A").unwrap(), LocationId::parse("B").unwrap()];
        let data = parse(&body, &ids).unwrap();
        let a = data[0].reading.as_ref().unwrap();
        assert_eq!(
            a.values.to_array()[..9],
            [
                Some(7.5),
                Some(63.0),
                Some(1016.2),
                Some(3.1),
                Some(240.0),
                Some(16.0),
                Some(0.0),
                Some(0.35),
                Some(100.0)
            ]
        );
        let b = data[1].reading.as_ref().unwrap();
        assert_eq!(b.location_id.as_str(), "B");
        assert_eq!(b.observed_at, "2026-11-26T09:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(b.get(Temperature), None);
    }

    #[test]
    fn an_error_body_is_a_refusal_with_its_reason() {
        let err = parse(&fixture("error"), &[LocationId::parse("A").unwrap()]).unwrap_err();
        match err {
            SourceError::Refused { status: 400, detail } => assert!(detail.contains("invalid String value lksdfj")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_result_count_mismatch_is_malformed() {
        let ids = [LocationId::parse("A").unwrap(), LocationId::parse("B").unwrap()];
        assert_eq!(
            parse(&serde_json::json!({"current": {}}), &ids).unwrap_err(),
            SourceError::Malformed("1 results for 2 locations".into())
        );
    }
}
