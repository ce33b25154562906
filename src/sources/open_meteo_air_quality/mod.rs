//! Open-Meteo Air Quality API (`/v1/air-quality`, CAMS models): no key, many coordinates
//! in one request (a JSON array in request order), like the forecast API. Data CC BY 4.0.
//!
//! isobar asks for the current pollutants in µg/m³ (the API's unit for all of them) with
//! the API's own US and European AQI, and their hourly values from yesterday to two days
//! ahead, in GMT:
//! - the hours of the last day before the current one become readings too, so that a
//!   location has the 12 hours the PM NowCast and the 8 hours ozone's index need from its
//!   first poll;
//! - the hours after the current one are its pollutant forecast ([`AirReport`]), from
//!   which `/air-quality?hours=` forecasts the AQI.
//!
//! Values may be `null`; errors are HTTP 400 with `{"error": true, "reason": …}`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::open_meteo::{fetch_batch, items, local_time};
use super::upstream::Upstream;
use super::{FetchResult, Provider, ProviderData, ProviderSettings, SourceError, num};
use crate::domain::Quantity::*;
use crate::domain::air::FORECAST_HOURS;
use crate::domain::{AirReport, Location, LocationId, POLLUTANTS, Reading, ReportedIndex, SourceName};

pub const NAME: &str = "open-meteo-air-quality";
/// Coordinates per request, as for the forecast API.
pub const MAX_BATCH: usize = 50;

/// The API's variable of each pollutant quantity.
const VARIABLES: [(crate::domain::Quantity, &str); 6] = [
    (Pm25, "pm2_5"),
    (Pm10, "pm10"),
    (O3, "ozone"),
    (No2, "nitrogen_dioxide"),
    (So2, "sulphur_dioxide"),
    (Co, "carbon_monoxide"),
];

pub struct OpenMeteoAirQuality;

impl Provider for OpenMeteoAirQuality {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "open_meteo_air_quality";

    fn new(_: &ProviderSettings) -> Self {
        Self
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        let now = Utc::now();
        fetch_batch(upstream, targets, url, |body, ids| parse(body, ids, now)).await
    }
}

/// The request for `points` (latitude, longitude).
pub fn url(base: &str, points: &[(f64, f64)]) -> String {
    let join = |f: fn(&(f64, f64)) -> f64| points.iter().map(|p| format!("{:.4}", f(p))).collect::<Vec<_>>().join(",");
    let variables = VARIABLES.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(",");
    format!(
        "{}/v1/air-quality?latitude={}&longitude={}&current={variables},us_aqi,european_aqi&hourly={variables}&past_days=1&forecast_days=3&timezone=GMT",
        base.trim_end_matches('/'),
        join(|p| p.0),
        join(|p| p.1)
    )
}

/// Parses a body (one object, or an array for several points) for `ids`, in order: the
/// current values with the API's own indices, the hourly ones of the day before `now` up
/// to the current time, and the next [`FORECAST_HOURS`] as the forecast.
pub fn parse(body: &Value, ids: &[LocationId], now: DateTime<Utc>) -> Result<Vec<ProviderData>, SourceError> {
    let items = items(body, ids)?;
    let source = SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"));
    items
        .into_iter()
        .zip(ids)
        .map(|(item, id)| {
            let offset = item.get("utc_offset_seconds").and_then(Value::as_i64).unwrap_or(0);
            let time = |raw: &str| local_time(raw, offset);
            let reading = item.get("current").and_then(|c| {
                let mut r = Reading::new(id.clone(), source.clone(), time(c.get("time")?.as_str()?)?);
                for (quantity, variable) in VARIABLES {
                    r.set(quantity, num(c, &[variable]));
                }
                Some(r)
            });
            let until = reading.as_ref().map_or(now, |r| r.observed_at.min(now));
            let since = now - chrono::Duration::hours(24);
            // Every hour of the body as a reading: those before `until` are the past, those
            // after it the forecast.
            let hourly: Vec<Reading> = item
                .get("hourly")
                .and_then(|h| {
                    let times = h.get("time")?.as_array()?;
                    let column = |name: &str, i: usize| h.get(name).and_then(|c| c.get(i)).and_then(Value::as_f64);
                    let hours = times.iter().enumerate().filter_map(|(i, t)| {
                        let mut r = Reading::new(id.clone(), source.clone(), time(t.as_str()?)?);
                        for (quantity, variable) in VARIABLES {
                            r.set(quantity, column(variable, i));
                        }
                        Some(r)
                    });
                    Some(hours.collect())
                })
                .unwrap_or_default();
            let (past, ahead): (Vec<Reading>, Vec<Reading>) =
                hourly.into_iter().filter(|r| r.observed_at >= since).partition(|r| r.observed_at < until);
            let ahead: Vec<Reading> = ahead.into_iter().filter(|r| r.observed_at > until).collect();
            let indices = reading.as_ref().map(|r| indices(item, &source, r.observed_at)).unwrap_or_default();
            let air = (!indices.is_empty() || !ahead.is_empty()).then(|| forecast(source.clone(), indices, &ahead));
            Ok(ProviderData { reading, forecast: None, past, air })
        })
        .collect()
}

/// The API's own US and European AQI of the current hour, when the body has them.
fn indices(item: &Value, source: &SourceName, observed_at: DateTime<Utc>) -> Vec<ReportedIndex> {
    let index = |name: &str, label: fn(f64) -> &'static str| {
        num(item, &["current", name]).filter(|v| v.is_finite() && *v >= 0.0).map(|value| ReportedIndex {
            source: source.clone(),
            index: name.to_owned(),
            value,
            label: Some(label(value).to_owned()),
            observed_at,
        })
    };
    let us = |v: f64| crate::analytics::aqi::Category::of(v.round().min(500.0) as u16).name();
    // Open-Meteo's European AQI bands (its API docs).
    let european = |v: f64| match v {
        v if v <= 20.0 => "Good",
        v if v <= 40.0 => "Fair",
        v if v <= 60.0 => "Moderate",
        v if v <= 80.0 => "Poor",
        v if v <= 100.0 => "Very poor",
        _ => "Extremely poor",
    };
    [index("us_aqi", us), index("european_aqi", european)].into_iter().flatten().collect()
}

