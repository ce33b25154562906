//! The settings tree. `isobar serve [--profile NAME] [--config FILE]` layers
//! `config/default.toml` (compiled in; a copy on disk in `config/` overrides it), then
//! `config/NAME.toml`, then FILE, then `ISOBAR__<SECTION>__<KEY>` environment variables.
//! Each component receives only its own slice.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::sources::ProviderSettings;
use crate::sources::registered;
pub use crate::telemetry::{LogFormat, LogSettings};

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const BUILT_IN_PROFILES: [(&str, &str); 2] =
    [("demo", include_str!("../config/demo.toml")), ("production", include_str!("../config/production.toml"))];

/// Everything isobar reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub ws: WsSettings,
    pub locations: LocationSettings,
    pub persist: PersistSettings,
    pub redis: RedisSettings,
    pub influx: InfluxSettings,
    pub kafka: KafkaSettings,
    pub consensus: ConsensusConfig,
    #[serde(default)]
    pub anomalies: AnomalyConfig,
    #[serde(default)]
    pub forecast: ForecastConfig,
    #[serde(default)]
    pub graphql: GraphqlSettings,
    pub sources: SourcesSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
}

/// Who may do what (README, Security).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Reads without a key are allowed (limited per client IP).
    pub anonymous_reads: bool,
    /// A write from loopback without a key is allowed (the README's curl examples).
    pub loopback_writes: bool,
    /// New stations one key may create.
    pub max_stations_per_key: usize,
    /// Requests per second of one client IP without a key.
    pub anonymous_rate_per_sec: u32,
    /// Requests per second of one key without a rate of its own.
    pub key_rate_per_sec: u32,
    /// A client may send this many seconds' worth of its rate at once (the burst).
    pub burst_secs: u32,
    /// WebSocket connections one client IP without a key may hold open.
    pub max_ws_per_ip: usize,
    /// WebSocket connections one key may hold open.
    pub max_ws_per_key: usize,
    /// Limit anonymous calls from loopback too (off: the machine's own tools and a local
    /// proxy not listed in `http.trusted_proxies` are not limited).
    pub limit_loopback: bool,
    /// Keys beyond the store's: name, sha256 (of the key), scope, sources, rate_per_sec.
    pub keys: Vec<crate::auth::key::KeyRecord>,
}

/// The HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one (logged at start).
    pub port: u16,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout_secs: u64,
    /// `Cache-Control: max-age` of `/current`.
    pub current_max_age_secs: u64,
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Browser origins allowed to call the API (CORS), e.g. `https://dash.example.com`;
    /// none by default.
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's head (slow clients get 408).
    pub request_head_timeout_secs: u64,
    /// How long a client may take to send a request's body.
    pub request_body_timeout_secs: u64,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive_secs: u64,
    /// Connections the kernel queues for accepting (capped at `net.core.somaxconn`).
    pub backlog: u32,
}

/// WebSocket sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WsSettings {
    /// Locations one connection may follow.
    pub max_subscriptions: usize,
    /// Largest client message; a larger frame closes the connection with 1009.
    pub max_message_bytes: usize,
    /// How often the server pings.
    pub heartbeat_interval_secs: u64,
    /// A client silent (no message, no pong) this long is disconnected.
    pub client_timeout_secs: u64,
    /// Outbound messages queued per client before it is closed with 1013.
    pub outbound_queue: usize,
}

/// Location actors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocationSettings {
    /// An actor with no subscribers and no requests for this long stops.
    pub idle_passivate_secs: u64,
    /// How far back the per-location ring buffer (and /history) reaches.
    pub history_hours: u64,
    /// Cap on readings kept per location.
    pub max_history_readings: usize,
    /// Age after which a source stops counting and, with none fresher, the location is stale.
    pub stale_after_secs: u64,
    /// How far ahead of the server's clock a reading's `observed_at` may be (stations'
    /// clocks run fast); later ones are refused.
    pub max_clock_skew_secs: u64,
    /// Location ids started at boot.
    pub preload: Vec<String>,
}

