//! `SourcePoller<P>`: one actor per enabled upstream provider, generic over the
//! [`Provider`] trait (a provider is one folder in `sources/`).
//!
//! It polls exactly the locations whose actors run: each `LocationActor` sends `Track`
//! when it starts and `Untrack` when it stops. A newly tracked location is fetched at
//! once; tracks arriving within a short window share one request where the provider
//! batches (Open-Meteo). Each location is refreshed when its response expires, at the
//! earliest after the poll interval. Fetches run concurrently with the mailbox, so a slow
//! or failing provider never delays another provider or any client request. Readings go
//! the one ingest way ([`Ingest::submit`]: through Kafka when it is configured); the
//! forecast and whether the refresh worked go to the location's actor as a
//! `ProviderReport`, so a failing source stops counting as fresh. A provider refused for
//! its configuration (bad key, missing contact) switches itself off with one clear log
//! line and says why in /ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use serde::Serialize;
use tracing::{debug, error, info, warn};

use crate::actors::demand::Demand;
use crate::actors::ingest::Ingest;
use crate::actors::messages::{ProviderReport, Track, Untrack};
use crate::domain::reading::{CheckedAt, rejection_reason};
use crate::domain::{Location, LocationId, SourceName};
use crate::sources::upstream::{SharedCache, Upstream};
use crate::sources::{NotRunning, Provider, ProviderData, ProviderSettings, ProviderVisitor, SourceError};
use crate::sources::{for_each_provider, source_label};
use crate::telemetry::Metrics;

/// Tracks arriving within this window are fetched together.
const BATCH_WINDOW: Duration = Duration::from_millis(25);
/// Capacity of a poller's mailbox (actix's default).
const MAILBOX: usize = 16;
/// How often due locations are looked for.
const TICK: Duration = Duration::from_millis(500);
/// Longest wait before retrying a location whose fetch failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

pub struct SourcePoller<P: Provider> {
    provider: Arc<P>,
    upstream: Arc<Upstream>,
    source: SourceName,
    ingest: Ingest,
    metrics: Arc<Metrics>,
    poll_interval: Duration,
    max_clock_skew_secs: u64,
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
    /// When locations were last asked for; only the `max_active` most recent are polled.
    demand: Arc<Demand>,
    max_active: usize,
    /// The cap was reached (logged once per episode).
    capped: bool,
}

struct Target {
    location: Arc<Location>,
    /// The tracking run of the location's actor, and where its reports go.
    run: u64,
    reports: Recipient<ProviderReport>,
    next_due: Instant,
    in_flight: bool,
    /// When its actor asked for it to be tracked (its demand until it is asked for).
    tracked_at: Instant,
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

impl<P: Provider> SourcePoller<P> {
    fn report(&self, target: &Target, data: ProviderData, error: Option<String>) {
        let (forecast, air) = (data.forecast, data.air);
        target.reports.do_send(ProviderReport { source: self.source.clone(), forecast, air, error });
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.tick_scheduled = false;
        if self.disabled.is_some() {
            return;
        }
        let now = Instant::now();
        let active = self.active();
        let mut due: Vec<Arc<Location>> = self
            .targets
            .values_mut()
            .filter(|t| !t.in_flight && t.next_due <= now)
            .filter(|t| active.as_ref().is_none_or(|a| a.contains(&t.location.id)))
            .map(|t| {
                t.in_flight = true;
                t.location.clone()
            })
            .collect();
        due.sort_by(|a, b| a.id.cmp(&b.id));
        for batch in due.chunks(self.provider.max_batch().max(1)) {
            let (provider, upstream) = (self.provider.clone(), self.upstream.clone());
            let batch = batch.to_vec();
            let fetch = async move { provider.fetch(&upstream, &batch).await };
            ctx.spawn(fetch.into_actor(self).map(|(results, fresh_for), act, ctx| act.apply(results, fresh_for, ctx)));
        }
    }

