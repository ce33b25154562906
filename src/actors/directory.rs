//! `Directory`: resolves a `LocationId` to its `LocationActor`, starting it on first use
//! (a "virtual actor": callers never create or stop location actors).
//!
//! Actors are spread over one arbiter per core by a hash of the id and run under a
//! `Supervisor`. An idle actor asks to be passivated; the Directory forgets it first and
//! then tells it to stop, so a request arriving meanwhile starts a fresh actor that
//! restores from the persister. The Directory also owns the registry of stations
//! (locations first seen through readings) and routes validated readings to their actors.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::{info, warn};

use crate::actors::location::{
    Adopt, ApplyForecast, Checkpoint, HandOver, IngestBatch, LocationActor, LocationDeps, Passivate, RelayUpdate,
    SourceHealth,
};
use crate::actors::persister::{LoadStation, SaveStation, SyncSnapshots};
use crate::actors::poller::{Track, Untrack};
use crate::catalog::{Catalog, MatchRank, fold};
use crate::domain::{FieldError, ForecastRun, Location, LocationId, LocationKind, Reading, SourceName};
use crate::telemetry::Metrics;

pub struct Directory {
    catalog: Arc<Catalog>,
    /// Stations registered by readings or sources, by id.
    stations: HashMap<LocationId, Station>,
    /// Running location actors.
    actors: HashMap<LocationId, Addr<LocationActor>>,
    /// One arbiter per core; a location always lands on the same one.
    arbiters: Vec<ArbiterHandle>,
    /// Handed to every location actor; `None` until this actor has started (it holds our
    /// own address).
    deps: Option<LocationDeps>,
    make_deps: Option<Box<dyn FnOnce(Recipient<RequestPassivation>) -> LocationDeps>>,
    metrics: Arc<Metrics>,
    /// The source pollers, told when a location starts or passivates.
    pollers: Vec<(Recipient<Track>, Recipient<Untrack>)>,
}

/// A registered station with its id and name folded once for search.
struct Station {
    location: Arc<Location>,
    folded_id: String,
    folded_name: String,
}

impl Station {
    fn new(location: Location) -> Self {
        Self { folded_id: fold(location.id.as_str()), folded_name: fold(&location.name), location: Arc::new(location) }
    }
}

/// The location id names neither a catalog city nor a known station.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown location {0}")]
pub struct UnknownLocation(pub LocationId);

/// The address of the actor of `id`, started if needed. Sent by HTTP handlers and sessions.
#[derive(Message)]
#[rtype(result = "Result<Addr<LocationActor>, UnknownLocation>")]
pub struct Resolve {
    pub id: LocationId,
}

/// The description of `id` without starting its actor. Sent by GET /v1/locations/{id}.
#[derive(Message)]
#[rtype(result = "Option<Location>")]
pub struct Describe {
    pub id: LocationId,
}

/// Stations whose folded name or id starts with `query`. Sent by location search.
#[derive(Message)]
#[rtype(result = "Vec<(MatchRank, Location)>")]
pub struct SearchStations {
    pub query: String,
    pub limit: usize,
}

/// Validated readings to apply, each with its index in the client's batch. Answers the
/// items that could not be routed (a new station without coordinates); with `wait`, only
/// once every location actor has applied its share. Sent by POST /v1/readings, sources
/// and `KafkaIngest` (which waits before committing offsets).
#[derive(Message)]
#[rtype(result = "Vec<(usize, FieldError)>")]
pub struct RouteReadings {
    pub readings: Vec<(usize, Reading)>,
    pub wait: bool,
    /// Locations this instance has just taken over (their Kafka partition is newly its
    /// own): a running actor for one of them only followed it and may be stale, so it
    /// restores from the store again before their readings apply.
    pub adopt: Vec<LocationId>,
}

/// Another instance takes these locations over (their Kafka partitions were revoked):
/// each running actor writes its latest state and stops, then the persister writes
/// every pending snapshot to the shared store and forgets its local copies. Answers how
/// many actors were handed over once all that is done. Sent by `KafkaIngest`'s
/// rebalance callback, which waits for the answer before the partitions move.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct HandOverLocations {
    pub ids: Vec<LocationId>,
}

/// The readings that could not be routed (a new station without coordinates), without
/// applying any: checked before readings go to Kafka. Sent by POST /v1/readings.
#[derive(Message)]
#[rtype(result = "Vec<(usize, FieldError)>")]
pub struct FindUnroutable {
    pub readings: Vec<(usize, LocationId, bool)>,
}

