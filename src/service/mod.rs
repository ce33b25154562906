//! `Service`: what every API asks of isobar, in one place. REST handlers (and next the
//! GraphQL resolvers) parse their input, call one method here and render the answer;
//! nothing here knows HTTP.
//!
//! It owns the rules a second API would otherwise write again: lookups across the
//! catalog and the stations, the fast path of current conditions and the cold wait for
//! a location nobody asked for yet, the forecast window and units, where history comes
//! from (InfluxDB or the location's ring) and its step, and turning submitted JSON items
//! into readings for the one ingest path. It reaches actors only by messages and reads
//! only read-only or published state.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::actors::demand::Demand;
use crate::actors::directory::{Describe, Directory, Resolve, UnknownLocation};
use crate::actors::forecaster::{Forecaster, TrainError, TrainNow};
use crate::actors::ingest::{Ingest, IngestError};
use crate::actors::kafka::{CheckKafka, KafkaIngest};
use crate::actors::location::{GetAirReports, GetAnomalies, GetCurrent, GetForecast, GetHistory, LocationActor};
use crate::actors::persister::{CheckBackends, Persister, QueryAnomalies, QueryHistory};
use crate::actors::poller::GetProviderStatus;
use crate::actors::views::PublishedViews;
use crate::analytics::aqi::{self, AirQuality};
use crate::analytics::forecast::Model;
use crate::analytics::history::downsample;
use crate::auth::StationQuota;
use crate::catalog::{self, Catalog, Stations};
use crate::core::Update;
use crate::domain::air::FORECAST_HOURS;
use crate::domain::reading::{CheckedAt, parse_valid_batch, rejection_reason};
use crate::domain::{
    AirReport, Anomaly, FieldError, Forecast, ForecastHour, Location, LocationId, Reading, TrainedSummary, Units,
};
use crate::sources::source_label;
use crate::telemetry::Metrics;

/// Most results of one search.
pub const MAX_SEARCH_LIMIT: usize = 100;
pub const DEFAULT_SEARCH_LIMIT: usize = 10;
const MAX_QUERY_CHARS: usize = 100;
pub const DEFAULT_FORECAST_HOURS: usize = 48;
pub const MAX_FORECAST_HOURS: usize = 240;
/// Days of anomalies /anomalies answers when `from` is not given.
const ANOMALY_DAYS: i64 = 7;

/// Most points one history answer may have with a step.
const MAX_HISTORY_STEPS: i64 = 10_000;
/// The longest step of history: 31 days.
const MAX_STEP_SECS: u64 = 31 * 86_400;
/// Slack on the retention bound of history, for clients whose clock is a little ahead.
const RETENTION_SLACK: chrono::Duration = chrono::Duration::minutes(1);
/// Retry-After of a 503 for a location whose providers have not answered yet.
const COLD_RETRY_AFTER_SECS: u64 = 5;
/// How long /ready waits for each component.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request could not be answered; each API renders it its own way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// An input value is wrong; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// Try again later.
    #[error("{detail}")]
    Unavailable { detail: String, retry_after_secs: u64 },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Understood, but it cannot be done with what the location has.
    #[error("{0}")]
    Unprocessable(String),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<MailboxError> for ServiceError {
    fn from(error: MailboxError) -> Self {
        tracing::error!(%error, "actor unavailable");
        Self::Unavailable { detail: "the service is restarting a component; retry shortly".into(), retry_after_secs: 1 }
    }
}

/// What the service needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How far back the locations' rings reach.
    pub history_hours: u64,
    /// History comes from InfluxDB (configured), else from the rings.
    pub history_in_influx: bool,
    /// How long a request for a location without data waits for the providers' first
    /// answer; `None` when no provider is on.
    pub cold_wait: Option<Duration>,
    /// How long a published view of current conditions is served as is.
    pub render_ttl: Duration,
    /// How far ahead of the server's clock a reading may be.
    pub max_clock_skew_secs: u64,
}