    fn apply(
        &mut self,
        results: Vec<(LocationId, Result<ProviderData, SourceError>)>,
        fresh_for: Duration,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let mut readings = Vec::new();
        for (id, result) in results {
            let Some(target) = self.targets.get_mut(&id) else { continue };
            target.in_flight = false;
            match result {
                Ok(mut data) => {
                    target.next_due = now + fresh_for.max(self.poll_interval);
                    self.last_error = None;
                    self.ever_answered = true;
                    let checked = CheckedAt::new(Utc::now(), self.max_clock_skew_secs);
                    for reading in std::mem::take(&mut data.past).into_iter().chain(data.reading.take()) {
                        match reading.validate(checked) {
                            Ok(reading) => readings.push((readings.len(), reading)),
                            Err(errors) => {
                                let reason = rejection_reason(&errors);
                                let labels = [source_label(P::NAME), reason];
                                self.metrics.readings_rejected.with_label_values(&labels).inc();
                                debug!(provider = P::NAME, location = %id, ?errors, "provider reading rejected");
                            }
                        }
                    }
                    let target = &self.targets[&id];
                    self.report(target, data, None);
                }
                Err(SourceError::NotCovered(why)) => {
                    debug!(provider = P::NAME, location = %id, why, "location not covered");
                    self.targets.remove(&id);
                }
                Err(SourceError::Misconfigured(why)) => {
                    if self.disabled.is_none() {
                        error!(provider = P::NAME, "{why}; provider switched off");
                    }
                    self.disabled = Some(why.clone());
                    self.report(&self.targets[&id], ProviderData::default(), Some(why));
                }
                Err(e) => {
                    target.next_due = now + self.poll_interval.min(MAX_RETRY_DELAY);
                    let message = e.to_string();
                    let offline = !self.ever_answered && matches!(e, SourceError::Unavailable(_));
                    if offline && !self.offline_warned.swap(true, Ordering::Relaxed) {
                        warn!(
                            provider = P::NAME,
                            base_url = self.upstream.base_url(),
                            error = %message,
                            "cannot reach the weather providers; no internet? `isobar serve --profile demo` runs offline"
                        );
                    } else if !offline {
                        warn!(provider = P::NAME, location = %id, error = %message, "fetch failed");
                    }
                    self.last_error = Some(message.clone());
                    self.report(&self.targets[&id], ProviderData::default(), Some(message));
                }
            }
        }
        if !readings.is_empty() {
            let ingest = self.ingest.clone();
            let submit = async move {
                if let Err(error) = ingest.submit(readings, Utc::now()).await {
                    warn!(provider = P::NAME, %error, "provider readings not taken");
                }
            };
            ctx.spawn(submit.into_actor(self));
        }
    }

    /// With more targets than `max_active`: the ids of the most recently asked-for ones
    /// (the others are not polled until they are asked for again). `None`: all.
    fn active(&mut self) -> Option<std::collections::HashSet<LocationId>> {
        if self.targets.len() <= self.max_active {
            self.capped = false;
            return None;
        }
        if !std::mem::replace(&mut self.capped, true) {
            warn!(
                provider = P::NAME,
                locations = self.targets.len(),
                max = self.max_active,
                "more locations than sources.max_active_locations: the least recently asked for are not polled"
            );
        }
        let mut by_demand: Vec<(Instant, &LocationId)> = self
            .targets
            .iter()
            .map(|(id, t)| (self.demand.last(id).map_or(t.tracked_at, |d| d.max(t.tracked_at)), id))
            .collect();
        by_demand.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        Some(by_demand.into_iter().take(self.max_active).map(|(_, id)| id.clone()).collect())
    }

    fn schedule_tick(&mut self, ctx: &mut Context<Self>) {
        if !self.tick_scheduled {
            self.tick_scheduled = true;
            ctx.run_later(BATCH_WINDOW, |act, ctx| act.tick(ctx));
        }
    }
}

impl<P: Provider> Actor for SourcePoller<P> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match &self.disabled {
            Some(why) => warn!(provider = P::NAME, "provider not started: {why}"),
            None => info!(provider = P::NAME, base_url = self.upstream.base_url(), "polling"),
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl<P: Provider> Handler<Track> for SourcePoller<P> {
    type Result = ();

    fn handle(&mut self, msg: Track, ctx: &mut Context<Self>) {
        if !self.provider.covers(&msg.location) || self.disabled.is_some() {
            return;
        }
        let target = self.targets.entry(msg.location.id.clone()).or_insert(Target {
            location: msg.location.clone(),
            run: msg.run,
            reports: msg.reports.clone(),
            next_due: Instant::now(),
            in_flight: false,
            tracked_at: Instant::now(),
        });
        // A later run of the location's actor (after a restart) takes over the reports.
        if msg.run >= target.run {
            target.run = msg.run;
            target.reports = msg.reports;
        }
        self.schedule_tick(ctx);
    }
}

impl<P: Provider> Handler<Untrack> for SourcePoller<P> {
    type Result = ();

    fn handle(&mut self, msg: Untrack, _: &mut Context<Self>) {
        if self.targets.get(&msg.id).is_some_and(|t| t.run <= msg.run) {
            self.targets.remove(&msg.id);
        }
    }
}

impl<P: Provider> Handler<GetProviderStatus> for SourcePoller<P> {
    type Result = MessageResult<GetProviderStatus>;