/// A station known ahead of its readings, with full metadata (the replay's airports).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterStation {
    pub location: Location,
}

/// Sent by an idle `LocationActor` that has no subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestPassivation {
    pub id: LocationId,
    pub addr: Addr<LocationActor>,
}

/// The source pollers to tell about starting and passivating locations. Sent once by
/// start-up, after the pollers exist (they need the Directory's address first).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachPollers {
    pub pollers: Vec<(Recipient<Track>, Recipient<Untrack>)>,
}

/// What a provider returned for a location (already validated). Sent by a `SourcePoller`;
/// dropped when the location has passivated meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverProviderData {
    pub id: LocationId,
    pub source: SourceName,
    pub reading: Option<Reading>,
    pub forecast: Option<ForecastRun>,
}

/// A provider could not refresh a location. Sent by a `SourcePoller`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportSourceFailure {
    pub id: LocationId,
    pub source: SourceName,
    pub error: String,
}

/// An update another instance published for a location. Sent by the `RedisFeed`;
/// forwarded to the local actor, if running, for its subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayRemoteUpdate {
    pub id: LocationId,
    pub text: bytestring::ByteString,
}

/// Sent at shutdown: every running location hands its snapshot to the persister.
/// Answers how many locations did.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CheckpointAll;

impl Directory {
    /// `make_deps` builds what location actors share, given the Directory's own recipient
    /// for passivation requests (known only once it runs).
    pub fn new(
        catalog: Arc<Catalog>,
        arbiters: Vec<ArbiterHandle>,
        metrics: Arc<Metrics>,
        make_deps: impl FnOnce(Recipient<RequestPassivation>) -> LocationDeps + 'static,
    ) -> Self {
        Self {
            catalog,
            stations: HashMap::new(),
            actors: HashMap::new(),
            arbiters,
            deps: None,
            make_deps: Some(Box::new(make_deps)),
            metrics,
            pollers: Vec::new(),
        }
    }

    fn describe(&self, id: &LocationId) -> Option<Arc<Location>> {
        self.stations.get(id).map(|s| s.location.clone()).or_else(|| self.catalog.get(id).map(Arc::new))
    }

    fn resolve(&mut self, id: &LocationId) -> Result<Addr<LocationActor>, UnknownLocation> {
        if let Some(addr) = self.actors.get(id).filter(|a| a.connected()) {
            return Ok(addr.clone());
        }
        let location = self.describe(id).ok_or_else(|| UnknownLocation(id.clone()))?;
        let deps = self.deps.clone().ok_or_else(|| UnknownLocation(id.clone()))?;
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let arbiter = &self.arbiters[(hasher.finish() % self.arbiters.len() as u64) as usize];
        for (track, _) in &self.pollers {
            track.do_send(Track { location: location.clone() });
        }
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| LocationActor::new(location, deps));
        self.actors.insert(id.clone(), addr.clone());
        self.metrics.locations_active.set(self.actors.len() as i64);
        Ok(addr)
    }

    /// Forgets the running actor of `id` (it stops on its own); returns its address.
    fn forget(&mut self, id: &LocationId) -> Option<Addr<LocationActor>> {
        let addr = self.actors.remove(id)?;
        self.metrics.locations_active.set(self.actors.len() as i64);
        for (_, untrack) in &self.pollers {
            untrack.do_send(Untrack { id: id.clone() });
        }
        Some(addr)
    }

    fn is_known(&self, id: &LocationId) -> bool {
        self.stations.contains_key(id) || self.catalog.get(id).is_some()
    }

    /// A station first seen through a reading: named by its id, placed in the country and
    /// time zone of the nearest catalog city.
    fn station_from_reading(&self, reading: &Reading, latitude: f64, longitude: f64) -> Location {
        let near = self.catalog.nearest(latitude, longitude).map(|(city, _)| city);
        Location {
            id: reading.location_id.clone(),
            name: reading.location_id.to_string(),
            country: near.as_ref().map(|c| c.country.clone()).unwrap_or_default(),
            latitude,
            longitude,
            timezone: near.map(|c| c.timezone).unwrap_or_else(|| "UTC".into()),
            population: None,
            elevation: None,
            kind: LocationKind::Station,
        }
    }
}

