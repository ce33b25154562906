//! US National Weather Service (api.weather.gov): US points only.
//!
//! Three steps per location: `/points/{lat},{lon}` (once; it names the grid's hourly
//! forecast and observation stations), the stations list (nearest first), then the
//! latest observation of the nearest station and the hourly forecast. A User-Agent is
//! mandatory. Measurements are QuantitativeValues whose `value` is often `null` and whose
//! `unitCode` is converted here (Pa, km/h, metres). A point outside the US is a 404.
//! Public domain.

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::upstream::Upstream;
use super::{
    FetchResult, Provider, ProviderData, ProviderSettings, SourceError, combine, fetch_each, four_decimals, time,
};
use crate::domain::Quantity::*;
use crate::domain::{ForecastHour, ForecastRun, Location, LocationId, Reading, SourceName};

pub const NAME: &str = "nws";

/// NWS as a [`Provider`]: US locations, one at a time; the grid of each is looked up once.
pub struct Nws {
    /// Grid metadata per location: stable, so asked for once.
    grids: Mutex<HashMap<LocationId, Grid>>,
}

/// Where a location's hourly forecast and nearest observation station are.
#[derive(Clone)]
struct Grid {
    forecast_hourly: String,
    station: String,
}

impl Provider for Nws {
    const NAME: &'static str = NAME;
    const KEY: &'static str = "nws";

    fn new(_: &ProviderSettings) -> Self {
        Self { grids: Mutex::new(HashMap::new()) }
    }

    fn covers(&self, location: &Location) -> bool {
        location.country == "US"
    }

    async fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> FetchResult {
        fetch_each(targets, |l| async move {
            let (result, fresh) = self.fetch_one(upstream, l).await;
            (result.map_err(explain), fresh)
        })
        .await
    }
}

/// A 404 from /points: the point is outside the US.
fn explain(error: SourceError) -> SourceError {
    match error {
        SourceError::Refused { status: 404, .. } => SourceError::NotCovered("NWS serves US points only".into()),
        other => other,
    }
}

impl Nws {
    async fn fetch_one(&self, upstream: &Upstream, l: &Location) -> (Result<ProviderData, SourceError>, Duration) {
        let base = upstream.base_url().to_owned();
        let known = self.grids.lock().unwrap_or_else(|p| p.into_inner()).get(&l.id).cloned();
        let grid = match known {
            Some(grid) => grid,
            None => match grid(upstream, &base, l).await {
                Ok(grid) => {
                    self.grids.lock().unwrap_or_else(|p| p.into_inner()).insert(l.id.clone(), grid.clone());
                    grid
                }
                Err(e) => return (Err(e), Duration::ZERO),
            },
        };
        let observation = upstream.get_json(&observation_url(&base, &grid.station)).await;
        let forecast = upstream.get_json(&grid.forecast_hourly).await;
        combine(
            observation,
            forecast,
            |body| parse_observation(body, &l.id),
            |body| parse_forecast_hourly(body, Utc::now()),
        )
    }
}

async fn grid(upstream: &Upstream, base: &str, l: &Location) -> Result<Grid, SourceError> {
    let point = upstream.get_json(&points_url(base, l.latitude, l.longitude)).await?;
    let point = parse_point(&point.body)?;
    let stations = upstream.get_json(&rebase(base, &point.stations)).await?;
    Ok(Grid { forecast_hourly: rebase(base, &point.forecast_hourly), station: parse_stations(&stations.body)? })
}

/// What /points says about a location: paths relative to the API base.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub forecast_hourly: String,
    pub stations: String,
}

pub fn points_url(base: &str, latitude: f64, longitude: f64) -> String {
    format!("{}/points/{},{}", base.trim_end_matches('/'), four_decimals(latitude), four_decimals(longitude))
}

/// A URL that NWS returned, re-based on the configured base (so tests and proxies work).
pub fn rebase(base: &str, url: &str) -> String {
    let path = url.split_once("://").map(|(_, rest)| rest.find('/').map_or("/", |i| &rest[i..])).unwrap_or(url);
    format!("{}{}", base.trim_end_matches('/'), path)
}

