//! `Directory`: the registry of location actors. It resolves a `LocationId` to its
//! `LocationActor`, starting it on first use (a "virtual actor": callers never create or
//! stop location actors), and decides which locations exist: the catalog's cities and
//! the stations, which it alone registers (from a new station's first reading, from
//! start-up, or from Redis when another instance registered one).
//!
//! Actors are spread over one arbiter per core by a hash of the id and run under a
//! `Supervisor`. An idle actor asks to be passivated; the Directory forgets it first and
//! then tells it to stop, so a request arriving meanwhile starts a fresh actor that
//! restores from the persister.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::info;

use crate::actors::location::{Checkpoint, HandOver, LocationActor, LocationDeps, Passivate, RequestPassivation};
use crate::actors::persister::{LoadStation, Persister, SaveStation};
use crate::catalog::{Catalog, Stations};
use crate::domain::{FieldError, Location, LocationId, LocationKind};
use crate::telemetry::Metrics;

pub struct Directory {
    catalog: Arc<Catalog>,
    /// Stations by id; written here only, read by the service too.
    stations: Arc<Stations>,
    /// Running location actors.
    actors: HashMap<LocationId, Addr<LocationActor>>,
    /// One arbiter per core; a location always lands on the same one.
    arbiters: Vec<ArbiterHandle>,
    /// Remembers stations across restarts and finds other instances' (Redis).
    persister: Addr<Persister>,
    /// Handed to every location actor; `None` until this actor has started (it holds our
    /// own address).
    /// Shared by every location actor (one Arc, not a copy of each address per location).
    deps: Option<Arc<LocationDeps>>,
    make_deps: Option<Box<dyn FnOnce(Recipient<RequestPassivation>) -> LocationDeps + Send>>,
    metrics: Arc<Metrics>,
}

/// Why the directory has no actor for a location id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownLocation {
    /// The id names neither a catalog city nor a station this instance or Redis knows.
    #[error("unknown location {0}")]
    Unknown(LocationId),
    /// Not known here, and Redis (where another instance's stations are) could not be
    /// read: it may be a station. Try again.
    #[error("cannot tell whether {0} is a station another instance registered ({1})")]
    Unchecked(LocationId, String),
}

/// The address of the actor of `id`, started if needed. Sent by the service and sessions.
#[derive(Message)]
#[rtype(result = "Result<Addr<LocationActor>, UnknownLocation>")]
pub struct Resolve {
    pub id: LocationId,
}

/// The description of `id` without starting its actor, looking in Redis for a station
/// another instance registered. Sent by the service for an id it does not know.
#[derive(Message)]
#[rtype(result = "Result<Location, UnknownLocation>")]
pub struct Describe {
    pub id: LocationId,
}

/// The actors of the locations readings are for, in order, started if needed. Each id
/// comes with the position (among its readings) and coordinates of its first reading that
/// has some: an unknown id is registered as a station from those, and its earlier readings
/// are refused (the answer's position; 0 for a known location); without any, it is
/// refused. An error when an id that needs it could not be looked up in Redis: nothing is
/// refused or started then (try again). Sent by the ingest path.
#[derive(Message)]
#[rtype(result = "Result<Vec<Result<(Addr<LocationActor>, usize), FieldError>>, String>")]
pub struct ResolveForReadings {
    pub ids: Vec<(LocationId, Option<FirstFix>)>,
}

/// The first of a location's readings that carries coordinates: its position among them,
/// and where it was taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstFix {
    pub position: usize,
    pub latitude: f64,
    pub longitude: f64,
}

/// The indexes of readings that could not be routed (a new station without coordinates),
/// without starting anything: checked before readings go to Kafka. Each item is (index,
/// location, coordinates). A new station with coordinates is registered here (and so in
/// Redis) at once, so every instance knows it before its owner consumes its reading. An
/// error when Redis could not be read for a reading without coordinates.
#[derive(Message)]
#[rtype(result = "Result<Vec<(usize, FieldError)>, String>")]
pub struct CheckRoutable {
    pub readings: Vec<(usize, LocationId, Option<LatLon>)>,
}

/// A reading's latitude and longitude.
pub type LatLon = (f64, f64);

/// A station known ahead of its readings, with full metadata (the replay's airports,
/// the stations Redis remembers).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterStation {
    pub location: Location,
}

