//! OpenWeatherMap Air Pollution API (`/data/2.5/air_pollution`): the current pollutants of
//! one point per request, in µg/m³. Needs the same kind of API key as the weather API
//! (`appid`). `main.aqi` is OpenWeather's own 1-5 index, not the US AQI: it is shown
//! beside the AQI isobar computes from the concentrations.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use super::upstream::Upstream;
use super::{
    FetchResult, NotRunning, Provider, ProviderData, ProviderSettings, SourceError, fetch_each, num, require_api_key,
};
use crate::domain::Quantity::*;
use crate::domain::{AirReport, Location, LocationId, Reading, ReportedIndex, SourceName};

pub const NAME: &str = "openweathermap-air-pollution";

/// The API's component of each pollutant quantity.
const COMPONENTS: [(crate::domain::Quantity, &str); 6] =
    [(Pm25, "pm2_5"), (Pm10, "pm10"), (O3, "o3"), (No2, "no2"), (So2, "so2"), (Co, "co")];

pub struct OpenWeatherMapAirPollution {
    api_key: String,
}

impl Provider for OpenWeatherMapAirPollution {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "openweathermap_air_pollution";

    fn check(settings: &ProviderSettings, _: &str) -> Result<(), NotRunning> {
        require_api_key(settings, Self::KEY)
    }

    fn new(settings: &ProviderSettings) -> Self {
        Self { api_key: settings.api_key.trim().to_owned() }
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        fetch_each(targets, |l| async move {
            let url = url(upstream.base_url(), l.latitude, l.longitude, &self.api_key);
            match upstream.get_json(&url).await {
                Ok(fetched) => (parse(&fetched.body, &l.id), fetched.fresh_for),
                Err(e) => (Err(super::openweathermap::explain(e, Self::KEY)), Duration::ZERO),
            }
        })
        .await
    }
}

pub fn url(base: &str, latitude: f64, longitude: f64, key: &str) -> String {
    format!("{}/data/2.5/air_pollution?lat={latitude:.4}&lon={longitude:.4}&appid={key}", base.trim_end_matches('/'))
}

/// The newest entry of `list` as a reading of `id`.
pub fn parse(body: &Value, id: &LocationId) -> Result<ProviderData, SourceError> {
    let entry = body
        .get("list")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().max_by_key(|e| e.get("dt").and_then(Value::as_i64).unwrap_or(i64::MIN)))
        .ok_or_else(|| SourceError::Malformed("no `list` of measurements".into()))?;
    let observed_at = entry
        .get("dt")
        .and_then(Value::as_i64)
        .and_then(|dt| DateTime::from_timestamp(dt, 0))
        .ok_or_else(|| SourceError::Malformed("a measurement without `dt`".into()))?;
    let source = SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"));
    let mut r = Reading::new(id.clone(), source.clone(), observed_at);
    for (quantity, component) in COMPONENTS {
        r.set(quantity, num(entry, &["components", component]));
    }
    // OpenWeather's own index, 1 (good) to 5 (very poor).
    let index = num(entry, &["main", "aqi"]).filter(|v| (1.0..=5.0).contains(v)).map(|value| ReportedIndex {
        source: source.clone(),
        index: "openweathermap_aqi".into(),
        value,
        label: LABELS.get(value as usize - 1).map(|l| (*l).to_owned()),
        observed_at,
    });
    let air = index.map(|i| AirReport::indices_only(source, vec![i]));
    Ok(ProviderData { reading: Some(r), air, ..ProviderData::default() })
}

/// The names of OpenWeather's index values 1 to 5 (its API docs).
const LABELS: [&str; 5] = ["Good", "Fair", "Moderate", "Poor", "Very Poor"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/upstream/owm-air-pollution.json")).unwrap();
        let id = LocationId::parse("X").unwrap();
        let r = parse(&body, &id).unwrap().reading.unwrap();
        assert_eq!(r.observed_at.timestamp(), 1606147200);
        let values: Vec<Option<f64>> = [Pm25, Pm10, O3, No2, So2, Co].iter().map(|&q| r.get(q)).collect();
        assert_eq!(values, [Some(23.253), Some(92.214), Some(75.102), Some(0.396), Some(0.648), Some(203.609)]);
        assert_eq!(r.get(Temperature), None);
        // Its own index, beside the concentrations: 4, "Poor".
        let indices = parse(&body, &id).unwrap().air.unwrap().indices;
        assert_eq!((indices[0].index.as_str(), indices[0].value), ("openweathermap_aqi", 4.0));
        assert_eq!((indices[0].label.as_deref(), indices[0].observed_at), (Some("Poor"), r.observed_at));
        assert!(matches!(parse(&serde_json::json!({"list": []}), &id), Err(SourceError::Malformed(_))));
    }

    #[test]
    fn asks_for_one_point_with_the_key() {
        assert_eq!(
            url("http://x/", 40.7128, -74.006, "K"),
            "http://x/data/2.5/air_pollution?lat=40.7128&lon=-74.0060&appid=K"
        );
    }
}
