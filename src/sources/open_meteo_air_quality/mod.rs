//! Open-Meteo Air Quality API (`/v1/air-quality`, CAMS models): no key, many coordinates
//! in one request (a JSON array in request order), like the forecast API. Data CC BY 4.0.
//!
//! isobar asks for the current pollutants in µg/m³ (the API's unit for all of them) and
//! times in GMT. Values may be `null`; errors are HTTP 400 with `{"error": true,
//! "reason": …}`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

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
        let points: Vec<(f64, f64)> = targets.iter().map(|l| (l.latitude, l.longitude)).collect();
        let ids: Vec<LocationId> = targets.iter().map(|l| l.id.clone()).collect();
        let url = url(upstream.base_url(), &points);
        match upstream.get_json(&url).await.and_then(|f| Ok((parse(&f.body, &ids)?, f.fresh_for))) {
            Ok((data, fresh)) => (ids.into_iter().zip(data.into_iter().map(Ok)).collect(), fresh),
            Err(e) => (ids.into_iter().map(|id| (id, Err(e.clone()))).collect(), Duration::ZERO),
        }
    }
}

/// The request for `points` (latitude, longitude).
pub fn url(base: &str, points: &[(f64, f64)]) -> String {
    let join = |f: fn(&(f64, f64)) -> f64| points.iter().map(|p| format!("{:.4}", f(p))).collect::<Vec<_>>().join(",");
    let current = VARIABLES.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(",");
    format!(
        "{}/v1/air-quality?latitude={}&longitude={}&current={current}&timezone=GMT",
        base.trim_end_matches('/'),
        join(|p| p.0),
        join(|p| p.1)
    )
}

/// Parses a body (one object, or an array for several points) for `ids`, in order.
pub fn parse(body: &Value, ids: &[LocationId]) -> Result<Vec<ProviderData>, SourceError> {
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
    let source = SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"));
    items
        .into_iter()
        .zip(ids)
        .map(|(item, id)| {
            if !item.is_object() {
                return Err(SourceError::Malformed("expected an object per location".into()));
            }
            let offset = item.get("utc_offset_seconds").and_then(Value::as_i64).unwrap_or(0);
            let reading = item.get("current").and_then(|c| {
                let raw = c.get("time")?.as_str()?;
                let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M").ok()?;
                let observed_at = Utc.from_utc_datetime(&naive) - chrono::Duration::seconds(offset);
                let mut r = Reading::new(id.clone(), source.clone(), observed_at);
                for (quantity, variable) in VARIABLES {
                    r.set(quantity, num(c, &[variable]));
                }
                Some(r)
            });
            Ok(ProviderData { reading, forecast: None })
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
            "http://x/v1/air-quality?latitude=52.5200,40.7128&longitude=13.4100,-74.0060&current=pm2_5,pm10,ozone,nitrogen_dioxide,sulphur_dioxide,carbon_monoxide&timezone=GMT"
        );
    }

    #[test]
    fn parses_the_recorded_current_ozone_and_leaves_the_rest_none() {
        let body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/upstream/open-meteo-air-quality-current.json"))
                .unwrap();
        let id = LocationId::parse("2950159").unwrap();
        let data = parse(&body, std::slice::from_ref(&id)).unwrap();
        let r = data[0].reading.as_ref().unwrap();
        assert_eq!(r.observed_at, "2021-11-24T23:00:00Z".parse::<chrono::DateTime<Utc>>().unwrap());
        assert_eq!((r.get(O3), r.get(Pm25), r.get(Temperature)), (Some(82.0), None, None));
        assert_eq!(data[0].forecast, None);
        // A 400 is refused with its reason.
        let error = serde_json::json!({"error": true, "reason": "Cannot initialize WeatherVariable from invalid String value x"});
        assert!(matches!(parse(&error, &[id]), Err(SourceError::Refused { status: 400, .. })));
    }
}