fn needs_coordinates(id: &LocationId) -> FieldError {
    FieldError::new(
        "latitude",
        format!("location {id} is not known yet: the first reading of a new station needs latitude and longitude"),
    )
}

impl Actor for Directory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(make) = self.make_deps.take() {
            self.deps = Some(make(ctx.address().recipient()));
        }
    }
}

impl Directory {
    /// `id` as a station another instance registered (in Redis), registered here too;
    /// then `then` with the result of the lookup.
    fn look_up_station<R: 'static>(
        &self,
        id: LocationId,
        then: impl FnOnce(&mut Self, &LocationId) -> R + 'static,
    ) -> ResponseActFuture<Self, R> {
        let load = self.deps.as_ref().map(|d| d.persister.send(LoadStation { id: id.clone() }));
        Box::pin(
            async move {
                match load {
                    Some(load) => load.await.ok().flatten(),
                    None => None,
                }
            }
            .into_actor(self)
            .map(move |found, act, _| {
                if let Some(location) = found.filter(|_| !act.is_known(&id)) {
                    act.stations.insert(location.id.clone(), Station::new(location));
                }
                then(act, &id)
            }),
        )
    }
}

impl Handler<Resolve> for Directory {
    type Result = ResponseActFuture<Self, Result<Addr<LocationActor>, UnknownLocation>>;

    fn handle(&mut self, msg: Resolve, _: &mut Context<Self>) -> Self::Result {
        if self.is_known(&msg.id) {
            return Box::pin(actix::fut::ready(self.resolve(&msg.id)));
        }
        self.look_up_station(msg.id, |act, id| act.resolve(id))
    }
}

impl Handler<Describe> for Directory {
    type Result = ResponseActFuture<Self, Option<Location>>;

    fn handle(&mut self, msg: Describe, _: &mut Context<Self>) -> Self::Result {
        if let Some(location) = self.describe(&msg.id) {
            return Box::pin(actix::fut::ready(Some((*location).clone())));
        }
        self.look_up_station(msg.id, |act, id| act.describe(id).map(|l| (*l).clone()))
    }
}

impl Handler<SearchStations> for Directory {
    type Result = Vec<(MatchRank, Location)>;

    fn handle(&mut self, msg: SearchStations, _: &mut Context<Self>) -> Self::Result {
        let query = fold(&msg.query);
        let mut hits: Vec<(MatchRank, Location)> = self
            .stations
            .values()
            .filter_map(|s| {
                let (id, name) = (&s.folded_id, &s.folded_name);
                let rank = if *id == query || *name == query {
                    MatchRank::Exact
                } else if id.starts_with(&query) || name.starts_with(&query) {
                    MatchRank::Prefix
                } else {
                    return None;
                };
                Some((rank, (*s.location).clone()))
            })
            .collect();
        hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        hits.truncate(msg.limit);
        hits
    }
}

impl Handler<FindUnroutable> for Directory {
    type Result = MessageResult<FindUnroutable>;

    fn handle(&mut self, msg: FindUnroutable, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.readings
                .into_iter()
                .filter(|(_, id, has_coordinates)| !has_coordinates && !self.is_known(id))
                .map(|(index, id, _)| (index, needs_coordinates(&id)))
                .collect(),
        )
    }
}

impl Handler<RegisterStation> for Directory {
    type Result = ();

    fn handle(&mut self, msg: RegisterStation, _: &mut Context<Self>) {
        self.stations.insert(msg.location.id.clone(), Station::new(msg.location));
    }
}

impl Handler<RouteReadings> for Directory {
    type Result = ResponseFuture<Vec<(usize, FieldError)>>;