/// The persister.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersistSettings {
    /// How often buffered writes are flushed to the backends.
    pub flush_interval_ms: u64,
    /// How often a changed location hands its snapshot to the persister.
    pub snapshot_interval_ms: u64,
    /// Items per write to a backend.
    pub batch_max_items: usize,
    /// Items held in memory per backend; beyond, or while the backend is down, they go to
    /// the spool file.
    pub queue_max_items: usize,
    /// Where the spool files live (created if missing).
    pub data_dir: String,
    /// Largest size of one backend's spool; past it writes wait in memory and /ready
    /// answers 503 naming the backend.
    pub spool_max_bytes: u64,
    /// Sync each spool append to the disk before it counts as written.
    pub spool_fsync: bool,
    /// First retry delay after a failed write; doubles up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

/// Redis: latest state and cross-instance live feed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`; empty = off. Comma-separated nodes with `cluster`.
    pub url: String,
    /// Talk to a Redis Cluster.
    pub cluster: bool,
    /// Lifetime of a location's snapshot key.
    pub snapshot_ttl_secs: u64,
}

/// InfluxDB 1.x (or 2.x's v1-compatible API): history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InfluxSettings {
    /// `http://host:8086`; empty = off.
    pub url: String,
    pub database: String,
    pub username: String,
    pub password: String,
}

/// Kafka: readings in through a consumer group, consensus updates out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`; empty = off.
    pub brokers: String,
    pub readings_topic: String,
    pub dlq_topic: String,
    pub updates_topic: String,
    pub group_id: String,
    /// Static group membership (`group.instance.id`), e.g. a StatefulSet pod's name: an
    /// instance restarted under the same id takes its partitions back at once instead of
    /// waiting out the dead member's session. Empty = dynamic membership.
    pub instance_id: String,
    /// Larger messages go to the dead-letter topic.
    pub max_message_bytes: usize,
    /// How long a POST waits for the broker to acknowledge its readings before it answers
    /// 503 with Retry-After.
    pub ack_timeout_ms: u64,
    /// librdkafka properties passed through as is: security (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, …) and tuning.
    pub properties: std::collections::BTreeMap<String, String>,
}

/// How sources are merged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsensusConfig {
    /// Weight multiplier per source name; unlisted sources get 1.0.
    pub trust: std::collections::BTreeMap<String, f64>,
    /// Robust z-score (|value − median| / (1.4826 × MAD)) above which a source is an outlier.
    pub outlier_threshold: f64,
}

/// Anomaly detection per location (README, Anomalies).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    pub enabled: bool,
    /// Kinds whose flagged readings are left out of the consensus while active.
    pub exclude_from_consensus: Vec<crate::domain::AnomalyKind>,
    /// Anomalies kept per location, when InfluxDB does not keep them.
    pub history: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        use crate::domain::AnomalyKind;
        Self {
            enabled: true,
            exclude_from_consensus: vec![AnomalyKind::Spike, AnomalyKind::Flatline, AnomalyKind::Drift],
            history: 256,
        }
    }
}

/// Forecasts learned per place from its own history (README, Forecasting).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    pub enabled: bool,
    /// Places this instance learns at most (each keeps `history_hours` of hourly means
    /// and its fitted models); a place idle for two days makes room for a new one.
    pub max_locations: usize,
    /// Hours of hourly means kept per place, and trained on.
    pub history_hours: usize,
    /// A place's models are fitted again once this many hours were observed since.
    pub retrain_hours: u32,
    /// Places trained at once, each on a thread of the blocking pool.
    pub train_concurrency: usize,
}

/// The GraphQL API at `/graphql` (README, GraphQL).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlSettings {
    pub enabled: bool,
    /// GraphiQL at `GET /graphql` (from a CDN, in the browser).
    pub playground: bool,
    /// Deepest selection a query may nest.
    pub max_depth: usize,
    /// Most fields a query may select, each counted once and lists by their length.
    pub max_complexity: usize,
    /// Operations in one batched request.
    pub max_batch: usize,
    /// Subscriptions one WebSocket connection may hold at once.
    pub max_subscriptions: usize,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            playground: false,
            max_depth: 8,
            max_complexity: 200,
            max_batch: 10,
            max_subscriptions: 20,
        }
    }
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self { enabled: true, max_locations: 256, history_hours: 90 * 24, retrain_hours: 24, train_concurrency: 1 }
    }
}

