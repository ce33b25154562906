//! Builds the actors and the HTTP server, and shuts them down gracefully.
//!
//! `Application::build` binds the listener, then starts the persister (on its own
//! arbiter), creates the source pollers, chooses the sinks and the ownership every
//! location actor gets (from which backends are configured), starts the Directory (on
//! its own arbiter, with one arbiter per core for location actors), the Redis feed,
//! Kafka, the ingest path, the replay, the preloaded locations and the service layer, so every start-up error (bad config value, port in use, unknown preload
//! id) surfaces before anything serves. `run_until_stopped` serves until SIGTERM, SIGINT
//! or [`ShutdownHandle::shutdown`], then: closes WebSockets with 1001, stops accepting
//! and lets in-flight requests finish, has every location hand its snapshot to the
//! persister, flushes the persister, and stops the arbiters.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::actors::demand::Demand;
use crate::actors::directory::{CheckpointAll, Directory, RegisterStation, Resolve};
use crate::actors::feed::RedisFeed;
use crate::actors::forecaster::{Connect, ForecastFeed, Forecaster, ForecasterSettings, SaveAll};
use crate::actors::ingest::Ingest;
use crate::actors::kafka::{KafkaIngest, Leave};
use crate::actors::location::{Analyses, Feed, LocationDeps, Ownership};
use crate::actors::persister::{Flush, LoadStations, Persister};
use crate::actors::poller::{PollerContext, Pollers};
use crate::actors::producers::{ReadingsProducer, UpdatesProducer};
use crate::actors::replay::ReplayFeeder;
use crate::actors::session::SessionDeps;
use crate::actors::sinks::{EventSink, History, RedisRelay, Sinks};
use crate::actors::views::PublishedViews;
use crate::analytics::anomaly::{DetectorSettings, Profiles};
use crate::auth::limits::RateLimits;
use crate::auth::{KeyRing, KeyStore, StationQuota};
use crate::catalog::{Catalog, Stations};
use crate::config::Settings;
use crate::core::air::AirQualityWatch;
use crate::core::{AnomalyRules, CoreSettings, RENDER_TTL, Retention};
use crate::domain::LocationId;
use crate::http::auth::Access;
use crate::http::{self, AppState};
use crate::service::{Service, ServiceDeps, ServiceSettings};
use crate::sources::replay;
use crate::sources::upstream::SharedCache;
use crate::telemetry::Metrics;
use actix_web::middleware::Condition;

/// Why isobar could not start; each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source} (change http.host / http.port, or ISOBAR__HTTP__PORT)")]
    Bind { address: String, source: std::io::Error },
    #[error("locations.preload: {0}")]
    Preload(String),
    #[error("could not start the HTTP server: {0}")]
    Server(std::io::Error),
    #[error("kafka: {0} (check kafka.brokers and kafka.properties)")]
    Kafka(rdkafka::error::KafkaError),
    #[error("persistence: {0} (check redis.url, influx.url and persist.data_dir)")]
    Persist(crate::store::StoreError),
    #[error("{0}")]
    Auth(String),
}

/// A running instance, ready to serve.
pub struct Application {
    address: SocketAddr,
    server: actix_web::dev::Server,
    shutdown_sessions: watch::Sender<bool>,
    stop: Arc<Notify>,
    directory: Addr<Directory>,
    persister: Addr<Persister>,
    kafka: Option<Addr<KafkaIngest>>,
    forecaster: Option<Addr<Forecaster>>,
    arbiters: Arbiters,
}

/// The instance's own threads, stopped when it is dropped too (an embedding system that
/// ends without a graceful shutdown leaves no poller polling behind it).
struct Arbiters(Vec<Arbiter>);

impl Drop for Arbiters {
    fn drop(&mut self) {
        for arbiter in &self.0 {
            arbiter.stop();
        }
    }
}

/// Asks a running application to shut down gracefully (tests, embedding).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Notify>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.notify_one();
    }
}