    fn handle(&mut self, msg: RouteReadings, _: &mut Context<Self>) -> Self::Result {
        for id in &msg.adopt {
            if let Some(follower) = self.actors.get(id) {
                follower.do_send(Adopt);
            }
        }
        let mut rejected = Vec::new();
        let mut batches: HashMap<LocationId, Vec<Reading>> = HashMap::new();
        for (index, reading) in msg.readings {
            if !self.is_known(&reading.location_id) {
                match (reading.latitude, reading.longitude) {
                    (Some(lat), Some(lon)) => {
                        let station = self.station_from_reading(&reading, lat, lon);
                        info!(station = %station.id, latitude = lat, longitude = lon, "new station");
                        if let Some(deps) = &self.deps {
                            deps.persister.do_send(SaveStation { location: station.clone() });
                        }
                        self.stations.insert(station.id.clone(), Station::new(station));
                    }
                    _ => {
                        rejected.push((index, needs_coordinates(&reading.location_id)));
                        continue;
                    }
                }
            }
            batches.entry(reading.location_id.clone()).or_default().push(reading);
        }
        let mut applied = Vec::new();
        for (id, readings) in batches {
            if let Ok(addr) = self.resolve(&id) {
                if msg.wait {
                    applied.push(addr.send(IngestBatch { readings }));
                } else {
                    addr.do_send(IngestBatch { readings });
                }
            }
        }
        Box::pin(async move {
            join_all(applied).await;
            rejected
        })
    }
}

impl Handler<RequestPassivation> for Directory {
    type Result = ();

    fn handle(&mut self, msg: RequestPassivation, _: &mut Context<Self>) {
        if self.actors.get(&msg.id) == Some(&msg.addr) {
            self.forget(&msg.id);
        }
        // Whether registered or an orphan restarted by its supervisor, it may stop now.
        msg.addr.do_send(Passivate);
    }
}

impl Handler<AttachPollers> for Directory {
    type Result = ();

    fn handle(&mut self, msg: AttachPollers, _: &mut Context<Self>) {
        self.pollers = msg.pollers;
        // Locations started before the pollers existed (preloads) are tracked now.
        for id in self.actors.keys() {
            if let Some(location) = self.describe(id) {
                for (track, _) in &self.pollers {
                    track.do_send(Track { location: location.clone() });
                }
            }
        }
    }
}

impl Handler<DeliverProviderData> for Directory {
    type Result = ();

    fn handle(&mut self, msg: DeliverProviderData, _: &mut Context<Self>) {
        let Some(addr) = self.actors.get(&msg.id) else { return };
        if let Some(run) = msg.forecast {
            addr.do_send(ApplyForecast { run });
        }
        match msg.reading {
            Some(reading) => addr.do_send(IngestBatch { readings: vec![reading] }),
            // A response without a usable reading still shows the source is alive.
            None => addr.do_send(SourceHealth { source: msg.source, error: None }),
        }
    }
}

impl Handler<ReportSourceFailure> for Directory {
    type Result = ();

    fn handle(&mut self, msg: ReportSourceFailure, _: &mut Context<Self>) {
        if let Some(addr) = self.actors.get(&msg.id) {
            addr.do_send(SourceHealth { source: msg.source, error: Some(msg.error) });
        }
    }
}

impl Handler<RelayRemoteUpdate> for Directory {
    type Result = ();

    fn handle(&mut self, msg: RelayRemoteUpdate, _: &mut Context<Self>) {
        if let Some(addr) = self.actors.get(&msg.id) {
            addr.do_send(RelayUpdate { text: msg.text });
        }
    }
}

impl Handler<HandOverLocations> for Directory {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: HandOverLocations, _: &mut Context<Self>) -> Self::Result {
        let stops: Vec<_> = msg.ids.iter().filter_map(|id| self.forget(id)).map(|a| a.send(HandOver)).collect();
        let persister = self.deps.as_ref().map(|d| d.persister.clone());
        Box::pin(async move {
            // Each actor handed its snapshot to the persister before answering, so the
            // sync below (queued after those) writes them all.
            let handed = join_all(stops).await.into_iter().filter(Result::is_ok).count();
            if let Some(persister) = persister {
                match persister.send(SyncSnapshots { forget: msg.ids }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "handing locations over before their state reached the store"),
                    Err(_) => {}
                }
            }
            handed
        })
    }
}

impl Handler<CheckpointAll> for Directory {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: CheckpointAll, _: &mut Context<Self>) -> Self::Result {
        let sends: Vec<_> = self.actors.values().map(|a| a.send(Checkpoint)).collect();
        Box::pin(async move { join_all(sends).await.into_iter().filter(Result::is_ok).count() })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::actors::location::{GetHistory, LocationDeps};
    use crate::actors::persister::Persister;
    use crate::config::{InfluxSettings, LocationSettings, PersistSettings, RedisSettings};
    use crate::domain::SourceName;

