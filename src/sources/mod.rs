//! Sources of readings and forecasts: one folder per upstream provider, no actors.
//!
//! A provider is one folder, `sources/<provider>/`: its request building, the parsing of
//! its bodies into domain readings and hourly forecasts (pure functions, unit-tested on
//! the recorded bodies in `tests/fixtures/upstream/`), and an implementation of
//! [`Provider`]: what it covers, how many locations one request carries, and how it
//! fetches through its [`upstream::Upstream`] (the shared HTTP client with its cache,
//! rate limit, retries and circuit breaker). Its settings are the `sources.<key>` section
//! ([`ProviderSettings`], defaults in `config/default.toml`). Registering a provider is
//! one line in [`for_each_provider`]; the `SourcePoller` actor is generic over the trait.
//!
//! [`replay`] is the bundled dataset of real observations.

pub mod met_norway;
pub mod nws;
pub mod open_meteo;
pub mod open_meteo_air_quality;
pub mod openweathermap;
pub mod openweathermap_air_pollution;
pub mod replay;
pub mod upstream;
pub mod weatherapi;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::upstream::Upstream;
use crate::domain::{AirReport, ForecastRun, Location, LocationId, Reading};

/// Calls `visit::<P>()` for every provider isobar knows: the registry.
pub fn for_each_provider(visitor: &mut impl ProviderVisitor) {
    visitor.visit::<open_meteo::OpenMeteo>();
    visitor.visit::<open_meteo_air_quality::OpenMeteoAirQuality>();
    visitor.visit::<met_norway::MetNorway>();
    visitor.visit::<nws::Nws>();
    visitor.visit::<openweathermap::OpenWeatherMap>();
    visitor.visit::<openweathermap_air_pollution::OpenWeatherMapAirPollution>();
    visitor.visit::<weatherapi::WeatherApi>();
}

/// Something done once per registered provider type.
pub trait ProviderVisitor {
    fn visit<P: Provider>(&mut self);
}

/// An upstream weather provider.
pub trait Provider: Send + Sync + Sized + 'static {
    /// The source name of its readings and forecasts, and its metrics label.
    const NAME: &'static str;
    /// Its settings section: `sources.<KEY>`.
    const KEY: &'static str;

    /// Whether these settings let it run; `Err` says why not (and whether it still
    /// shows in /ready, switched off).
    fn check(settings: &ProviderSettings, contact: &str) -> Result<(), NotRunning> {
        let _ = (settings, contact);
        Ok(())
    }

    fn new(settings: &ProviderSettings) -> Self;

    /// Locations one request can carry.
    fn max_batch(&self) -> usize {
        1
    }

    /// Whether it serves this location at all.
    fn covers(&self, location: &Location) -> bool {
        let _ = location;
        true
    }

    /// Fetches current conditions and forecasts of `targets` (at most `max_batch`).
    fn fetch(&self, upstream: &Upstream, targets: &[Arc<Location>]) -> impl Future<Output = FetchResult>;
}

/// Why a configured provider does not poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunning {
    /// Not started at all (say, no API key): logged once at start.
    Off(String),
    /// Started but switched off until the configuration changes: shown in /ready.
    Disabled(String),
}

/// What one fetch produced, per location, and how long it stays fresh.
pub type FetchResult = (Vec<(LocationId, Result<ProviderData, SourceError>)>, Duration);

/// Runs `fetch` for each target on its own (providers without batching) and joins the
/// results; the freshness is the shortest of them.
pub async fn fetch_each<'a, F, Fut>(targets: &'a [Arc<Location>], fetch: F) -> FetchResult
where
    F: Fn(&'a Location) -> Fut,
    Fut: Future<Output = (Result<ProviderData, SourceError>, Duration)>,
{
    let mut out = Vec::with_capacity(targets.len());
    let mut fresh_for = Duration::MAX;
    for target in targets {
        let (result, fresh) = fetch(target).await;
        fresh_for = fresh_for.min(fresh);
        out.push((target.id.clone(), result));
    }
    (out, fresh_for)
}

/// One location's data from its current-conditions response and its forecast response,
/// each parsed on its own: usable when either is, fresh as long as the shorter-lived one.
pub fn combine(
    current: Result<upstream::Fetched, SourceError>,
    forecast: Result<upstream::Fetched, SourceError>,
    parse_current: impl FnOnce(&Value) -> Result<Reading, SourceError>,
    parse_forecast: impl FnOnce(&Value) -> Result<ForecastRun, SourceError>,
) -> (Result<ProviderData, SourceError>, Duration) {
    let fresh_for = [&current, &forecast]
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|f| f.fresh_for))
        .min()
        .unwrap_or(Duration::ZERO);
    let reading = current.and_then(|f| parse_current(&f.body));
    let run = forecast.and_then(|f| parse_forecast(&f.body));
    let result = match (reading, run) {
        (Err(e), Err(_)) => Err(e),
        (reading, run) => Ok(ProviderData { reading: reading.ok(), forecast: run.ok(), ..ProviderData::default() }),
    };
    (result, fresh_for)
}

