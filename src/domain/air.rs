//! What an air-quality provider says besides its readings: its own index of the current
//! hour, and its hourly forecast of the pollutants.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Quantity, SourceName};

/// The pollutant quantities, in the order a forecast hour holds them.
pub const POLLUTANTS: [Quantity; 6] =
    [Quantity::Pm25, Quantity::Pm10, Quantity::O3, Quantity::Co, Quantity::So2, Quantity::No2];

/// Hours of pollutant forecast kept per location and provider, and the most
/// `/air-quality?hours=` forecasts.
pub const FORECAST_HOURS: usize = 48;

/// A provider's latest report of a location, kept until the next replaces it.
#[derive(Debug, Clone, PartialEq)]
pub struct AirReport {
    pub source: SourceName,
    /// The provider's own indices of its current values.
    pub indices: Vec<ReportedIndex>,
    /// The first forecast hour (the one after the provider's current one).
    pub start: DateTime<Utc>,
    /// Consecutive hours from `start`: each pollutant's µg/m³ in [`POLLUTANTS`] order,
    /// NaN where the provider has none (`f32`, as 48 hours of six numbers per location
    /// and provider add up).
    pub hours: Vec<[f32; 6]>,
}

impl AirReport {
    /// A report without a forecast.
    pub fn indices_only(source: SourceName, indices: Vec<ReportedIndex>) -> Self {
        Self { source, indices, start: DateTime::<Utc>::MIN_UTC, hours: Vec::new() }
    }

    /// The forecast µg/m³ of `quantity` for the hour starting at `hour`.
    pub fn forecast(&self, hour: DateTime<Utc>, quantity: Quantity) -> Option<f64> {
        let column = POLLUTANTS.iter().position(|&q| q == quantity)?;
        let offset = usize::try_from((hour - self.start).num_hours()).ok()?;
        let value = self.hours.get(offset)?[column];
        (hour == self.start + Duration::hours(offset as i64) && value.is_finite()).then_some(f64::from(value))
    }
}

/// One index a provider computed itself, shown beside isobar's, never instead of it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReportedIndex {
    /// The provider.
    #[schema(value_type = String)]
    pub source: SourceName,
    /// `us_aqi` (Open-Meteo's US AQI, 0-500), `european_aqi` (Open-Meteo's European AQI,
    /// 0-100+) or `openweathermap_aqi` (OpenWeather's own scale, 1-5).
    pub index: String,
    pub value: f64,
    /// The provider scale's name for the value, where it has names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The time the provider gives the value.
    pub observed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forecast_hour_is_found_by_its_start_and_pollutant() {
        let start: DateTime<Utc> = "2026-11-28T01:00:00Z".parse().unwrap();
        let report = AirReport {
            source: SourceName::parse("p").unwrap(),
            indices: Vec::new(),
            start,
            hours: vec![[1.0, f32::NAN, 3.0, 4.0, 5.0, 6.0], [7.0; 6]],
        };
        assert_eq!(report.forecast(start, Quantity::O3), Some(3.0));
        assert_eq!(report.forecast(start, Quantity::Pm10), None);
        assert_eq!(report.forecast(start + Duration::hours(1), Quantity::No2), Some(7.0));
        assert_eq!(report.forecast(start + Duration::hours(2), Quantity::No2), None);
        assert_eq!(report.forecast(start - Duration::hours(1), Quantity::No2), None);
        assert_eq!(report.forecast(start + Duration::minutes(30), Quantity::No2), None);
        assert_eq!(report.forecast(start, Quantity::Temperature), None);
    }
}