    fn start_directory() -> (Addr<Directory>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let dir = std::env::temp_dir().join(format!("isobar-directory-test-{}", fastrand::u64(..)));
        let persist = PersistSettings {
            flush_interval_ms: 100,
            snapshot_interval_ms: 100,
            batch_max_items: 100,
            queue_max_items: 100,
            data_dir: dir.to_string_lossy().into_owned(),
            retry_base_ms: 10,
            retry_max_ms: 100,
        };
        let redis = RedisSettings { url: String::new(), cluster: false, snapshot_ttl_secs: 60 };
        let influx = InfluxSettings {
            url: String::new(),
            database: "x".into(),
            username: String::new(),
            password: String::new(),
        };
        let persister = Persister::new(&persist, &redis, &influx, metrics.clone()).unwrap().start();
        let settings = Arc::new(LocationSettings {
            idle_passivate_secs: 3600,
            history_hours: 24,
            max_history_readings: 100,
            stale_after_secs: 7200,
            preload: Vec::new(),
        });
        let deps_metrics = metrics.clone();
        let directory = Directory::new(
            Arc::new(Catalog::bundled()),
            vec![Arbiter::current(), Arbiter::current()],
            metrics.clone(),
            move |directory| LocationDeps {
                settings,
                consensus: Arc::new(crate::config::ConsensusConfig {
                    trust: Default::default(),
                    outlier_threshold: 3.5,
                }),
                snapshot_interval: Duration::from_millis(100),
                persister,
                store_history: false,
                feed: None,
                follow_always: false,
                updates: None,
                views: Default::default(),
                periodic_snapshots: false,
                directory,
                metrics: deps_metrics,
            },
        )
        .start();
        (directory, metrics)
    }

    fn reading(id: &str, coordinates: bool) -> Reading {
        let mut r = Reading::new(
            LocationId::parse(id).unwrap(),
            SourceName::parse("station").unwrap(),
            chrono::Utc::now() - chrono::Duration::minutes(1),
        );
        r.temperature = Some(3.5);
        if coordinates {
            (r.latitude, r.longitude) = (Some(51.47), Some(-0.45));
        }
        r
    }

    #[actix::test]
    async fn resolves_catalog_cities_once_and_refuses_unknown_ids() {
        let (directory, metrics) = start_directory();
        let nyc = LocationId::parse("5128581").unwrap();
        let a = directory.send(Resolve { id: nyc.clone() }).await.unwrap().unwrap();
        let b = directory.send(Resolve { id: nyc }).await.unwrap().unwrap();
        assert_eq!(a, b);
        assert_eq!(metrics.locations_active.get(), 1);
        let unknown = LocationId::parse("EGLL").unwrap();
        assert_eq!(
            directory.send(Resolve { id: unknown.clone() }).await.unwrap().unwrap_err(),
            UnknownLocation(unknown)
        );
    }

    #[actix::test]
    async fn a_new_station_needs_coordinates_and_is_placed_by_the_nearest_city() {
        let (directory, _) = start_directory();
        let rejected = directory
            .send(RouteReadings {
                readings: vec![(0, reading("EGLL", false)), (1, reading("EGLL", true))],
                wait: true,
                adopt: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 0);
        let egll = directory.send(Describe { id: LocationId::parse("EGLL").unwrap() }).await.unwrap().unwrap();
        assert_eq!(
            (egll.name.as_str(), egll.country.as_str(), egll.timezone.as_str()),
            ("EGLL", "GB", "Europe/London")
        );
        assert_eq!(egll.kind, LocationKind::Station);
        let addr = directory.send(Resolve { id: egll.id.clone() }).await.unwrap().unwrap();
        let now = chrono::Utc::now();
        let history = addr.send(GetHistory { from: now - chrono::Duration::hours(1), to: now }).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].temperature, Some(3.5));
    }

    #[actix::test]
    async fn a_passivation_request_forgets_and_stops_the_actor() {
        let (directory, metrics) = start_directory();
        let id = LocationId::parse("5128581").unwrap();
        let addr = directory.send(Resolve { id: id.clone() }).await.unwrap().unwrap();
        directory.send(RequestPassivation { id: id.clone(), addr: addr.clone() }).await.unwrap();
        assert_eq!(metrics.locations_active.get(), 0);
        drop(addr);
        let fresh = directory.send(Resolve { id }).await.unwrap().unwrap();
        assert!(fresh.connected());
        assert_eq!(metrics.locations_active.get(), 1);
    }
}