/// The report of `indices` and the hours `ahead` (oldest first, after the current one):
/// the first [`FORECAST_HOURS`] from the first of them, each in its place.
fn forecast(source: SourceName, indices: Vec<ReportedIndex>, ahead: &[Reading]) -> AirReport {
    let Some(start) = ahead.iter().map(|r| r.observed_at).min() else {
        return AirReport::indices_only(source, indices);
    };
    let mut hours = Vec::with_capacity(FORECAST_HOURS);
    for r in ahead {
        let offset = (r.observed_at - start).num_hours();
        let Ok(offset @ 0..FORECAST_HOURS) = usize::try_from(offset) else { continue };
        if r.observed_at != start + chrono::Duration::hours(offset as i64) {
            continue;
        }
        if hours.len() <= offset {
            hours.resize(offset + 1, [f32::NAN; 6]);
        }
        hours[offset] = POLLUTANTS.map(|q| r.get(q).map_or(f32::NAN, |v| v as f32));
    }
    AirReport { source, indices, start, hours }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_every_pollutant_of_many_points_in_one_request() {
        assert_eq!(
            url("http://x/", &[(52.52, 13.41), (40.7128, -74.006)]),
            "http://x/v1/air-quality?latitude=52.5200,40.7128&longitude=13.4100,-74.0060&current=pm2_5,pm10,ozone,nitrogen_dioxide,sulphur_dioxide,carbon_monoxide,us_aqi,european_aqi&hourly=pm2_5,pm10,ozone,nitrogen_dioxide,sulphur_dioxide,carbon_monoxide&past_days=1&forecast_days=3&timezone=GMT"
        );
    }

    #[test]
    fn parses_the_recorded_current_ozone_and_leaves_the_rest_none() {
        let body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/upstream/open-meteo-air-quality-current.json"))
                .unwrap();
        let id = LocationId::parse("2950159").unwrap();
        let now = "2021-11-24T23:20:00Z".parse::<DateTime<Utc>>().unwrap();
        let data = parse(&body, std::slice::from_ref(&id), now).unwrap();
        let r = data[0].reading.as_ref().unwrap();
        assert_eq!(r.observed_at, "2021-11-24T23:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!((r.get(O3), r.get(Pm25), r.get(Temperature)), (Some(82.0), None, None));
        assert_eq!((data[0].forecast.as_ref(), data[0].past.len(), data[0].air.as_ref()), (None, 0, None));
        // A 400 is refused with its reason.
        let error = serde_json::json!({"error": true, "reason": "Cannot initialize WeatherVariable from invalid String value x"});
        assert!(matches!(parse(&error, std::slice::from_ref(&id), now), Err(SourceError::Refused { status: 400, .. })));
    }

    #[test]
    fn the_recorded_hours_of_the_day_before_now_become_readings() {
        // Beijing, hourly CO, local times (UTC+8) from 2023-01-01T00:00.
        let body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/upstream/open-meteo-air-quality.json")).unwrap();
        let id = LocationId::parse("1816670").unwrap();
        let now = "2023-01-01T12:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let data = parse(&body, std::slice::from_ref(&id), now).unwrap();
        let past = &data[0].past;
        // From the first recorded hour (2022-12-31T16:00Z) up to 12:00Z.
        assert_eq!(past.len(), 21);
        assert_eq!(past[0].observed_at, "2022-12-31T16:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(past[20].observed_at, "2023-01-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let hourly = &body["hourly"]["carbon_monoxide"];
        assert_eq!(past[0].get(Co), hourly[0].as_f64());
        assert_eq!(past[20].get(Co), hourly[20].as_f64());
        assert!(past.iter().all(|r| r.get(Pm25).is_none()));
        // The hours after the current one, up to 2023-01-02T15:00Z, are the forecast.
        let air = data[0].air.as_ref().unwrap();
        assert_eq!((air.start, air.hours.len()), ("2023-01-01T13:00:00Z".parse().unwrap(), 27));
        assert_eq!(air.forecast(air.start, Co), hourly[21].as_f64());
        assert_eq!(air.forecast(air.start + chrono::Duration::hours(26), Co), hourly[47].as_f64());
        assert_eq!((air.forecast(air.start, Pm25), air.indices.len()), (None, 0));
    }

    #[test]
    fn the_apis_own_indices_are_kept_with_its_names_for_them() {
        // The recorded current body, with the two indices' fields as the API docs name them.
        let mut body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/upstream/open-meteo-air-quality-current.json"))
                .unwrap();
        body["current"]["us_aqi"] = 57.into();
        body["current"]["european_aqi"] = 41.5.into();
        let id = LocationId::parse("2950159").unwrap();
        let now = "2021-11-24T23:20:00Z".parse::<DateTime<Utc>>().unwrap();
        let air = parse(&body, std::slice::from_ref(&id), now).unwrap().remove(0).air.unwrap();
        let shown: Vec<(&str, f64, Option<&str>)> =
            air.indices.iter().map(|i| (i.index.as_str(), i.value, i.label.as_deref())).collect();
        assert_eq!(shown, [("us_aqi", 57.0, Some("Moderate")), ("european_aqi", 41.5, Some("Moderate"))]);
        assert_eq!(air.indices[0].observed_at, "2021-11-24T23:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(air.hours.is_empty());
    }
}
