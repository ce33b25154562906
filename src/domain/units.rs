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

    pub fn temperature(self, celsius: f64) -> f64 {
        match self {
            Self::Metric => celsius,
            Self::Imperial => round2(celsius * 9.0 / 5.0 + 32.0),
        }
    }

    pub fn pressure(self, hpa: f64) -> f64 {
        match self {
            Self::Metric => hpa,
            Self::Imperial => round2(hpa * 0.029_529_983_071_445),
        }
    }

    pub fn speed(self, metres_per_second: f64) -> f64 {
        match self {
            Self::Metric => metres_per_second,
            Self::Imperial => round2(metres_per_second * 2.236_936_292_054_402),
        }
    }

    pub fn distance(self, km: f64) -> f64 {
        match self {
            Self::Metric => km,
            Self::Imperial => round2(km / 1.609_344),
        }
    }

    pub fn precipitation(self, mm: f64) -> f64 {
        match self {
            Self::Metric => mm,
            Self::Imperial => round2(mm / 25.4),
        }
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

    #[test]
    fn converts_to_imperial_with_two_decimals() {
        let i = Units::Imperial;
        assert_eq!(i.temperature(7.4), 45.32);
        assert_eq!(i.temperature(-40.0), -40.0);
        assert_eq!(i.pressure(1016.2), 30.01);
        assert_eq!(i.speed(3.1), 6.93);
        assert_eq!(i.distance(16.09), 10.0);
        assert_eq!(i.precipitation(25.4), 1.0);
        assert_eq!(Units::Metric.temperature(7.4), 7.4);
    }
}
