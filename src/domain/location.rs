//! A location as the API shows it: a catalog city or a station.

use serde::Serialize;
use utoipa::ToSchema;

use super::LocationId;

/// Whether a location comes from the bundled city catalog or from a station's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    City,
    Station,
}

/// One location: `GET /v1/locations/{id}` and the entries of search results.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Location {
    #[schema(value_type = String, example = "5128581")]
    pub id: LocationId,
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    /// IANA time zone.
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population: Option<u64>,
    /// Metres above sea level, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elevation: Option<f64>,
    pub kind: LocationKind,
}