/// Another instance takes these locations over (their Kafka partitions were revoked):
/// each running actor hands its latest state to the persister and stops. Answers how
/// many did. Sent by `KafkaIngest`'s rebalance callback.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct HandOverLocations {
    pub ids: Vec<LocationId>,
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
        stations: Arc<Stations>,
        arbiters: Vec<ArbiterHandle>,
        persister: Addr<Persister>,
        metrics: Arc<Metrics>,
        make_deps: impl FnOnce(Recipient<RequestPassivation>) -> LocationDeps + Send + 'static,
    ) -> Self {
        Self {
            catalog,
            stations,
            actors: HashMap::new(),
            arbiters,
            persister,
            deps: None,
            make_deps: Some(Box::new(make_deps)),
            metrics,
        }
    }

    fn describe(&self, id: &LocationId) -> Option<Arc<Location>> {
        self.stations.get(id).or_else(|| self.catalog.get(id).map(Arc::new))
    }

    fn is_known(&self, id: &LocationId) -> bool {
        self.stations.contains(id) || self.catalog.get(id).is_some()
    }

    /// The ids among `ids` not known here: what [`Self::look_up_stations`] asks Redis
    /// about (none, usually: no allocation then).
    fn not_known<'a>(&self, ids: impl IntoIterator<Item = &'a LocationId>) -> Vec<LocationId> {
        ids.into_iter().filter(|id| !self.is_known(id)).cloned().collect()
    }

    fn resolve(&mut self, id: &LocationId) -> Result<Addr<LocationActor>, UnknownLocation> {
        if let Some(addr) = self.actors.get(id).filter(|a| a.connected()) {
            return Ok(addr.clone());
        }
        let location = self.describe(id).ok_or_else(|| UnknownLocation::Unknown(id.clone()))?;
        let deps = self.deps.clone().ok_or_else(|| UnknownLocation::Unknown(id.clone()))?;
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let arbiter = &self.arbiters[(hasher.finish() % self.arbiters.len() as u64) as usize];
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| LocationActor::new(location, deps));
        self.actors.insert(id.clone(), addr.clone());
        self.metrics.locations_active.set(self.actors.len() as i64);
        Ok(addr)
    }

    /// Forgets the running actor of `id` (it stops on its own); returns its address.
    fn forget(&mut self, id: &LocationId) -> Option<Addr<LocationActor>> {
        let addr = self.actors.remove(id)?;
        self.metrics.locations_active.set(self.actors.len() as i64);
        Some(addr)
    }

    /// A station first seen through a reading: named by its id, placed in the country and
    /// time zone of the nearest catalog city, remembered in Redis.
    fn register_from_reading(&mut self, id: &LocationId, latitude: f64, longitude: f64) {
        let near = self.catalog.nearest(latitude, longitude).map(|(city, _)| city);
        let station = Location {
            id: id.clone(),
            name: id.to_string(),
            country: near.as_ref().map(|c| c.country.clone()).unwrap_or_default(),
            latitude,
            longitude,
            timezone: near.map(|c| c.timezone).unwrap_or_else(|| "UTC".into()),
            population: None,
            elevation: None,
            kind: LocationKind::Station,
        };
        info!(station = %id, latitude, longitude, "new station");
        self.persister.do_send(SaveStation { location: station.clone() });
        self.stations.insert(station);
    }

    /// The ids among `unknown` that are stations another instance registered (in Redis),
    /// registered here too; then `then`, given the ids Redis could not be asked about
    /// (with why). A location whose Kafka partition moved here, or a reading posted to an
    /// instance that never saw its station, is known this way rather than refused for
    /// want of coordinates. With nothing to look up (the usual case: ingest of known
    /// locations) it answers at once, with no future.
    fn look_up_stations<R: 'static>(
        &mut self,
        mut unknown: Vec<LocationId>,
        then: impl FnOnce(&mut Self, &Unchecked) -> R + 'static,
    ) -> ActorResponse<Self, R> {
        if unknown.is_empty() {
            return ActorResponse::reply(then(self, &Unchecked::new()));
        }
        unknown.sort_unstable();
        unknown.dedup();
        let loads = join_all(unknown.iter().map(|id| self.persister.send(LoadStation { id: id.clone() })));
        ActorResponse::r#async(loads.into_actor(self).map(move |found, act, _| {
            let mut unchecked = Unchecked::new();
            for (id, result) in unknown.into_iter().zip(found) {
                let why = match result {
                    Ok(Ok(Some(location))) if !act.is_known(&location.id) => {
                        act.stations.insert(location);
                        continue;
                    }
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                unchecked.insert(id, why);
            }
            then(act, &unchecked)
        }))
    }

    /// Refusing a reading without coordinates needs Redis's word that no other instance
    /// registered its station: the first of `ids` (such readings' locations) not known
    /// here that Redis could not be asked about, as the error to retry on.
    fn unsure<'a>(&self, unchecked: &Unchecked, mut ids: impl Iterator<Item = &'a LocationId>) -> Result<(), String> {
        match ids.find(|id| !self.is_known(id) && unchecked.contains_key(*id)) {
            Some(id) => Err(UnknownLocation::Unknown(id.clone()).checked(unchecked).to_string()),
            None => Ok(()),
        }
    }
}