/// A registered provider's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// Its settings section, `sources.<key>`.
    pub key: &'static str,
    /// Its source name.
    pub name: &'static str,
}

/// Every registered provider, in registry order.
pub fn registered() -> &'static [Registered] {
    static REGISTERED: OnceLock<Vec<Registered>> = OnceLock::new();
    struct Collect(Vec<Registered>);
    impl ProviderVisitor for Collect {
        fn visit<P: Provider>(&mut self) {
            self.0.push(Registered { key: P::KEY, name: P::NAME });
        }
    }
    REGISTERED.get_or_init(|| {
        let mut all = Collect(Vec::new());
        for_each_provider(&mut all);
        all.0
    })
}

/// The metric label for a source: its name when it is one isobar knows (a provider,
/// `station`, `replay`), else `other`, so label values stay a bounded set whatever
/// clients send.
pub fn source_label(source: &str) -> &'static str {
    ["station", "replay"]
        .into_iter()
        .chain(registered().iter().map(|p| p.name))
        .find(|known| *known == source)
        .unwrap_or("other")
}

/// The settings of one provider: the `sources.<key>` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub enabled: bool,
    /// Scheme and host (and path prefix) of the API; point it at a mirror or a test server.
    pub base_url: String,
    /// How often a tracked location is refreshed (at the earliest when its response expires).
    pub poll_interval_secs: u64,
    /// Per request, connect included.
    pub timeout_secs: u64,
    /// For providers that need one (OpenWeatherMap, WeatherAPI); they stay off while it is empty.
    pub api_key: String,
    /// Freshness of a response that carries no Cache-Control or Expires.
    pub cache_ttl_secs: u64,
    /// Requests per second to this provider, across all locations.
    pub rate_limit_per_sec: f64,
    /// Retries of a failed request (5xx, timeout, 429, malformed body).
    pub max_retries: u32,
    /// First retry delay; doubles each retry, plus up to as much jitter.
    pub backoff_base_ms: u64,
    /// Consecutive failed requests that open the circuit.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit fails fast before one trial request.
    pub circuit_cooldown_secs: u64,
    /// Longest Retry-After honoured in place; longer ones end the attempt.
    pub max_retry_after_secs: u64,
}

impl ProviderSettings {
    /// The checks every provider's settings must pass; the error names the key.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.enabled && !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(format!("sources.{key}.base_url: must start with http:// or https://"));
        }
        if self.rate_limit_per_sec <= 0.0 || !self.rate_limit_per_sec.is_finite() {
            return Err(format!("sources.{key}.rate_limit_per_sec: must be greater than 0"));
        }
        if self.circuit_failure_threshold == 0 {
            return Err(format!("sources.{key}.circuit_failure_threshold: must be at least 1"));
        }
        Ok(())
    }
}

/// The refusal of a provider that needs an API key and has none.
pub fn require_api_key(settings: &ProviderSettings, key: &str) -> Result<(), NotRunning> {
    if settings.api_key.trim().is_empty() {
        let env = format!("ISOBAR__SOURCES__{}__API_KEY", key.to_uppercase());
        Err(NotRunning::Off(format!("off: set sources.{key}.api_key ({env}) to use it")))
    } else {
        Ok(())
    }
}

/// What one provider said about one location.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProviderData {
    pub reading: Option<Reading>,
    pub forecast: Option<ForecastRun>,
    /// Readings of the hours before `reading` (a provider that reports its recent past),
    /// oldest first.
    pub past: Vec<Reading>,
    /// An air-quality provider's own index and pollutant forecast.
    pub air: Option<AirReport>,
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
