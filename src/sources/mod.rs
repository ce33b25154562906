//! Sources of readings and forecasts: request building and response parsing, no actors.
//!
//! One module per upstream provider (Open-Meteo, MET Norway, NWS, OpenWeatherMap), each
//! pure: URLs in, JSON bodies out to domain readings and hourly forecasts. The HTTP
//! client they go through lives with the pollers (`actors::poller::upstream`), and
//! [`replay`] is the bundled dataset of real observations.

pub mod met_norway;
pub mod nws;
pub mod open_meteo;
pub mod openweathermap;
pub mod replay;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{ForecastRun, Reading};

/// What one provider said about one location.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProviderData {
    pub reading: Option<Reading>,
    pub forecast: Option<ForecastRun>,
}

/// Why an upstream call gave nothing usable. Messages are written for the operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// 5xx, timeouts, connection failures: worth retrying.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// 429: back off, for `Retry-After` when given.
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    /// A 4xx other than 429: retrying the same request will not help.
    #[error("upstream refused the request (HTTP {status}): {detail}")]
    Refused { status: u16, detail: String },
    /// The provider does not serve this location (NWS outside the US).
    #[error("location not covered: {0}")]
    NotCovered(String),
    /// A bad key or identification; the provider stays off until the config changes.
    #[error("{0}")]
    Misconfigured(String),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("circuit open: too many recent failures, retrying later")]
    CircuitOpen,
}

impl SourceError {
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::RateLimited { .. } | Self::Malformed(_))
    }

    /// Bounded label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Refused { .. } => "refused",
            Self::NotCovered(_) => "not_covered",
            Self::Misconfigured(_) => "misconfigured",
            Self::Malformed(_) => "malformed",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// A number at `path` (object keys), `None` when absent or null.
pub(crate) fn num(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(value, |v, key| v.get(key)).and_then(Value::as_f64)
}

/// An RFC 3339 timestamp at `path`.
pub(crate) fn time(value: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let raw = path.iter().try_fold(value, |v, key| v.get(key))?.as_str()?;
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}

/// Coordinates with at most 4 decimals, truncated (MET Norway and NWS refuse more).
pub fn four_decimals(value: f64) -> String {
    let truncated = (value * 10_000.0).trunc() / 10_000.0;
    let s = format!("{truncated:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_truncated_to_four_decimals() {
        assert_eq!(four_decimals(40.639751), "40.6397");
        assert_eq!(four_decimals(-73.778925), "-73.7789");
        assert_eq!(four_decimals(30.0), "30");
        assert_eq!(four_decimals(-0.00001), "0");
    }
}
