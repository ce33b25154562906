//! `SourcePoller`: one actor per enabled upstream provider.
//!
//! It polls exactly the locations that are active in the `Directory` (which sends
//! `Track` when a location actor starts and `Untrack` when it passivates). A newly tracked
//! location is fetched at once; tracks arriving within a short window share one request
//! where the provider batches (Open-Meteo). Each location is refreshed when its response
//! expires, at the earliest after the poll interval. Fetches run concurrently with the
//! mailbox, so a slow or failing provider never delays another provider or any client
//! request. Results go to the `Directory`, which hands them to running location actors;
//! failures are reported too, so the location can mark that source stale. A provider
//! refused for its configuration (bad key, missing contact) switches itself off with one
//! clear log line and says why in /ready.

pub mod providers;
pub mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use serde::Serialize;
use tracing::{debug, error, info, warn};

use self::providers::{Provider, ProviderKind};
use crate::actors::directory::{DeliverProviderData, Directory, ReportSourceFailure};
use crate::actors::kafka::ProduceReadings;
use crate::domain::reading::{rejection_reason, source_label};
use crate::domain::{Location, LocationId, SourceName};
use crate::sources::{ProviderData, SourceError};
use crate::telemetry::Metrics;

/// Tracks arriving within this window are fetched together.
const BATCH_WINDOW: Duration = Duration::from_millis(25);
/// How often due locations are looked for.
const TICK: Duration = Duration::from_millis(500);
/// Longest wait before retrying a location whose fetch failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

pub struct SourcePoller {
    provider: Arc<Provider>,
    source: SourceName,
    directory: Addr<Directory>,
    metrics: Arc<Metrics>,
    poll_interval: Duration,
    targets: HashMap<LocationId, Target>,
    /// Why the provider is off, when its configuration was refused.
    disabled: Option<String>,
    /// The last failure, for /ready; cleared by a success.
    last_error: Option<String>,
    /// Set once any provider of this instance has said "no internet?", shared by all
    /// pollers so an offline machine gets one such line, not one per provider.
    offline_warned: Arc<AtomicBool>,
    /// Whether this provider ever answered; until then a connection failure suggests
    /// the machine is offline.
    ever_answered: bool,
    tick_scheduled: bool,
    /// With Kafka on, readings go to the readings topic (one log for everything); the
    /// forecasts still go straight to the locations.
    kafka: Option<Recipient<ProduceReadings>>,
}

struct Target {
    location: Arc<Location>,
    next_due: Instant,
    in_flight: bool,
}

/// A location actor started: poll its location. Sent by the `Directory`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub location: Arc<Location>,
}

/// A location actor passivated: stop polling it. Sent by the `Directory`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Untrack {
    pub id: LocationId,
}

/// This provider's state for /ready.
#[derive(Message)]
#[rtype(result = "ProviderStatus")]
pub struct GetProviderStatus;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderStatus {
    pub name: &'static str,
    /// `up`, `circuit_open`, `failing` or `disabled`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub locations: usize,
}

impl SourcePoller {
    pub fn new(
        kind: ProviderKind,
        provider: Provider,
        directory: Addr<Directory>,
        metrics: Arc<Metrics>,
        poll_interval: Duration,
        disabled: Option<String>,
        offline_warned: Arc<AtomicBool>,
    ) -> Self {
        Self {
            source: SourceName::parse(kind.name()).unwrap_or_else(|| unreachable!("static name")),
            provider: Arc::new(provider),
            directory,
            metrics,
            poll_interval,
            targets: HashMap::new(),
            disabled,
            last_error: None,
            offline_warned,
            ever_answered: false,
            tick_scheduled: false,
            kafka: None,
        }
    }