/// One section per source, plus what they share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourcesSettings {
    /// Contact (e-mail or URL) sent in the User-Agent; MET Norway refuses to serve without one.
    pub contact: String,
    /// How long the first request for a location waits for the providers' first data.
    pub cold_wait_ms: u64,
    /// Each provider polls at most this many locations: the most recently asked for (the
    /// rest keep their last data, marked stale, until they are asked for again).
    pub max_active_locations: usize,
    pub replay: ReplaySettings,
    /// Each upstream provider's section, `sources.<key>` (the keys of the providers in
    /// `sources::for_each_provider`); a key no provider has is refused.
    #[serde(flatten, deserialize_with = "providers")]
    pub providers: BTreeMap<String, ProviderSettings>,
}

/// The provider sections, each read on its own so that an error names its section.
fn providers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ProviderSettings>, D::Error> {
    use serde::de::Error;
    let sections = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    sections
        .into_iter()
        .map(|(key, section)| {
            if !registered().iter().any(|p| p.key == key) {
                let known: Vec<&str> = registered().iter().map(|p| p.key).collect();
                let known = known.join(", ");
                return Err(D::Error::custom(format!(
                    "sources.{key}: unknown source; the known ones are replay, {known}"
                )));
            }
            let settings =
                serde_json::from_value(section).map_err(|e| D::Error::custom(format!("sources.{key}: {e}")))?;
            Ok((key, settings))
        })
        .collect()
}

/// The bundled replay of real 2013 observations at KEWR, KJFK and KLGA.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    pub enabled: bool,
    /// Dataset seconds per wall-clock second (1 = real time, 1800 = an hour every 2 s).
    pub speed: f64,
    /// Dataset instant to start from (RFC 3339); empty = same day and hour of year as now.
    pub start_at: String,
}