pub fn observation_url(base: &str, station: &str) -> String {
    format!("{}/stations/{station}/observations/latest", base.trim_end_matches('/'))
}

fn source() -> SourceName {
    SourceName::parse(NAME).unwrap_or_else(|| unreachable!("static name"))
}

pub fn parse_point(body: &Value) -> Result<Point, SourceError> {
    let url = |k: &str| body.get("properties")?.get(k)?.as_str().map(str::to_owned);
    match (url("forecastHourly"), url("observationStations")) {
        (Some(forecast_hourly), Some(stations)) => Ok(Point { forecast_hourly, stations }),
        _ => Err(SourceError::Malformed("points response lacks forecastHourly or observationStations".into())),
    }
}

/// The nearest station's id (the list is ordered by distance).
pub fn parse_stations(body: &Value) -> Result<String, SourceError> {
    body.get("features")
        .and_then(|f| f.get(0))
        .and_then(|f| f.get("properties")?.get("stationIdentifier")?.as_str())
        .or_else(|| body.get("observationStations")?.get(0)?.as_str()?.rsplit('/').next())
        .map(str::to_owned)
        .ok_or_else(|| SourceError::Malformed("no observation station for this point".into()))
}

/// A QuantitativeValue converted to isobar's unit for its quantity.
fn quantity(props: &Value, key: &str) -> Option<f64> {
    let q = props.get(key)?;
    let value = q.get("value")?.as_f64()?;
    let unit = q.get("unitCode").and_then(Value::as_str).unwrap_or("");
    let unit = unit.rsplit(':').next().unwrap_or(unit);
    Some(match unit {
        "degC" | "percent" | "degree_(angle)" | "m_s-1" | "hPa" | "mm" => value,
        "degF" => (value - 32.0) * 5.0 / 9.0,
        "Pa" => value / 100.0,
        "km_h-1" => value / 3.6,
        "m" if key == "visibility" => value / 1000.0,
        "m" => value * 1000.0,
        "km" => value,
        _ => return None,
    })
}

fn round(value: Option<f64>) -> Option<f64> {
    value.map(|v| (v * 100.0).round() / 100.0)
}

/// The latest observation of a station, as a reading of `id`.
pub fn parse_observation(body: &Value, id: &LocationId) -> Result<Reading, SourceError> {
    let props = body.get("properties").ok_or_else(|| SourceError::Malformed("no properties".into()))?;
    let observed_at =
        time(props, &["timestamp"]).ok_or_else(|| SourceError::Malformed("observation has no timestamp".into()))?;
    let mut r = Reading::new(id.clone(), source(), observed_at);
    r.set(Temperature, round(quantity(props, "temperature")));
    r.set(Humidity, round(quantity(props, "relativeHumidity")));
    r.set(Pressure, round(quantity(props, "seaLevelPressure").or_else(|| quantity(props, "barometricPressure"))));
    r.set(WindSpeed, round(quantity(props, "windSpeed")));
    r.set(WindDirection, quantity(props, "windDirection"));
    r.set(Visibility, round(quantity(props, "visibility")));
    r.set(Precipitation, round(quantity(props, "precipitationLastHour")));
    Ok(r)
}

/// "10 mph", "0 to 5 mph", "15 km/h" → m/s (the upper bound of a range).
fn wind_speed(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace().rev();
    let unit = parts.next()?;
    let value: f64 = parts.next()?.parse().ok()?;
    Some(match unit {
        "mph" => value * 0.44704,
        "km/h" => value / 3.6,
        "kt" => value * 0.514444,
        _ => return None,
    })
}

fn compass(text: &str) -> Option<f64> {
    const POINTS: [&str; 16] =
        ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"];
    POINTS.iter().position(|p| *p == text).map(|i| i as f64 * 22.5)
}