    pub fn with_kafka(mut self, kafka: Option<Recipient<ProduceReadings>>) -> Self {
        self.kafka = kafka;
        self
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.tick_scheduled = false;
        if self.disabled.is_some() {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<Arc<Location>> = self
            .targets
            .values_mut()
            .filter(|t| !t.in_flight && t.next_due <= now)
            .map(|t| {
                t.in_flight = true;
                t.location.clone()
            })
            .collect();
        due.sort_by(|a, b| a.id.cmp(&b.id));
        for batch in due.chunks(self.provider.kind.max_batch()) {
            let provider = self.provider.clone();
            let batch = batch.to_vec();
            let fetch = async move { provider.fetch(&batch).await };
            ctx.spawn(fetch.into_actor(self).map(|(results, fresh_for), act, _| act.apply(results, fresh_for)));
        }
    }

    fn apply(&mut self, results: Vec<(LocationId, Result<ProviderData, SourceError>)>, fresh_for: Duration) {
        let now = Instant::now();
        for (id, result) in results {
            let Some(target) = self.targets.get_mut(&id) else { continue };
            target.in_flight = false;
            match result {
                Ok(data) => {
                    target.next_due = now + fresh_for.max(self.poll_interval);
                    self.last_error = None;
                    self.ever_answered = true;
                    let reading = data.reading.and_then(|r| match r.validate(Utc::now()) {
                        Ok(r) => Some(r),
                        Err(errors) => {
                            let reason = rejection_reason(&errors);
                            self.metrics.readings_rejected.with_label_values(&[source_label(self.source.as_str()), reason]).inc();
                            debug!(provider = self.source.as_str(), location = %id, ?errors, "provider reading rejected");
                            None
                        }
                    });
                    let reading = match (&self.kafka, reading) {
                        (Some(kafka), Some(reading)) => {
                            kafka.do_send(ProduceReadings { readings: vec![reading] });
                            None
                        }
                        (_, reading) => reading,
                    };
                    self.directory.do_send(DeliverProviderData {
                        id,
                        source: self.source.clone(),
                        reading,
                        forecast: data.forecast,
                    });
                }
                Err(SourceError::NotCovered(why)) => {
                    debug!(provider = self.source.as_str(), location = %id, why, "location not covered");
                    self.targets.remove(&id);
                }
                Err(SourceError::Misconfigured(why)) => {
                    if self.disabled.is_none() {
                        error!(provider = self.source.as_str(), "{why}; provider switched off");
                    }
                    self.disabled = Some(why.clone());
                    self.directory.do_send(ReportSourceFailure { id, source: self.source.clone(), error: why });
                }
                Err(e) => {
                    target.next_due = now + self.poll_interval.min(MAX_RETRY_DELAY);
                    let message = e.to_string();
                    let offline = !self.ever_answered && matches!(e, SourceError::Unavailable(_));
                    if offline && !self.offline_warned.swap(true, Ordering::Relaxed) {
                        warn!(
                            provider = self.source.as_str(),
                            base_url = self.provider.upstream.base_url(),
                            error = %message,
                            "cannot reach the weather providers; no internet? `isobar serve --profile demo` runs offline"
                        );
                    } else if !offline {
                        warn!(provider = self.source.as_str(), location = %id, error = %message, "fetch failed");
                    }
                    self.last_error = Some(message.clone());
                    self.directory.do_send(ReportSourceFailure { id, source: self.source.clone(), error: message });
                }
            }
        }
    }

    fn schedule_tick(&mut self, ctx: &mut Context<Self>) {
        if !self.tick_scheduled {
            self.tick_scheduled = true;
            ctx.run_later(BATCH_WINDOW, |act, ctx| act.tick(ctx));
        }
    }
}

impl Actor for SourcePoller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match &self.disabled {
            Some(why) => warn!(provider = self.source.as_str(), "provider not started: {why}"),
            None => info!(provider = self.source.as_str(), base_url = self.provider.upstream.base_url(), "polling"),
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Track> for SourcePoller {
    type Result = ();

    fn handle(&mut self, msg: Track, ctx: &mut Context<Self>) {
        if !self.provider.kind.covers(&msg.location) || self.disabled.is_some() {
            return;
        }
        let id = msg.location.id.clone();
        self.targets.entry(id).or_insert(Target { location: msg.location, next_due: Instant::now(), in_flight: false });
        self.schedule_tick(ctx);
    }
}

impl Handler<Untrack> for SourcePoller {
    type Result = ();

    fn handle(&mut self, msg: Untrack, _: &mut Context<Self>) {
        self.targets.remove(&msg.id);
    }
}

impl Handler<GetProviderStatus> for SourcePoller {
    type Result = MessageResult<GetProviderStatus>;

    fn handle(&mut self, _: GetProviderStatus, _: &mut Context<Self>) -> Self::Result {
        let (state, detail) = if let Some(why) = &self.disabled {
            ("disabled", Some(why.clone()))
        } else if self.provider.upstream.circuit_open() {
            ("circuit_open", self.last_error.clone())
        } else if let Some(e) = &self.last_error {
            ("failing", Some(e.clone()))
        } else {
            ("up", None)
        };
        MessageResult(ProviderStatus { name: self.provider.kind.name(), state, detail, locations: self.targets.len() })
    }
}
