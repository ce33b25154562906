//! Unit systems of the public API. Everything inside isobar is metric; conversion happens
//! only when a response is rendered.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `units=metric` (°C, %, hPa, m/s, km, mm) or `units=imperial` (°F, %, inHg, mph, mi, in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    #[default]
    Metric,
    Imperial,
}

/// The `units` query parameter held something other than `metric` or `imperial`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("units must be 'metric' or 'imperial', got {0:?}")]
pub struct InvalidUnits(pub String);

impl Units {
    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidUnits> {
        match raw {
            None | Some("metric") => Ok(Self::Metric),
            Some("imperial") => Ok(Self::Imperial),
            Some(other) => Err(InvalidUnits(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Imperial => "imperial",
        }
    }

    /// `value` of quantity `q` (metric) in these units.
    pub fn convert(self, q: super::Quantity, value: f64) -> f64 {
        q.spec().to_units(value, self)
    }
}

/// Rounds to two decimals: the precision every number in the API is shown with.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_systems_and_defaults_to_metric() {
        assert_eq!(Units::parse(None), Ok(Units::Metric));
        assert_eq!(Units::parse(Some("imperial")), Ok(Units::Imperial));
        assert_eq!(
            Units::parse(Some("kelvin")).unwrap_err().to_string(),
            "units must be 'metric' or 'imperial', got \"kelvin\""
        );
    }
}
