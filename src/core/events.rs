//! What a [`LocationCore`](super::LocationCore) tells the world: typed events, no wire
//! formats.
//!
//! Each event is shared (`Arc`) by every sink it goes to. A document is serialized the
//! first time a sink asks for it and kept in the event, so however many subscribers,
//! relays and views take an update, its JSON is built once; the same holds for the wire
//! message a sink builds around it (`message`, filled by the first sink that sends it)
//! and for the HTTP validators /current sends with it (`validators`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytestring::ByteString;
use chrono::{DateTime, Utc};

use crate::analytics::aqi::AirQuality;
use crate::domain::{Anomaly, Current, Forecast, LocationId, Reading, Units};

/// One thing that happened to a location.
#[derive(Debug, Clone)]
pub enum LocationEvent {
    /// The consensus changed (`seq` moved on): subscribers, other instances, Kafka, the
    /// /current view and the history all take it.
    Update(Arc<Update>),
    /// The same `seq` shown anew: ages and the stale flag recomputed as time passed, or
    /// a state restored from the store, or another instance's update. Only the /current
    /// view takes it.
    Refreshed(Arc<Update>),
    /// Readings applied to the location, in arrival order (only when a sink keeps them).
    Applied(Arc<[Reading]>),
    /// The blended forecast changed.
    Forecast(Arc<ForecastUpdate>),
    /// An anomaly started or ended: subscribers, Kafka, the metrics and the anomaly
    /// history take it.
    Anomaly(Arc<AnomalyUpdate>),
    /// The air quality's category changed, or a new hour of pollutants came: subscribers
    /// take it.
    AirQuality(Arc<AirQualityUpdate>),
}

/// The air quality of a location now.
#[derive(Debug)]
pub struct AirQualityUpdate {
    pub location_id: LocationId,
    pub air_quality: AirQuality,
    /// The wire message, encoded by the first sink that sends it.
    pub message: OnceLock<ByteString>,
}

/// The consensus of one `seq`.
#[derive(Debug)]
pub struct Update {
    pub location_id: LocationId,
    pub seq: u64,
    /// Wall-clock time of the change that produced `seq` (Last-Modified).
    pub changed_at: DateTime<Utc>,
    /// When `current` was computed: its ages are this old.
    pub computed_at: Instant,
    /// Metric.
    pub current: Current,
    metric: OnceLock<ByteString>,
    imperial: OnceLock<ByteString>,
    /// A hash of the conditions (not of what moves with the clock): equal conditions give
    /// an equal version, in any instance and after any restart; different ones never
    /// share one, even when a restarted instance counts `seq` from 1 again.
    version: OnceLock<u64>,
    /// The update's wire message, encoded by the first sink that sends it and reused by
    /// every other.
    pub message: OnceLock<ByteString>,
    /// The document's HTTP validators, made by the first /current request that shows
    /// this update and reused by every other.
    pub validators: OnceLock<Validators>,
}

/// An update's ETag per unit system and its Last-Modified: the headers' text.
#[derive(Debug)]
pub struct Validators {
    pub metric_etag: ByteString,
    pub imperial_etag: ByteString,
    pub last_modified: ByteString,
}

impl Update {
    pub fn new(location_id: LocationId, seq: u64, changed_at: DateTime<Utc>, current: Current) -> Self {
        Self {
            location_id,
            seq,
            changed_at,
            computed_at: Instant::now(),
            current,
            metric: OnceLock::new(),
            imperial: OnceLock::new(),
            version: OnceLock::new(),
            message: OnceLock::new(),
            validators: OnceLock::new(),
        }
    }

    /// The version of these conditions, for HTTP validators (ETag).
    pub fn version(&self) -> u64 {
        *self.version.get_or_init(|| super::conditions_hash(&self.current))
    }

    /// The current-conditions document in `units`, serialized once per unit system.
    pub fn body(&self, units: Units) -> &ByteString {
        match units {
            Units::Metric => self.metric.get_or_init(|| to_json(&self.current)),
            Units::Imperial => self.imperial.get_or_init(|| to_json(&self.current.in_units(Units::Imperial))),
        }
    }
}

/// A changed forecast blend.
#[derive(Debug)]
pub struct ForecastUpdate {
    pub location_id: LocationId,
    /// Metric, every hour held.
    pub forecast: Arc<Forecast>,
    /// The wire message, encoded by the first sink that sends it.
    pub message: OnceLock<ByteString>,
}

impl ForecastUpdate {
    pub fn new(location_id: LocationId, forecast: Arc<Forecast>) -> Self {
        Self { location_id, forecast, message: OnceLock::new() }
    }
}

/// Whether an anomaly starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyState {
    Started,
    Ended,
}

/// An anomaly that started or ended.
#[derive(Debug)]
pub struct AnomalyUpdate {
    pub location_id: LocationId,
    pub state: AnomalyState,
    /// Metric.
    pub anomaly: Anomaly,
    /// The wire message, encoded by the first sink that sends it.
    pub message: OnceLock<ByteString>,
}

impl AnomalyUpdate {
    pub fn new(location_id: LocationId, state: AnomalyState, anomaly: Anomaly) -> Self {
        Self { location_id, state, anomaly, message: OnceLock::new() }
    }
}

/// JSON of a document made of plain numbers and strings, which cannot fail to serialize.
fn to_json(value: &impl serde::Serialize) -> ByteString {
    ByteString::from(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
}