    fn handle(&mut self, _: GetProviderStatus, _: &mut Context<Self>) -> Self::Result {
        let (state, detail) = if let Some(why) = &self.disabled {
            ("disabled", Some(why.clone()))
        } else if self.upstream.circuit_open() {
            ("circuit_open", self.last_error.clone())
        } else if let Some(e) = &self.last_error {
            ("failing", Some(e.clone()))
        } else {
            ("up", None)
        };
        MessageResult(ProviderStatus { name: P::NAME, state, detail, locations: self.targets.len() })
    }
}

/// The pollers of one instance: created before the `Directory` (its location actors
/// need their addresses), running once [`Pollers::run`] hands them the ingest path.
pub struct Pollers {
    /// What every location actor tells when it starts and stops.
    pub trackers: Vec<(Recipient<Track>, Recipient<Untrack>)>,
    /// For /ready.
    pub statuses: Vec<Recipient<GetProviderStatus>>,
    starts: Vec<StartPoller>,
}

/// Starts one poller on the given arbiter, feeding the given ingest path.
type StartPoller = Box<dyn FnOnce(Ingest, &ArbiterHandle)>;

/// What every poller shares.
pub struct PollerContext<'a> {
    pub providers: &'a std::collections::BTreeMap<String, ProviderSettings>,
    pub contact: &'a str,
    pub metrics: Arc<Metrics>,
    pub shared_cache: Option<Arc<dyn SharedCache>>,
    /// How far ahead of the server's clock a provider's reading may be.
    pub max_clock_skew_secs: u64,
    pub demand: Arc<Demand>,
    /// `sources.max_active_locations`.
    pub max_active: usize,
}

impl Pollers {
    /// One poller per registered provider that is enabled in `context.providers`; a
    /// provider whose settings keep it off says so once.
    pub fn create(context: PollerContext<'_>) -> Self {
        let contact = context.contact.trim();
        let user_agent = if contact.is_empty() {
            format!("isobar/{}", env!("CARGO_PKG_VERSION"))
        } else {
            format!("isobar/{} ({contact})", env!("CARGO_PKG_VERSION"))
        };
        let mut creator = Creator {
            context: &context,
            user_agent,
            offline_warned: Arc::new(AtomicBool::new(false)),
            pollers: Pollers { trackers: Vec::new(), statuses: Vec::new(), starts: Vec::new() },
        };
        for_each_provider(&mut creator);
        creator.pollers
    }

    /// Starts every poller on `arbiter` (a thread of their own: slow upstream parsing
    /// never holds up HTTP, the Directory or the persister), with the ingest path for
    /// their readings.
    pub fn run(&mut self, ingest: &Ingest, arbiter: &ArbiterHandle) {
        for start in self.starts.drain(..) {
            start(ingest.clone(), arbiter);
        }
    }
}

struct Creator<'a, 'b> {
    context: &'a PollerContext<'b>,
    user_agent: String,
    offline_warned: Arc<AtomicBool>,
    pollers: Pollers,
}

impl ProviderVisitor for Creator<'_, '_> {
    fn visit<P: Provider>(&mut self) {
        let Some(settings) = self.context.providers.get(P::KEY).filter(|s| s.enabled) else { return };
        let disabled = match P::check(settings, self.context.contact) {
            Ok(()) => None,
            Err(NotRunning::Off(why)) => return info!(provider = P::NAME, "{why}"),
            Err(NotRunning::Disabled(why)) => Some(why),
        };
        let upstream = Upstream::new(P::NAME, settings.clone(), &self.user_agent, self.context.metrics.clone())
            .with_shared_cache(self.context.shared_cache.clone());
        // The mailbox exists now (location actors tell it what to track from the start);
        // the poller runs on its own arbiter once the ingest path exists.
        let (sender, mailbox) = actix::dev::channel::channel::<SourcePoller<P>>(MAILBOX);
        let addr = Addr::new(sender);
        self.pollers.trackers.push((addr.clone().recipient(), addr.clone().recipient()));
        self.pollers.statuses.push(addr.recipient());
        let (provider, metrics) = (P::new(settings), self.context.metrics.clone());
        let poll_interval = Duration::from_secs(settings.poll_interval_secs.max(1));
        let offline_warned = self.offline_warned.clone();
        let max_clock_skew_secs = self.context.max_clock_skew_secs;
        let (demand, max_active) = (self.context.demand.clone(), self.context.max_active.max(1));
        self.pollers.starts.push(Box::new(move |ingest, arbiter| {
            let poller = SourcePoller {
                provider: Arc::new(provider),
                upstream: Arc::new(upstream),
                source: SourceName::parse(P::NAME).unwrap_or_else(|| unreachable!("provider names are valid")),
                ingest,
                metrics,
                poll_interval,
                max_clock_skew_secs,
                targets: HashMap::new(),
                disabled,
                last_error: None,
                offline_warned,
                ever_answered: false,
                tick_scheduled: false,
                demand,
                max_active,
                capped: false,
            };
            arbiter.spawn_fn(move || {
                Context::with_receiver(mailbox).run(poller);
            });
        }));
    }
}