/// Who the service talks to.
pub struct ServiceDeps {
    pub directory: Addr<Directory>,
    pub persister: Addr<Persister>,
    pub catalog: Arc<Catalog>,
    pub stations: Arc<Stations>,
    pub views: Arc<PublishedViews>,
    pub ingest: Ingest,
    pub kafka: Option<Addr<KafkaIngest>>,
    pub providers: Vec<Recipient<GetProviderStatus>>,
    pub metrics: Arc<Metrics>,
    /// The stations each key created.
    pub station_quota: StationQuota,
    /// When each location was last asked for (the pollers poll the most recent).
    pub demand: Arc<Demand>,
    /// Learns each place's forecast; `None` when forecasting is off.
    pub forecaster: Option<Addr<Forecaster>>,
}

/// Who submits readings, and what that allows.
#[derive(Debug, Clone)]
pub enum Writer {
    /// A write key: it may write as `sources` only, and create at most
    /// `max_new_stations` stations.
    Key { name: String, sources: Vec<String>, max_new_stations: usize },
    /// Trusted without a key (loopback, when `auth.loopback_writes` allows it): any
    /// source but the reserved ones.
    Local,
}

/// Source names only isobar's own pollers and replay write as.
pub fn reserved_source(source: &str) -> bool {
    source == "replay" || crate::sources::registered().iter().any(|p| p.name == source)
}

pub struct Service {
    deps: ServiceDeps,
    settings: ServiceSettings,
}

/// A history request, validated by [`Service::history`].
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Mean per step of this many seconds.
    pub step_secs: Option<u64>,
}

/// One submitted item that was not taken.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub errors: Vec<FieldError>,
}

/// What the writer checks need of a submitted item, valid or not.
#[derive(Clone, Copy)]
struct ItemFacts<'a> {
    source: Option<&'a str>,
    location_id: Option<&'a str>,
    /// It carries a latitude (a station's first reading registers it).
    gives_coordinates: bool,
}

/// What became of submitted readings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: Vec<Rejected>,
}

/// The readiness of every dependency, for /ready.
pub struct Readiness {
    pub ready: bool,
    pub body: Value,
}

impl Service {
    pub fn new(deps: ServiceDeps, settings: ServiceSettings) -> Self {
        Self { deps, settings }
    }

