//! The current-conditions document: `/current`, and `data` of WebSocket snapshot/update.
//!
//! Built in metric by the consensus; [`Current::in_units`] converts a copy for rendering.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Anomaly, Location, Quantity, SourceName, Units, Values};

/// The location block embedded in current conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LocationRef {
    #[schema(value_type = String)]
    pub id: super::LocationId,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub timezone: String,
}

impl From<&Location> for LocationRef {
    fn from(l: &Location) -> Self {
        Self {
            id: l.id.clone(),
            name: l.name.clone(),
            latitude: l.latitude,
            longitude: l.longitude,
            timezone: l.timezone.clone(),
        }
    }
}

/// What one source contributed to the consensus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceContribution {
    #[schema(value_type = String, example = "station")]
    pub name: SourceName,
    pub observed_at: DateTime<Utc>,
    pub age_seconds: i64,
    /// 1 for a fresh source, 0 for one left out of the consensus (too old).
    pub weight: f64,
    pub temperature: Option<f64>,
    pub outlier: bool,
}

/// Consensus current conditions of one location. Fields no source reports are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Current {
    pub location: LocationRef,
    pub observed_at: DateTime<Utc>,
    pub units: Units,
    /// The merged quantities, in table order (`temperature`, `humidity`, …).
    #[serde(flatten)]
    pub values: Values,
    /// WMO weather code, from providers that report one.
    pub weather_code: Option<u8>,
    pub description: Option<String>,
    pub sources: Vec<SourceContribution>,
    pub sources_count: usize,
    /// 0.7 for a single source; 0.5-1.0 from the agreement of several.
    pub confidence: f64,
    /// Share of expected fields present, discounted by age; 0-1.
    pub quality_score: f64,
    /// True when the freshest reading is older than the configured limit.
    pub stale: bool,
    /// The active anomalies of the sources' latest readings, oldest first. A source's
    /// quantity flagged as a spike, flatline or drift is left out of `values` while
    /// the anomaly is active (configurable per kind).
    pub anomalies: Vec<Anomaly>,
    /// The US AQI of the location's pollutants, when a source reports them (the whole
    /// is `/air-quality`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub air_quality: Option<AirQualitySummary>,
}

/// The air quality in `/current`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct AirQualitySummary {
    pub aqi: u16,
    /// good, moderate, unhealthy_for_sensitive_groups, unhealthy, very_unhealthy or
    /// hazardous.
    pub category: String,
    /// The pollutant whose sub-index is the AQI (pm2_5, pm10, o3, co, so2 or no2).
    pub dominant: String,
    /// The start of the newest hour of pollutants it comes from.
    pub hour: DateTime<Utc>,
}

impl Current {
    /// This document with every quantity converted to `units`.
    pub fn in_units(&self, units: Units) -> Self {
        let mut c = self.clone();
        c.units = units;
        c.values = c.values.in_units(units);
        let temperature = Quantity::Temperature.spec();
        for s in &mut c.sources {
            s.temperature = s.temperature.map(|v| temperature.to_units(v, units));
        }
        for a in &mut c.anomalies {
            *a = a.in_units(units);
        }
        c
    }
}
