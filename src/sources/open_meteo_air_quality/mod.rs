//! Open-Meteo Air Quality API (`/v1/air-quality`, CAMS models): no key, many coordinates
//! in one request (a JSON array in request order), like the forecast API. Data CC BY 4.0.
//!
//! isobar asks for the current pollutants in µg/m³ (the API's unit for all of them) and
//! their hourly values since yesterday, in GMT: the hours of the last day before the
//! current one become readings too, so that a location has the 12 hours the PM NowCast
//! and the 8 hours ozone's index need from its first poll. Values may be `null`; errors
//! are HTTP 400 with `{"error": true, "reason": …}`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::open_meteo::{fetch_batch, items, local_time};
use super::upstream::Upstream;
use super::{FetchResult, Provider, ProviderData, ProviderSettings, SourceError, num};
use crate::domain::Quantity::*;
use crate::domain::{Location, LocationId, Reading, SourceName};

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
        "{}/v1/air-quality?latitude={}&longitude={}&current={variables}&hourly={variables}&past_days=1&forecast_days=1&timezone=GMT",
        base.trim_end_matches('/'),
        join(|p| p.0),
        join(|p| p.1)
    )
}

/// Parses a body (one object, or an array for several points) for `ids`, in order: the
/// current values, and the hourly ones of the day before `now` up to the current time.
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
            let past = item
                .get("hourly")
                .and_then(|h| {
                    let times = h.get("time")?.as_array()?;
                    let column = |name: &str, i: usize| h.get(name).and_then(|c| c.get(i)).and_then(Value::as_f64);
                    let hours = times.iter().enumerate().filter_map(|(i, t)| {
                        let at = time(t.as_str()?).filter(|at| *at >= since && *at < until)?;
                        let mut r = Reading::new(id.clone(), source.clone(), at);
                        for (quantity, variable) in VARIABLES {
                            r.set(quantity, column(variable, i));
                        }
                        Some(r)
                    });
                    Some(hours.collect::<Vec<_>>())
                })
                .unwrap_or_default();
            Ok(ProviderData { reading, forecast: None, past })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_every_pollutant_of_many_points_in_one_request() {
        assert_eq!(
            url("http://x/", &[(52.52, 13.41), (40.7128, -74.006)]),
            "http://x/v1/air-quality?latitude=52.5200,40.7128&longitude=13.4100,-74.0060&current=pm2_5,pm10,ozone,nitrogen_dioxide,sulphur_dioxide,carbon_monoxide&hourly=pm2_5,pm10,ozone,nitrogen_dioxide,sulphur_dioxide,carbon_monoxide&past_days=1&forecast_days=1&timezone=GMT"
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
        assert_eq!((data[0].forecast.as_ref(), data[0].past.len()), (None, 0));
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
    }
}