/// Runs `task` on `what` every `period` on the current arbiter, for as long as `what` is
/// alive elsewhere.
fn every<T: 'static>(period: Duration, what: &Arc<T>, task: impl Fn(&T) + 'static) {
    let what = Arc::downgrade(what);
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(what) = what.upgrade() else { return };
            task(&what);
        }
    });
}

/// The catalog is read-only and the same for every instance in a process: parse it once.
fn catalog() -> Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    CATALOG.get_or_init(|| Arc::new(Catalog::bundled())).clone()
}

/// Binds `address` with room for `backlog` connections waiting to be accepted. The
/// standard library listens with 128: behind a load balancer, a reconnect storm overflows
/// that, and every connection dropped waits out the kernel's SYN retries (1 s, 3 s, ...).
fn listen(address: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address)?;
    // Listening again on a listening socket sets its queue's length (Linux caps it at
    // net.core.somaxconn).
    socket2::SockRef::from(&listener).listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(listener)
}

impl Application {
    /// Starts everything but does not serve yet; must run inside an actix system.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let started = Instant::now();
        // Bind first: a port in use is the most common start-up error, and nothing else
        // should have started when it is reported.
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = listen(&address, settings.http.backlog)
            .map_err(|source| StartupError::Bind { address: address.clone(), source })?;
        let address = listener.local_addr().map_err(StartupError::Server)?;
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new());
        let catalog = catalog();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
        let persister = Persister::new(&settings.persist, &settings.redis, &settings.influx, metrics.clone())
            .map_err(StartupError::Persist)?;
        let history_in_influx = !settings.influx.url.trim().is_empty();
        let redis_store = persister.redis();
        let feed = persister.redis().and_then(|r| r.pubsub_client()).map(|client| (client, persister.instance()));
        let trusted_proxies = Access::parse_proxies(&settings.http.trusted_proxies).map_err(StartupError::Auth)?;
        let key_store =
            KeyStore::from_settings(&settings, redis_store.clone()).map_err(|e| StartupError::Auth(e.to_string()))?;
        let keys = Arc::new(KeyRing::new(key_store, &settings.auth));
        keys.reload(&mut false).await;
        keys.keep_reloading();
        let limits = Arc::new(RateLimits::new(redis_store.clone()));
        every(Duration::from_secs(60), &limits, RateLimits::forget_idle);
        let access = Access::new(keys, limits, settings.auth.clone(), trusted_proxies);
        let shared_cache = persister.redis().map(|r| r as Arc<dyn SharedCache>);
        // The persister and the Directory get threads of their own: spool I/O and a
        // burst of actor starts never hold up each other, the location actors or HTTP.
        let persister_arbiter = Arbiter::new();
        let persister = Persister::start_in_arbiter(&persister_arbiter.handle(), move |_| persister);

        // The pollers exist before the Directory (each location actor tells them to track
        // it) and run once the ingest path, which needs the Directory, exists.
        let demand = Arc::new(Demand::default());
        every(Duration::from_secs(300), &demand, |d| d.forget_older_than(Duration::from_secs(6 * 3600)));
        let mut pollers = Pollers::create(PollerContext {
            providers: &settings.sources.providers,
            contact: &settings.sources.contact,
            metrics: metrics.clone(),
            shared_cache,
            max_clock_skew_secs: settings.locations.max_clock_skew_secs,
            demand: demand.clone(),
            max_active: settings.sources.max_active_locations,
        });
        let feed_context = feed.as_ref().map(|_| Context::<RedisFeed>::new());
        let feed_recipients = feed_context.as_ref().map(|ctx| {
            let addr = ctx.address();
            Feed { follow: addr.clone().recipient(), unfollow: addr.recipient() }
        });

        // Where every location's events go: chosen once, here.
        let kafka_on = !settings.kafka.brokers.trim().is_empty();
        let views = Arc::new(PublishedViews::default());
        let mut sinks: Vec<Arc<dyn EventSink>> = vec![views.clone()];
        if feed_recipients.is_some() {
            sinks.push(Arc::new(RedisRelay { persister: persister.clone().recipient() }));
        }
        if history_in_influx {
            sinks.push(Arc::new(History {
                persister: persister.clone().recipient(),
                anomalies: persister.clone().recipient(),
                durable: persister.clone().recipient(),
            }));
        }
        if kafka_on {
            let updates = UpdatesProducer::new(&settings.kafka, metrics.clone()).map_err(StartupError::Kafka)?;
            sinks.push(Arc::new(updates));
        }
        let sinks: Sinks = sinks.into();
        let snapshot_interval = Duration::from_millis(settings.persist.snapshot_interval_ms.max(1));
        let ownership = match (feed_recipients, kafka_on) {
            (None, _) => Ownership::Alone,
            (Some(feed), false) => Ownership::Relay(feed),
            // With Kafka another instance may own a location: every actor follows the
            // owner's updates, and catches up from the store once the owner has written
            // its snapshot (at most a snapshot interval after its update).
            (Some(feed), true) => {
                Ownership::Partitioned { feed, catch_up: snapshot_interval * 2 + Duration::from_secs(1) }
            }
        };
        // Snapshots go to the persister periodically when Redis keeps them.
        let snapshot_every = (!matches!(ownership, Ownership::Alone)).then_some(snapshot_interval);
        let core = Arc::new(CoreSettings {
            retention: Retention {
                window: chrono::Duration::hours(settings.locations.history_hours as i64),
                max_readings: settings.locations.max_history_readings,
            },
            stale_after_secs: settings.locations.stale_after_secs,
            trust: settings.consensus.trust.clone(),
            outlier_threshold: settings.consensus.outlier_threshold,
            render_ttl: RENDER_TTL,
            keep_applied: history_in_influx,
            anomalies: settings.anomalies.enabled.then(|| AnomalyRules {
                detectors: Arc::new(Profiles::new(DetectorSettings::default())),
                exclude: settings.anomalies.exclude_from_consensus.clone(),
                history: settings.anomalies.history,
            }),
        });
        // The forecaster learns each place from the hours its location core hands it, on
        // a thread of its own (its files and its bookkeeping never hold up a location).
        let forecaster_arbiter = settings.forecast.enabled.then(Arbiter::new);
        let forecaster = forecaster_arbiter.as_ref().map(|arbiter| {
            let forecaster = Forecaster::new(
                ForecasterSettings {
                    max_locations: settings.forecast.max_locations,
                    history_hours: settings.forecast.history_hours,
                    retrain_hours: settings.forecast.retrain_hours,
                    train_concurrency: settings.forecast.train_concurrency,
                    dir: Some(std::path::Path::new(&settings.persist.data_dir).join("forecast")),
                    history: history_in_influx.then(|| persister.clone().recipient()),
                    models: crate::analytics::forecast::Settings::default(),
                },
                metrics.clone(),
            );
            Forecaster::start_in_arbiter(&arbiter.handle(), move |_| forecaster)
        });
        // Every location watches its air quality, and feeds the forecaster when it runs.
        let feeds = forecaster.as_ref().map(|f| (f.clone().recipient(), f.clone().recipient()));
        let analyses: Analyses = Arc::new(move |location: &crate::domain::Location| {
            let mut analyses: Vec<Box<dyn crate::core::Analysis>> = vec![Box::new(AirQualityWatch::default())];
            if let Some((observed, providers)) = &feeds {
                let position = Some((location.latitude, location.longitude));
                analyses.push(Box::new(ForecastFeed::new(
                    location.id.clone(),
                    position,
                    observed.clone(),
                    providers.clone(),
                )));
            }
            analyses
        });
        let stations = Arc::new(Stations::default());
        let trackers: Arc<[_]> = pollers.trackers.clone().into();
        let (deps_persister, deps_metrics) = (persister.clone(), metrics.clone());
        let idle_passivate = Duration::from_secs(settings.locations.idle_passivate_secs);
        let directory_arbiter = Arbiter::new();
        let directory = Directory::new(
            catalog.clone(),
            stations.clone(),
            arbiters.iter().map(Arbiter::handle).collect(),
            persister.clone(),
            metrics.clone(),
            move |directory| LocationDeps {
                core,
                analyses,
                sinks,
                ownership,
                snapshot_every,
                idle_passivate,
                persister: deps_persister,
                pollers: trackers,
                directory,
                metrics: deps_metrics,
            },
        );
        let directory = Directory::start_in_arbiter(&directory_arbiter.handle(), move |_| directory);
        if let Some(forecaster) = &forecaster {
            forecaster.do_send(Connect { directory: directory.clone() });
        }

        if let (Some(ctx), Some((client, instance))) = (feed_context, feed) {
            ctx.run(RedisFeed::new(client, instance));
        }
        let mut arbiters = arbiters;
        arbiters.extend([persister_arbiter, directory_arbiter]);
        arbiters.extend(forecaster_arbiter);
        let (kafka, producer) = if kafka_on {
            let skew = settings.locations.max_clock_skew_secs;
            let ingest = KafkaIngest::new(&settings.kafka, skew, directory.clone(), persister.clone(), metrics.clone())
                .map_err(StartupError::Kafka)?;
            let producer = ReadingsProducer::new(&settings.kafka, metrics.clone()).map_err(StartupError::Kafka)?;
            // Its own thread: a rebalance blocks it while locations are handed over (the
            // ingest path produces without it, through its own producer).
            let arbiter = Arbiter::new();
            let addr = KafkaIngest::start_in_arbiter(&arbiter.handle(), move |_| ingest);
            arbiters.push(arbiter);
            (Some(addr), Some(producer))
        } else {
            (None, None)
        };
        let ingest = Ingest::new(directory.clone(), producer, settings.locations.history_hours, metrics.clone());
        let pollers_arbiter = Arbiter::new();
        pollers.run(&ingest, &pollers_arbiter.handle());
        arbiters.push(pollers_arbiter);

        match persister.send(LoadStations).await {
            Ok(Ok(stations)) => {
                if !stations.is_empty() {
                    info!(stations = stations.len(), "stations restored from Redis");
                }
                for location in stations {
                    let _ = directory.send(RegisterStation { location }).await;
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot load stations from Redis; they come back with their next reading"),
            Err(_) => {}
        }
        if settings.sources.replay.enabled {
            for location in replay::stations() {
                let _ = directory.send(RegisterStation { location }).await;
            }
            ReplayFeeder::new(&settings.sources.replay, directory.clone(), ingest.clone(), metrics.clone()).start();
        }
        for raw in &settings.locations.preload {
            let id = LocationId::parse(raw).map_err(|e| StartupError::Preload(format!("{raw:?}: {e}")))?;
            match directory.send(Resolve { id }).await {
                Ok(Ok(_)) => {}
                Ok(Err(unknown)) => return Err(StartupError::Preload(unknown.to_string())),
                Err(e) => return Err(StartupError::Preload(e.to_string())),
            }
        }

        let service = Service::new(
            ServiceDeps {
                directory: directory.clone(),
                persister: persister.clone(),
                catalog,
                stations,
                views,
                ingest,
                kafka: kafka.clone(),
                providers: pollers.statuses.clone(),
                metrics: metrics.clone(),
                station_quota: StationQuota::new(redis_store.clone()),
                demand: demand.clone(),
                forecaster: forecaster.clone(),
            },
            ServiceSettings {
                history_hours: settings.locations.history_hours,
                history_in_influx,
                // A location nobody asked for yet waits for the pollers' first answer,
                // when there are pollers.
                cold_wait: (!pollers.statuses.is_empty()).then(|| Duration::from_millis(settings.sources.cold_wait_ms)),
                render_ttl: RENDER_TTL,
                max_clock_skew_secs: settings.locations.max_clock_skew_secs,
            },
        );
        let (shutdown_sessions, shutdown_rx) = watch::channel(false);
        let state = web::Data::new(AppState {
            service,
            metrics: metrics.clone(),
            sessions: SessionDeps {
                directory: directory.clone(),
                settings: Arc::new(settings.ws.clone()),
                metrics: metrics.clone(),
                shutdown: shutdown_rx,
                demand,
            },
            settings: settings.clone(),
            next_session_id: AtomicU64::new(1),
            access,
            graphql: crate::http::graphql::schema(&settings.graphql),
            current_cache_control: actix_web::http::header::HeaderValue::try_from(format!(
                "max-age={}",
                settings.http.current_max_age_secs
            ))
            .expect("max-age and digits: a valid header value"),
        });
        let cors_origins = settings.http.cors_origins.clone();
        let graphql = settings.graphql.enabled;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(http::auth::authorize))
                .wrap(Condition::new(!cors_origins.is_empty(), http::cors(&cors_origins)))
                .wrap(from_fn(http::record_metrics))
                .wrap(http::security_headers())
                // The API's routes first: the dashboard's asset route would be one more
                // regex tried on every API request.
                .configure(http::configure)
                .configure(http::dashboard::configure)
                .configure(|cfg| {
                    if graphql {
                        http::graphql::configure(cfg);
                    }
                })
        })
        .workers(cores)
        .client_request_timeout(Duration::from_secs(settings.http.request_head_timeout_secs.max(1)))
        .keep_alive(Duration::from_secs(settings.http.keep_alive_secs))
        // No lingering after a response whose request body is still open. A WebSocket's
        // inbound stream never ends, so with actix-web's default (1 s) every closing
        // handshake waited a second for the client to drop the TCP connection, while
        // the client (RFC 6455 §7.1.1) waits for the server to drop it first.
        .client_disconnect_timeout(Duration::ZERO)
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_timeout_secs)
        .listen(listener)
        .map_err(StartupError::Server)?
        .run();
        info!(address = %address, startup_ms = started.elapsed().as_millis() as u64, "listening");
        Ok(Self {
            address,
            server,
            shutdown_sessions,
            stop: Arc::new(Notify::new()),
            directory,
            persister,
            kafka,
            forecaster,
            arbiters: Arbiters(arbiters),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn directory(&self) -> Addr<Directory> {
        self.directory.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Serves until a signal or a `ShutdownHandle`, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_rt::spawn(self.server);
        tokio::select! {
            result = &mut server => {
                return result.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            }
            signal = shutdown_signal() => info!(signal, "shutting down"),
            _ = self.stop.notified() => info!("shutting down on request"),
        }
        // WebSockets first, so their connections can end within the grace period.
        let _ = self.shutdown_sessions.send(true);
        handle.stop(true).await;
        if let Some(kafka) = &self.kafka {
            // Hand the locations over while the Directory and the persister still run.
            let _ = kafka.send(Leave).await;
        }
        let locations = self.directory.send(CheckpointAll).await.unwrap_or(0);
        let written = self.persister.send(Flush).await.unwrap_or(0);
        if let Some(forecaster) = &self.forecaster {
            let _ = forecaster.send(SaveAll).await;
        }
        drop(self.arbiters);
        info!(locations, snapshots_written = written, "stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT, naming which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                warn!("cannot install signal handlers; stop with a ShutdownHandle");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn the_listener_queues_more_connections_than_the_standard_librarys_128() {
        // Nobody accepts: every connection waits in the queue. With the standard
        // library's 128, the 130th connect times out (its SYN is dropped).
        let listener = listen("127.0.0.1:0", 1024).expect("bind");
        let address = listener.local_addr().expect("address");
        let mut queued = Vec::new();
        for _ in 0..600 {
            match TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
                Ok(stream) => queued.push(stream),
                Err(error) => panic!("connection {} not queued: {error}", queued.len() + 1),
            }
        }
        assert_eq!(queued.len(), 600);
    }
}