/// Ids Redis could not be asked about, with why.
type Unchecked = HashMap<LocationId, String>;

impl UnknownLocation {
    /// `Unchecked` when the id is unknown because Redis could not be asked about it.
    fn checked(self, unchecked: &Unchecked) -> Self {
        match self {
            UnknownLocation::Unknown(id) => match unchecked.get(&id) {
                Some(why) => UnknownLocation::Unchecked(id, why.clone()),
                None => UnknownLocation::Unknown(id),
            },
            other => other,
        }
    }
}

/// Why a reading of an unknown location without coordinates is refused.
pub fn needs_coordinates(id: &LocationId) -> FieldError {
    FieldError::new(
        "latitude",
        format!("location {id} is not known yet: the first reading of a new station needs latitude and longitude"),
    )
}

impl Actor for Directory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(make) = self.make_deps.take() {
            self.deps = Some(Arc::new(make(ctx.address().recipient())));
        }
    }
}

impl Handler<Resolve> for Directory {
    type Result = ActorResponse<Self, Result<Addr<LocationActor>, UnknownLocation>>;

    fn handle(&mut self, msg: Resolve, _: &mut Context<Self>) -> Self::Result {
        let unknown = self.not_known([&msg.id]);
        self.look_up_stations(unknown, move |act, unchecked| act.resolve(&msg.id).map_err(|e| e.checked(unchecked)))
    }
}

impl Handler<Describe> for Directory {
    type Result = ActorResponse<Self, Result<Location, UnknownLocation>>;

    fn handle(&mut self, msg: Describe, _: &mut Context<Self>) -> Self::Result {
        let unknown = self.not_known([&msg.id]);
        self.look_up_stations(unknown, move |act, unchecked| match act.describe(&msg.id) {
            Some(location) => Ok((*location).clone()),
            None => Err(UnknownLocation::Unknown(msg.id).checked(unchecked)),
        })
    }
}

impl Handler<ResolveForReadings> for Directory {
    type Result = ActorResponse<Self, Result<Vec<Result<(Addr<LocationActor>, usize), FieldError>>, String>>;

    fn handle(&mut self, msg: ResolveForReadings, _: &mut Context<Self>) -> Self::Result {
        let unknown = self.not_known(msg.ids.iter().map(|(id, _)| id));
        self.look_up_stations(unknown, move |act, unchecked| {
            // One with coordinates registers its station from them, as without Redis.
            act.unsure(unchecked, msg.ids.iter().filter(|(_, fix)| fix.is_none()).map(|(id, _)| id))?;
            Ok(msg
                .ids
                .into_iter()
                .map(|(id, coordinates)| {
                    let mut first = 0;
                    if !act.is_known(&id) {
                        let fix = coordinates.ok_or_else(|| needs_coordinates(&id))?;
                        act.register_from_reading(&id, fix.latitude, fix.longitude);
                        first = fix.position;
                    }
                    let addr = act.resolve(&id).map_err(|e| FieldError::new("location_id", e.to_string()))?;
                    Ok((addr, first))
                })
                .collect())
        })
    }
}

impl Handler<CheckRoutable> for Directory {
    type Result = ActorResponse<Self, Result<Vec<(usize, FieldError)>, String>>;