/// A configuration problem, phrased to name the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown profile {0:?}: no config/{0}.toml and no built-in profile of that name")]
    UnknownProfile(String),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layered settings (see the module docs) from the current directory.
    pub fn load(profile: Option<&str>, file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        let on_disk = Path::new("config/default.toml");
        if on_disk.exists() {
            figment = figment.merge(Toml::file(on_disk));
        }
        if let Some(name) = profile {
            let path = PathBuf::from(format!("config/{name}.toml"));
            if path.exists() {
                figment = figment.merge(Toml::file(path));
            } else if let Some((_, text)) = BUILT_IN_PROFILES.iter().find(|(n, _)| *n == name) {
                figment = figment.merge(Toml::string(text));
            } else {
                return Err(ConfigError::UnknownProfile(name.to_owned()));
            }
        }
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("ISOBAR__").split("__"));
        Self::extract(figment)
    }

    /// These settings with secrets replaced by `***`, for printing and logging.
    pub fn masked(&self) -> Self {
        let mut s = self.clone();
        for p in s.sources.providers.values_mut() {
            if !p.api_key.is_empty() {
                p.api_key = "***".into();
            }
        }
        if !s.influx.password.is_empty() {
            s.influx.password = "***".into();
        }
        s.redis.url = mask_url_password(&s.redis.url);
        for (key, value) in s.kafka.properties.iter_mut() {
            if ["password", "secret", "key", "token"].iter().any(|w| key.contains(w)) && !value.is_empty() {
                *value = "***".into();
            }
        }
        s
    }

    /// The compiled-in defaults with `overrides` merged on top (tests, embedding).
    /// The built-in defaults alone.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::defaults_with(serde_json::json!({}))
    }

    pub fn defaults_with(overrides: impl Serialize) -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)).merge(Serialized::defaults(overrides)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Self = figment.extract().map_err(|e| ConfigError::Invalid(one_line(&e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        if !self.sources.replay.speed.is_finite() || self.sources.replay.speed <= 0.0 {
            return bad("sources.replay.speed", "must be greater than 0");
        }
        if !self.sources.replay.start_at.is_empty()
            && chrono::DateTime::parse_from_rfc3339(&self.sources.replay.start_at).is_err()
        {
            return bad("sources.replay.start_at", "must be empty or an RFC 3339 timestamp");
        }
        for (key, provider) in &self.sources.providers {
            provider.validate(key).map_err(ConfigError::Invalid)?;
        }
        if self.http.backlog == 0 {
            return bad("http.backlog", "must be at least 1");
        }
        if self.ws.outbound_queue == 0 {
            return bad("ws.outbound_queue", "must be at least 1");
        }
        if self.locations.history_hours == 0 {
            return bad("locations.history_hours", "must be at least 1");
        }
        if self.forecast.train_concurrency == 0 {
            return bad("forecast.train_concurrency", "must be at least 1");
        }
        if self.forecast.history_hours < 15 * 24 {
            return bad("forecast.history_hours", "must be at least 360 (14 days to train on, and one before them)");
        }
        if self.forecast.retrain_hours == 0 {
            return bad("forecast.retrain_hours", "must be at least 1");
        }
        for id in &self.locations.preload {
            if crate::domain::LocationId::parse(id).is_err() {
                return bad("locations.preload", &format!("{id:?} is not a valid location id"));
            }
        }
        Ok(())
    }
}

/// `redis://:secret@host` → `redis://:***@host`.
fn mask_url_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn one_line(error: &figment::Error) -> String {
    error.clone().into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiled_in_defaults_load() {
        let s = Settings::defaults_with(json!({})).unwrap();
        assert_eq!(s.http.port, 8080);
        assert_eq!(s.ws.max_subscriptions, 100);
        assert!(!s.sources.replay.enabled);
        assert_eq!(s.log.format, LogFormat::Pretty);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = Settings::defaults_with(json!({"http": {"port": "eighty"}})).unwrap_err().to_string();
        assert!(e.contains("http.port"), "{e}");
        let e = Settings::defaults_with(json!({"sources": {"replay": {"speed": 0.0}}})).unwrap_err();
        assert_eq!(e.to_string(), "invalid configuration: sources.replay.speed: must be greater than 0");
        let e = Settings::defaults_with(json!({"http": {"backlog": 0}})).unwrap_err();
        assert_eq!(e.to_string(), "invalid configuration: http.backlog: must be at least 1");
        assert_eq!(Settings::defaults_with(json!({})).unwrap().http.backlog, 4096);
    }

    #[test]
    fn secrets_are_masked() {
        let s = Settings::defaults_with(json!({"redis": {"url": "redis://:hunter2@127.0.0.1:6379/0"},
            "influx": {"password": "pw"}}))
        .unwrap()
        .masked();
        assert_eq!(s.redis.url, "redis://:***@127.0.0.1:6379/0");
        assert_eq!(s.influx.password, "***");
    }

    #[test]
    fn kafka_secrets_are_masked() {
        let s = Settings::defaults_with(json!({"kafka": {"properties": {
            "sasl.password": "pw", "sasl.username": "me", "ssl.key.password": "k"}}}))
        .unwrap()
        .masked();
        assert_eq!(s.kafka.properties["sasl.password"], "***");
        assert_eq!(s.kafka.properties["ssl.key.password"], "***");
        assert_eq!(s.kafka.properties["sasl.username"], "me");
    }

    #[test]
    fn every_registered_provider_has_defaults_and_unknown_sources_are_refused() {
        let s = Settings::defaults_with(json!({})).unwrap();
        let keys: Vec<&str> = s.sources.providers.keys().map(String::as_str).collect();
        let mut known: Vec<&str> = registered().iter().map(|p| p.key).collect();
        known.sort();
        assert_eq!(keys, known);
        let e = Settings::defaults_with(json!({"sources": {"darksky": {"enabled": true}}})).unwrap_err().to_string();
        assert!(e.contains("sources.darksky: unknown source; the known ones are replay, open_meteo"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Settings::defaults_with(json!({"http": {"prot": 1}})).unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
    }
}