/// The hourly forecast (`/gridpoints/{wfo}/{x},{y}/forecast/hourly`).
pub fn parse_forecast_hourly(body: &Value, fetched_at: DateTime<Utc>) -> Result<ForecastRun, SourceError> {
    let props = body.get("properties").ok_or_else(|| SourceError::Malformed("no properties".into()))?;
    let periods =
        props.get("periods").and_then(Value::as_array).ok_or_else(|| SourceError::Malformed("no periods".into()))?;
    let hourly = periods
        .iter()
        .filter_map(|p| {
            let mut h = ForecastHour::empty(time(p, &["startTime"])?);
            let t = p.get("temperature").and_then(Value::as_f64);
            h.temperature = match p.get("temperatureUnit").and_then(Value::as_str) {
                Some("F") => round(t.map(|f| (f - 32.0) * 5.0 / 9.0)),
                _ => t,
            };
            h.humidity = quantity(p, "relativeHumidity");
            h.precipitation_probability = quantity(p, "probabilityOfPrecipitation");
            h.wind_speed = round(p.get("windSpeed").and_then(Value::as_str).and_then(wind_speed));
            h.wind_direction = p.get("windDirection").and_then(Value::as_str).and_then(compass);
            Some(h)
        })
        .collect();
    let issued_at = time(props, &["generatedAt"]).or_else(|| time(props, &["updateTime"])).unwrap_or(fetched_at);
    Ok(ForecastRun { name: source(), issued_at, hourly })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "points" => include_str!("../../../tests/fixtures/upstream/nws-points.json"),
            "stations" => include_str!("../../../tests/fixtures/upstream/nws-gridpoint-stations.json"),
            "observation" => include_str!("../../../tests/fixtures/upstream/nws-observation-latest.json"),
            _ => include_str!("../../../tests/fixtures/upstream/nws-forecast-hourly.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn follows_the_points_links_on_the_configured_base() {
        let p = parse_point(&fixture("points")).unwrap();
        assert_eq!(
            rebase("http://127.0.0.1:9", &p.forecast_hourly),
            "http://127.0.0.1:9/gridpoints/TAE/58,65/forecast/hourly"
        );
        assert_eq!(rebase("http://127.0.0.1:9/", &p.stations), "http://127.0.0.1:9/gridpoints/TAE/58,65/stations");
        assert_eq!(points_url("https://api.weather.gov", 30.0, -85.00001), "https://api.weather.gov/points/30,-85");
        assert_eq!(parse_stations(&fixture("stations")).unwrap(), "KCMH");
    }

    #[test]
    fn converts_the_observation_units_and_keeps_nulls_missing() {
        let r = parse_observation(&fixture("observation"), &LocationId::parse("KFLL").unwrap()).unwrap();
        assert_eq!(r.observed_at, "2022-03-02T23:53:00Z".parse::<DateTime<Utc>>().unwrap());
        // 22.8 °C, 75.77 %, 101870 Pa → 1018.7 hPa, 7.56 km/h → 2.1 m/s, 20°, 16090 m → 16.09 km,
        // precipitationLastHour null → missing.
        assert_eq!(
            r.values.to_array()[..9],
            [Some(22.8), Some(75.77), Some(1018.7), Some(2.1), Some(20.0), Some(16.09), None, None, None]
        );
    }

    #[test]
    fn parses_the_hourly_forecast_in_celsius_and_m_per_s() {
        let run = parse_forecast_hourly(&fixture("hourly"), Utc::now()).unwrap();
        assert_eq!(run.hourly.len(), 2);
        let h = &run.hourly[0];
        assert_eq!(h.time, "2019-10-15T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(h.temperature, Some(25.56));
        assert_eq!(h.precipitation_probability, Some(20.0));
        assert_eq!(h.humidity, Some(63.0));
        assert_eq!(h.wind_speed, Some(0.0));
        assert_eq!(h.wind_direction, Some(180.0));
    }

    #[test]
    fn reads_wind_speed_strings() {
        assert_eq!(wind_speed("0 to 5 mph").map(|v| (v * 100.0).round() / 100.0), Some(2.24));
        assert_eq!(wind_speed("36 km/h"), Some(10.0));
        assert_eq!(wind_speed("calm"), None);
    }
}