    fn handle(&mut self, msg: CheckRoutable, _: &mut Context<Self>) -> Self::Result {
        let unknown = self.not_known(msg.readings.iter().map(|(_, id, _)| id));
        self.look_up_stations(unknown, move |act, unchecked| {
            let unroutable: Vec<(usize, &LocationId)> = msg
                .readings
                .iter()
                .filter(|(_, id, fix)| fix.is_none() && !act.is_known(id))
                .map(|(index, id, _)| (*index, id))
                .collect();
            act.unsure(unchecked, unroutable.iter().map(|(_, id)| *id))?;
            let unroutable = unroutable.into_iter().map(|(index, id)| (index, needs_coordinates(id))).collect();
            // Its owner registers a new station when it consumes the reading; registered
            // here too, every instance can find it in Redis from the 202 on.
            for (_, id, fix) in &msg.readings {
                if let Some((latitude, longitude)) = fix
                    && !act.is_known(id)
                {
                    act.register_from_reading(id, *latitude, *longitude);
                }
            }
            Ok(unroutable)
        })
    }
}

impl Handler<RegisterStation> for Directory {
    type Result = ();

    fn handle(&mut self, msg: RegisterStation, _: &mut Context<Self>) {
        self.stations.insert(msg.location);
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

impl Handler<HandOverLocations> for Directory {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: HandOverLocations, _: &mut Context<Self>) -> Self::Result {
        let stops: Vec<_> = msg.ids.iter().filter_map(|id| self.forget(id)).map(|a| a.send(HandOver)).collect();
        // Each actor hands its snapshot to the persister before answering.
        Box::pin(async move { join_all(stops).await.into_iter().filter(Result::is_ok).count() })
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
    use crate::actors::ingest::{IngestError, apply};
    use crate::actors::location::{Feed, GetCurrent, GetHistory, LocationDeps, Ownership, Subscribe};
    use crate::actors::messages::{Follow, RelayUpdate, Unfollow};
    use crate::actors::sinks::tests::Collector;
    use crate::config::{InfluxSettings, PersistSettings, RedisSettings};
    use crate::core::{CoreSettings, Retention};
    use crate::domain::{Quantity, Reading, SourceName};

    fn start_directory() -> (Addr<Directory>, Arc<Metrics>) {
        start_directory_with(Arc::new(|_| Vec::new()))
    }

    fn start_directory_with(analyses: crate::actors::location::Analyses) -> (Addr<Directory>, Arc<Metrics>) {
        start_directory_full(Ownership::Alone, analyses, "")
    }

    fn start_directory_full(
        ownership: Ownership,
        analyses: crate::actors::location::Analyses,
        redis_url: &str,
    ) -> (Addr<Directory>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let dir = std::env::temp_dir().join(format!("isobar-directory-test-{}", fastrand::u64(..)));
        let persist = PersistSettings {
            flush_interval_ms: 100,
            snapshot_interval_ms: 100,
            batch_max_items: 100,
            queue_max_items: 100,
            spool_max_bytes: 1 << 20,
            spool_fsync: false,
            data_dir: dir.to_string_lossy().into_owned(),
            retry_base_ms: 10,
            retry_max_ms: 100,
        };
        let redis = RedisSettings { url: redis_url.to_owned(), cluster: false, snapshot_ttl_secs: 60 };
        let influx = InfluxSettings {
            url: String::new(),
            database: "x".into(),
            username: String::new(),
            password: String::new(),
        };
        let persister = Persister::new(&persist, &redis, &influx, metrics.clone()).unwrap().start();
        let core = Arc::new(CoreSettings {
            retention: Retention { window: chrono::Duration::hours(24), max_readings: 100 },
            stale_after_secs: 7200,
            trust: Default::default(),
            outlier_threshold: 3.5,
            render_ttl: Duration::from_secs(1),
            keep_applied: false,
            anomalies: None,
        });
        let (deps_persister, deps_metrics) = (persister.clone(), metrics.clone());
        let directory = Directory::new(
            Arc::new(Catalog::bundled()),
            Arc::new(Stations::default()),
            vec![Arbiter::current(), Arbiter::current()],
            persister,
            metrics.clone(),
            move |directory| LocationDeps {
                core,
                analyses,
                sinks: Arc::new([]),
                ownership,
                snapshot_every: None,
                idle_passivate: Duration::from_secs(3600),
                persister: deps_persister,
                pollers: Arc::new([]),
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
        r.set(Quantity::Temperature, Some(3.5));
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
            UnknownLocation::Unknown(unknown)
        );
    }

    #[actix::test]
    async fn a_new_station_needs_coordinates_and_is_placed_by_the_nearest_city() {
        let (directory, _) = start_directory();
        let readings = vec![(0, reading("EGLL", false)), (1, reading("EGLL", true))];
        let rejected = apply(&directory, readings, Vec::new()).await.unwrap();
        assert_eq!(rejected, [(0, needs_coordinates(&LocationId::parse("EGLL").unwrap()))]);
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
        assert_eq!(history[0].get(Quantity::Temperature), Some(3.5));
    }

    /// Panics on the second reading it ever sees (in any test of this process).
    struct PanicsOnce;

    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl crate::core::Analysis for PanicsOnce {
        fn on_reading(&mut self, _: &Reading, _: &crate::core::LocationState, _: &mut Vec<crate::core::LocationEvent>) {
            if SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                panic!("injected by the test");
            }
        }
    }

    #[actix::test]
    async fn a_location_handed_over_while_someone_holds_its_address_is_not_counted_as_a_restart() {
        let (directory, metrics) = start_directory_with(Arc::new(|_| Vec::new()));
        apply(&directory, vec![(0, reading("HAND1", true))], Vec::new()).await.unwrap();
        // A WebSocket session holds the address, so the supervisor restarts the actor.
        let held = directory.send(Resolve { id: LocationId::parse("HAND1").unwrap() }).await.unwrap().unwrap();
        let handed = directory.send(HandOverLocations { ids: vec![LocationId::parse("HAND1").unwrap()] }).await;
        assert_eq!(handed.unwrap(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(held.connected(), "restarted by its supervisor");
        assert_eq!(metrics.location_restarts.get(), 0, "a hand-over is no failure");
    }

    #[actix::test]
    async fn a_location_that_panics_while_applying_restarts_and_still_applies_every_reading() {
        let (directory, metrics) = start_directory_with(Arc::new(|_| vec![Box::new(PanicsOnce)]));
        let mut readings: Vec<(usize, Reading)> = (0..3)
            .map(|i| {
                let mut r = reading("PANIC1", true);
                r.observed_at -= chrono::Duration::minutes(i);
                (i as usize, r)
            })
            .collect();
        readings.reverse();
        let refused = apply(&directory, readings, Vec::new()).await.unwrap();
        assert_eq!(refused, []);
        assert_eq!(metrics.location_restarts.get(), 1);
        let addr = directory.send(Resolve { id: LocationId::parse("PANIC1").unwrap() }).await.unwrap().unwrap();
        let now = chrono::Utc::now();
        let history = addr.send(GetHistory { from: now - chrono::Duration::hours(1), to: now }).await.unwrap();
        assert_eq!(history.len(), 3, "the reading applied before the panic was saved, the rest sent again");
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

    /// Takes the feed's Follow and Unfollow; the test relays the owner's updates itself.
    struct NoFeed;

    impl Actor for NoFeed {
        type Context = Context<Self>;
    }

    impl Handler<Follow> for NoFeed {
        type Result = ();

        fn handle(&mut self, _: Follow, _: &mut Context<Self>) {}
    }

    impl Handler<Unfollow> for NoFeed {
        type Result = ();

        fn handle(&mut self, _: Unfollow, _: &mut Context<Self>) {}
    }

    #[actix::test]
    async fn the_owners_updates_reach_a_followers_subscribers_in_order_and_a_gap_is_said() {
        let feed = NoFeed.start();
        let feed = Feed { follow: feed.clone().recipient(), unfollow: feed.recipient() };
        let ownership = Ownership::Partitioned { feed, catch_up: Duration::from_secs(3600) };
        let (directory, _) = start_directory_full(ownership, Arc::new(|_| Vec::new()), "");
        let addr = directory.send(Resolve { id: LocationId::parse("5128581").unwrap() }).await.unwrap().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recipient = Collector(seen.clone()).start().recipient();
        addr.send(Subscribe { session_id: 1, recipient, since: None }).await.unwrap();
        // The owner's updates as the feed hands them over: 3 and 4 lost on the way, 5
        // twice, 3 late.
        for seq in [1, 2, 5, 5, 3, 6] {
            let text = crate::actors::wire::update_message(&crate::actors::views::tests::update(seq)).clone();
            addr.send(RelayUpdate { text }).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let told: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|t| {
                let m: serde_json::Value = serde_json::from_str(t).unwrap();
                (m["type"].as_str().unwrap_or("").to_owned(), m["seq"].as_u64(), m["missed"].as_u64())
            })
            .collect();
        let kinds = |k: &str, seq: u64, missed: Option<u64>| (k.to_owned(), Some(seq), missed);
        assert_eq!(
            told,
            [
                kinds("snapshot", 0, None),
                kinds("update", 1, None),
                kinds("update", 2, None),
                kinds("snapshot", 5, Some(3)),
                kinds("update", 6, None),
            ]
        );
        // The follower shows the owner's latest.
        let current = addr.send(GetCurrent { wait: None }).await.unwrap();
        assert_eq!(current.map(|u| u.seq), Some(6));
    }

    #[actix::test]
    async fn an_unknown_id_without_coordinates_while_redis_cannot_be_read_is_not_refused_but_to_retry() {
        // Nothing listens on port 1: every question to Redis fails.
        let (directory, _) = start_directory_full(Ownership::Alone, Arc::new(|_| Vec::new()), "redis://127.0.0.1:1");
        // A reading without coordinates may be for another instance's station: it is
        // not refused (nor dead-lettered), the caller is to try again.
        let error = apply(&directory, vec![(0, reading("ELSEWHERE", false))], Vec::new()).await.unwrap_err();
        assert!(matches!(&error, IngestError::Unchecked(why) if why.contains("ELSEWHERE")), "{error}");
        let id = LocationId::parse("ELSEWHERE").unwrap();
        match directory.send(Resolve { id: id.clone() }).await.unwrap() {
            Err(UnknownLocation::Unchecked(unchecked, _)) => assert_eq!(unchecked, id),
            other => panic!("{:?}", other.map(|_| "an actor")),
        }
        match directory.send(Describe { id: id.clone() }).await.unwrap() {
            Err(UnknownLocation::Unchecked(unchecked, _)) => assert_eq!(unchecked, id),
            other => panic!("{other:?}"),
        }
        // A catalog city needs no Redis; a reading with coordinates registers its station
        // from them, as it does without Redis.
        assert!(directory.send(Resolve { id: LocationId::parse("5128581").unwrap() }).await.unwrap().is_ok());
        let refused = apply(&directory, vec![(0, reading("ELSEWHERE", true))], Vec::new()).await.unwrap();
        assert_eq!(refused, []);
        assert!(directory.send(Resolve { id }).await.unwrap().is_ok());
    }

    #[actix::test]
    async fn a_new_station_checked_before_kafka_is_known_here_at_once_and_one_without_coordinates_is_not() {
        let (directory, metrics) = start_directory();
        let readings = vec![
            (0, LocationId::parse("NEWPOST").unwrap(), None),
            (1, LocationId::parse("NEWPOST").unwrap(), Some((51.47, -0.45))),
            (2, LocationId::parse("NOFIX").unwrap(), None),
        ];
        let unroutable = directory.send(CheckRoutable { readings }).await.unwrap().unwrap();
        let refused: Vec<_> = unroutable.iter().map(|(i, e)| (*i, e.message.clone())).collect();
        assert_eq!(
            refused,
            [
                (0, needs_coordinates(&LocationId::parse("NEWPOST").unwrap()).message),
                (2, needs_coordinates(&LocationId::parse("NOFIX").unwrap()).message)
            ]
        );
        // Registered from its coordinates before its reading went anywhere (and written to
        // Redis, when there is one), without starting its actor.
        let station = directory.send(Describe { id: LocationId::parse("NEWPOST").unwrap() }).await.unwrap().unwrap();
        assert_eq!((station.country.as_str(), station.timezone.as_str()), ("GB", "Europe/London"));
        assert_eq!(metrics.locations_active.get(), 0);
        let nofix = directory.send(Describe { id: LocationId::parse("NOFIX").unwrap() }).await.unwrap();
        assert_eq!(nofix, Err(UnknownLocation::Unknown(LocationId::parse("NOFIX").unwrap())));
    }
}