    /// Cities and stations by name prefix, in one ranking.
    pub fn search(&self, query: &str, limit: Option<usize>) -> Result<Vec<Location>, ServiceError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(ServiceError::invalid("q", "is required: a name prefix such as \"New Y\""));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ServiceError::invalid("q", format!("must be at most {MAX_QUERY_CHARS} characters")));
        }
        let limit = match limit {
            None => DEFAULT_SEARCH_LIMIT,
            Some(n) if (1..=MAX_SEARCH_LIMIT).contains(&n) => n,
            Some(_) => return Err(search_limit_error()),
        };
        Ok(catalog::search(&self.deps.catalog, &self.deps.stations, query, limit))
    }

    /// The catalog city nearest to a point, and its distance in km (one decimal).
    pub fn nearest(&self, latitude: f64, longitude: f64) -> Result<(Location, f64), ServiceError> {
        for (field, value, bound) in [("lat", latitude, 90.0), ("lon", longitude, 180.0)] {
            if !(-bound..=bound).contains(&value) {
                return Err(ServiceError::invalid(field, format!("must be between -{bound} and {bound}")));
            }
        }
        let (location, km) = self
            .deps
            .catalog
            .nearest(latitude, longitude)
            .ok_or_else(|| ServiceError::NotFound("the catalog is empty".into()))?;
        Ok((location, (km * 10.0).round() / 10.0))
    }

    /// One location, including a station another instance registered.
    pub async fn location(&self, id: &LocationId) -> Result<Location, ServiceError> {
        if let Some(station) = self.deps.stations.get(id) {
            return Ok((*station).clone());
        }
        if let Some(city) = self.deps.catalog.get(id) {
            return Ok(city);
        }
        self.deps.directory.send(Describe { id: id.clone() }).await?.map_err(|e| match e {
            UnknownLocation::Unknown(_) => ServiceError::NotFound(e.to_string()),
            unchecked => unavailable(unchecked),
        })
    }

    /// The consensus of `id` on show: the published view while it is fresh (no actor
    /// involved), else from the location's actor, waiting for the providers' first answer
    /// when the location is cold.
    pub async fn current(&self, raw_id: &str) -> Result<Arc<Update>, ServiceError> {
        if let Some(view) = self.deps.views.get(raw_id).filter(|v| v.computed_at.elapsed() < self.settings.render_ttl) {
            self.deps.demand.touch(&view.location_id);
            return Ok(view);
        }
        let id = parse_id(raw_id)?;
        self.deps.demand.touch(&id);
        let wait = self.settings.cold_wait;
        self.ask(&id, || GetCurrent { wait }).await?.ok_or_else(|| match wait {
            Some(wait) => ServiceError::Unavailable {
                detail: format!(
                    "no current conditions for location {id} yet: the providers have not answered within {} ms; retry shortly",
                    wait.as_millis()
                ),
                retry_after_secs: COLD_RETRY_AFTER_SECS,
            },
            None => ServiceError::NotFound(format!(
                "no current conditions for location {id} yet: no source has reported it (POST /v1/readings, or enable a source that covers it)"
            )),
        })
    }

    /// The next `hours` hours (1-240, default 48) of the forecast of `id` in `units`.
    pub async fn forecast(
        &self,
        id: &LocationId,
        hours: Option<usize>,
        model: Option<&str>,
        units: Units,
    ) -> Result<Forecast, ServiceError> {
        let hours = match hours {
            None => DEFAULT_FORECAST_HOURS,
            Some(n) if (1..=MAX_FORECAST_HOURS).contains(&n) => n,
            Some(_) => return Err(forecast_hours_error()),
        };
        let model = match model {
            None => None,
            Some(name) => Some(Model::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
                ServiceError::invalid("model", format!("must be one of {}", names.join(", ")))
            })?),
        };
        self.deps.demand.touch(id);
        let wait = self.settings.cold_wait;
        let forecast = self.ask(id, || GetForecast { wait }).await?.ok_or_else(|| match wait {
            Some(_) => ServiceError::Unavailable {
                detail: format!("no forecast for location {id} yet: the providers have not answered; retry shortly"),
                retry_after_secs: COLD_RETRY_AFTER_SECS,
            },
            None if self.deps.forecaster.is_some() => ServiceError::NotFound(format!(
                "no forecast for location {id} yet: no upstream provider is enabled, and the models learned from its readings issue a forecast once an hour of them is complete"
            )),
            None => ServiceError::NotFound(format!(
                "no forecast for location {id}: forecasts come from upstream providers, and none is enabled"
            )),
        })?;
        let Some(model) = model else {
            return Ok(forecast.window(Utc::now(), hours).in_units(units));
        };
        // One model's run: its hours are the forecast, and only its run is listed.
        let learned = forecast.models.as_ref().ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no learned forecast for location {id}: forecasting is off or no hour of its readings is complete"
            ))
        })?;
        let only = learned.only(model.name());
        let Some(run) = only.runs.first() else {
            return Err(ServiceError::NotFound(format!(
                "model {} has no run for location {id} now ({})",
                model.name(),
                learned.detail.as_deref().unwrap_or("it runs only where providers forecast the location")
            )));
        };
        let hourly: Vec<ForecastHour> = run
            .hourly
            .iter()
            .take(hours)
            .map(|h| ForecastHour {
                temperature: h.temperature,
                humidity: h.humidity,
                wind_speed: h.wind_speed,
                ..ForecastHour::empty(h.time)
            })
            .collect();
        let chosen = Forecast { hourly, sources: Vec::new(), models: Some(only), ..(*forecast).clone() };
        Ok(chosen.in_units(units))
    }

    /// The location's air quality now: the US AQI from the hourly means of the pollutants
    /// its sources reported in the last 24 hours, with the providers' own indices and, for
    /// `hours` (1 to 48), the hourly AQI forecast from their pollutant forecasts.
    pub async fn air_quality(&self, id: &LocationId, hours: Option<usize>) -> Result<AirQuality, ServiceError> {
        if hours.is_some_and(|h| !(1..=FORECAST_HOURS).contains(&h)) {
            return Err(air_quality_hours_error());
        }
        self.location(id).await?;
        let now = Utc::now();
        let day = chrono::Duration::hours((self.settings.history_hours as i64).min(24));
        // Up to the allowed clock skew ahead: a reading the location shows is counted.
        let to = now + chrono::Duration::seconds(self.settings.max_clock_skew_secs as i64);
        let readings = self.history(id, HistoryQuery { from: Some(now - day), to: Some(to), step_secs: None }).await?;
        let mut air_quality = aqi::from_readings(&readings, now)
            .map_err(|why| ServiceError::NotFound(format!("no air quality for location {id}: {why}")))?;
        let reports = self.ask(id, || GetAirReports).await?;
        air_quality.providers = reports.iter().flat_map(|r| r.indices.iter().cloned()).collect();
        if let Some(hours) = hours {
            let reports: Vec<&AirReport> = reports.iter().map(|r| &**r).collect();
            air_quality.forecast = Some(aqi::forecast(&readings, &reports, now, hours));
        }
        Ok(air_quality)
    }

    /// Fits a location's learned models now; answers what was fitted.
    pub async fn train(&self, id: &LocationId) -> Result<Vec<TrainedSummary>, ServiceError> {
        let Some(forecaster) = &self.deps.forecaster else {
            return Err(ServiceError::NotFound("forecasting is off (forecast.enabled)".into()));
        };
        self.location(id).await?;
        match forecaster.send(TrainNow { id: id.clone() }).await? {
            Ok(trained) => Ok(trained),
            Err(e @ TrainError::NotLearned(_)) => Err(ServiceError::NotFound(e.to_string())),
            Err(TrainError::NotTrained(why)) => {
                Err(ServiceError::Unprocessable(format!("cannot train location {id}: {why}")))
            }
            Err(TrainError::Stopped) => Err(ServiceError::Unavailable {
                detail: "the forecaster is restarting; retry shortly".into(),
                retry_after_secs: 1,
            }),
        }
    }

    /// Stored readings of `id`, oldest first: from InfluxDB when it is configured, else
    /// from the location's ring (the last `history_hours`); with a step, the mean per step.
    pub async fn history(&self, id: &LocationId, query: HistoryQuery) -> Result<Vec<Reading>, ServiceError> {
        let now = Utc::now();
        let hours = self.settings.history_hours;
        let earliest = now - chrono::Duration::hours(hours as i64);
        let from = query.from.unwrap_or(earliest);
        let to = query.to.unwrap_or(now);
        if from > to {
            return Err(ServiceError::invalid("from", "must not be after to"));
        }
        if let Some(step) = query.step_secs
            && !(1..=MAX_STEP_SECS).contains(&step)
        {
            return Err(ServiceError::invalid("step", "must be from 1s to 31d"));
        }
        if let Some(step) = query.step_secs
            && (to - from).num_seconds() / step as i64 > MAX_HISTORY_STEPS
        {
            return Err(ServiceError::invalid(
                "step",
                format!("gives more than {MAX_HISTORY_STEPS} points for this range"),
            ));
        }
        if !self.settings.history_in_influx {
            if from < earliest - RETENTION_SLACK {
                return Err(ServiceError::invalid(
                    "from",
                    format!(
                        "is beyond retention: history is kept for {hours} h, so from must be at or after {}",
                        earliest.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                ));
            }
            let readings = self.ask(id, || GetHistory { from, to }).await?;
            return Ok(match query.step_secs {
                Some(step) => downsample(&readings, step),
                None => readings,
            });
        }
        self.location(id).await?;
        match self.deps.persister.send(QueryHistory { id: id.clone(), from, to, step_secs: query.step_secs }).await? {
            Some(Ok(readings)) => Ok(readings),
            Some(Err(e)) => Err(ServiceError::Unavailable {
                detail: format!("history store unavailable: {e}"),
                retry_after_secs: 5,
            }),
            None => Ok(Vec::new()),
        }
    }

    /// Anomalies of `id` that started in [from, to] (default: the last 7 days), oldest
    /// first: from InfluxDB when it is configured, else the ones the location keeps.
    pub async fn anomalies(
        &self,
        id: &LocationId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Anomaly>, ServiceError> {
        let now = Utc::now();
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to - chrono::Duration::days(ANOMALY_DAYS));
        if from > to {
            return Err(ServiceError::invalid("from", "must not be after to"));
        }
        if !self.settings.history_in_influx {
            return self.ask(id, || GetAnomalies { from, to }).await;
        }
        self.location(id).await?;
        match self.deps.persister.send(QueryAnomalies { id: id.clone(), from, to }).await? {
            Some(Ok(anomalies)) => Ok(anomalies),
            Some(Err(e)) => Err(ServiceError::Unavailable {
                detail: format!("anomaly store unavailable: {e}"),
                retry_after_secs: 5,
            }),
            None => Ok(Vec::new()),
        }
    }

    /// For each of `readings` (oldest first, of location `id`), the anomalies that flag
    /// it: the same source and quantity, started at or before the reading and not ended
    /// before it (a spike flags its one reading; a flatline or drift every reading of its
    /// stretch). Empty when there are none or the list cannot be read.
    pub async fn flags(&self, id: &LocationId, readings: &[Reading]) -> Vec<Vec<Anomaly>> {
        let mut flags = vec![Vec::new(); readings.len()];
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else { return flags };
        let from = first.observed_at - chrono::Duration::days(ANOMALY_DAYS);
        let Ok(anomalies) = self.anomalies(id, Some(from), Some(last.observed_at)).await else { return flags };
        if anomalies.is_empty() {
            return flags;
        }
        for (reading, flags) in readings.iter().zip(&mut flags) {
            flags.extend(
                anomalies
                    .iter()
                    .filter(|a| {
                        a.source == reading.source
                            && reading.get(a.quantity).is_some()
                            && a.started_at <= reading.observed_at
                            && a.ended_at.is_none_or(|end| reading.observed_at < end)
                    })
                    .cloned(),
            );
        }
        flags
    }

    /// Submitted reading items (JSON, DESIGN §3): each is parsed and validated on its
    /// own, the valid ones go the one ingest way, and every item not taken is reported
    /// with its index and the fields at fault.
    pub async fn submit_readings(&self, items: &[Value], writer: &Writer) -> Result<IngestResponse, ServiceError> {
        let facts = items.iter().map(|item| ItemFacts {
            source: item.get("source").and_then(Value::as_str),
            location_id: item.get("location_id").and_then(Value::as_str),
            gives_coordinates: item.get("latitude").is_some_and(|v| !v.is_null()),
        });
        self.check_writer(facts, writer).await?;
        let now = Utc::now();
        let mut valid = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match Reading::from_json(item, CheckedAt::new(now, self.settings.max_clock_skew_secs)) {
                Ok(reading) => valid.push((index, reading)),
                Err(errors) => {
                    let source = source_label(item.get("source").and_then(Value::as_str).unwrap_or("other"));
                    self.deps.metrics.readings_rejected.with_label_values(&[source, rejection_reason(&errors)]).inc();
                    rejected.push(Rejected { index, errors });
                }
            }
        }
        self.ingest_valid(valid, rejected, now).await
    }

    /// A body of readings (one or an array of up to `max_items`) when every one is
    /// well-formed and valid, the usual case: parsed straight into readings, with no
    /// `serde_json::Value` per item. `None` when the body is anything else, for
    /// [`Service::submit_readings`] to report item by item.
    pub async fn submit_valid_body(
        &self,
        body: &[u8],
        max_items: usize,
        writer: &Writer,
    ) -> Option<Result<IngestResponse, ServiceError>> {
        let now = Utc::now();
        let readings = parse_valid_batch(body, CheckedAt::new(now, self.settings.max_clock_skew_secs))
            .filter(|r| !r.is_empty() && r.len() <= max_items)?;
        let facts = readings.iter().map(|r| ItemFacts {
            source: Some(r.source.as_str()),
            location_id: Some(r.location_id.as_str()),
            gives_coordinates: r.latitude.is_some(),
        });
        if let Err(e) = self.check_writer(facts, writer).await {
            return Some(Err(e));
        }
        Some(self.ingest_valid(readings.into_iter().enumerate().collect(), Vec::new(), now).await)
    }

    /// Hands valid readings (with their item indexes) to the one ingest way; `rejected`
    /// holds the items already refused (together, every item submitted).
    async fn ingest_valid(
        &self,
        valid: Vec<(usize, Reading)>,
        mut rejected: Vec<Rejected>,
        now: DateTime<Utc>,
    ) -> Result<IngestResponse, ServiceError> {
        let items = valid.len() + rejected.len();
        let refused = self.deps.ingest.submit(valid, now).await.map_err(|e| match e {
            IngestError::Kafka(_) | IngestError::NotStored(_) | IngestError::Unchecked(_) => {
                ServiceError::Unavailable {
                    detail: format!("{e}; retry (a repeated reading is dropped as a duplicate)"),
                    retry_after_secs: 5,
                }
            }
            IngestError::ShuttingDown => MailboxError::Closed.into(),
        })?;
        rejected.extend(refused.into_iter().map(|(index, error)| Rejected { index, errors: vec![error] }));
        rejected.sort_by_key(|r| r.index);
        Ok(IngestResponse { accepted: items - rejected.len(), rejected })
    }

    /// 403 when an item is written as a source the writer may not use, or would create
    /// more stations than its key may.
    async fn check_writer<'a>(
        &self,
        items: impl Iterator<Item = ItemFacts<'a>> + Clone,
        writer: &Writer,
    ) -> Result<(), ServiceError> {
        let sources = items.clone().filter_map(|item| item.source);
        for source in sources {
            if reserved_source(source) {
                return Err(ServiceError::Forbidden(format!(
                    "source {source:?} is reserved for isobar's own pollers; write as your own source name"
                )));
            }
            if let Writer::Key { name, sources, .. } = writer
                && !sources.iter().any(|s| s == source)
            {
                return Err(ServiceError::Forbidden(format!(
                    "key {name:?} may write as {} only, not as {source:?}",
                    sources.join(", ")
                )));
            }
        }
        let Writer::Key { name, max_new_stations, .. } = writer else { return Ok(()) };
        // A station is new when an item gives coordinates for an id nobody knows yet.
        let mut new: Vec<LocationId> = items
            .filter(|item| item.gives_coordinates)
            .filter_map(|item| item.location_id)
            .filter_map(|raw| LocationId::parse(raw).ok())
            .filter(|id| self.deps.stations.get(id).is_none() && self.deps.catalog.get(id).is_none())
            .collect();
        new.sort();
        new.dedup();
        match self.deps.station_quota.take(name, &new, *max_new_stations).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(created)) => Err(ServiceError::Forbidden(format!(
                "key {name:?} may create at most {max_new_stations} stations (auth.max_stations_per_key) and has \
                 created {created}; these readings would add {}",
                new.len()
            ))),
            Err(e) => Err(ServiceError::Unavailable {
                detail: format!("cannot check the key's station count ({e}); retry"),
                retry_after_secs: 1,
            }),
        }
    }

    /// Whether every component and configured backend answers; the body names each.
    pub async fn readiness(&self) -> Readiness {
        let probe = LocationId::parse("0").unwrap_or_else(|_| unreachable!("a valid id"));
        let directory = tokio::time::timeout(READY_TIMEOUT, self.deps.directory.send(Describe { id: probe })).await;
        let backends = tokio::time::timeout(READY_TIMEOUT * 2, self.deps.persister.send(CheckBackends)).await;
        let kafka = match &self.deps.kafka {
            Some(k) => Some(tokio::time::timeout(READY_TIMEOUT * 2, k.send(CheckKafka)).await),
            None => None,
        };
        let mut sources = Vec::new();
        for provider in &self.deps.providers {
            if let Ok(Ok(status)) = tokio::time::timeout(READY_TIMEOUT, provider.send(GetProviderStatus)).await {
                sources.push(status);
            }
        }
        let up = |ok: bool| if ok { "up" } else { "down" };
        let directory_up = matches!(directory, Ok(Ok(_)));
        // Each dependency checked and whether it answered: the status and the metrics
        // come from this; the body lists what an operator needs to read.
        let mut checked: Vec<(&'static str, bool)> = vec![("directory", directory_up)];
        let mut dependencies = vec![json!({"name": "directory", "state": up(directory_up)})];
        match backends {
            Ok(Ok(statuses)) => {
                checked.push(("persister", true));
                for s in statuses {
                    checked.push((s.name, s.state == "up"));
                    dependencies.push(serde_json::to_value(s).unwrap_or_default());
                }
            }
            _ => {
                checked.push(("persister", false));
                dependencies
                    .push(json!({"name": "persister", "state": "down", "detail": "the persister did not answer"}));
            }
        }
        match kafka {
            None => {}
            Some(Ok(Ok(health))) => {
                checked.push(("kafka", health.brokers.is_ok()));
                match health.brokers {
                    Ok(()) => dependencies.push(json!({"name": "kafka", "state": "up"})),
                    Err(detail) => dependencies.push(json!({"name": "kafka", "state": "down", "detail": detail})),
                }
                // The consumer waits on a dead letter the DLQ refuses: not ready.
                checked.push(("kafka-dlq", health.dlq_blocked.is_none()));
                if let Some(detail) = health.dlq_blocked {
                    dependencies.push(json!({"name": "kafka-dlq", "state": "down", "detail": detail}));
                }
            }
            Some(_) => {
                checked.push(("kafka", false));
                dependencies.push(json!({"name": "kafka", "state": "down", "detail": "kafka: no answer"}));
            }
        }
        let all_up = checked.iter().all(|(_, up)| *up);
        self.record_readiness(all_up, &checked);
        let body = json!({
            "status": if all_up { "ready" } else { "not ready" },
            "dependencies": dependencies,
            // Upstream providers: reported, but a failing provider does not make the
            // instance unready (it keeps serving what it has, marked stale).
            "sources": sources,
        });
        Readiness { ready: all_up, body }
    }

    /// `isobar_ready` and `isobar_dependency_up`, for the alert on an instance that stays
    /// unready (scraping `/metrics` runs this check). Dependency names are a fixed set.
    fn record_readiness(&self, ready: bool, checked: &[(&'static str, bool)]) {
        let metrics = &self.deps.metrics;
        metrics.ready.set(i64::from(ready));
        for (name, up) in checked {
            metrics.dependency_up.with_label_values(&[name]).set(i64::from(*up));
        }
    }

    /// The actor of `id`; `NotFound` when the id is neither a catalog city nor a station.
    pub async fn resolve(&self, id: &LocationId) -> Result<Addr<LocationActor>, ServiceError> {
        self.deps.directory.send(Resolve { id: id.clone() }).await?.map_err(|e| match e {
            UnknownLocation::Unknown(_) => ServiceError::NotFound(format!(
                "{e}: not a GeoNames city id in the catalog nor a station that has sent readings"
            )),
            unchecked => unavailable(unchecked),
        })
    }

    /// Sends `make()` to the actor of `id`; a dead actor (passivated a moment ago) is
    /// resolved again once.
    async fn ask<M>(&self, id: &LocationId, make: impl Fn() -> M) -> Result<M::Result, ServiceError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        LocationActor: Handler<M>,
    {
        let addr = self.resolve(id).await?;
        match addr.send(make()).await {
            Ok(result) => Ok(result),
            Err(_) => Ok(self.resolve(id).await?.send(make()).await?),
        }
    }
}

/// Parses a location id: `Invalid` naming `id` when malformed.
pub fn parse_id(raw: &str) -> Result<LocationId, ServiceError> {
    LocationId::parse(raw).map_err(|e| ServiceError::invalid("id", e.to_string()))
}

pub fn search_limit_error() -> ServiceError {
    ServiceError::invalid("limit", format!("must be an integer from 1 to {MAX_SEARCH_LIMIT}"))
}

pub fn air_quality_hours_error() -> ServiceError {
    ServiceError::invalid("hours", format!("must be an integer from 1 to {FORECAST_HOURS}"))
}

pub fn forecast_hours_error() -> ServiceError {
    ServiceError::invalid("hours", format!("must be an integer from 1 to {MAX_FORECAST_HOURS}"))
}

/// A location that may be a station another instance registered, while Redis cannot say.
fn unavailable(error: UnknownLocation) -> ServiceError {
    ServiceError::Unavailable { detail: format!("{error}; retry"), retry_after_secs: 2 }
}
