//! What the `LocationActor` is asked and told, each with who sends it and when.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::LocationActor;
use crate::actors::messages::Deliver;
use crate::core::Update;
use crate::domain::{AirReport, Anomaly, Forecast, LocationId, Reading};

/// Readings for this location, already validated. Sent by the ingest path, which waits
/// for the answer: `Ok` once they are in the location's state and every sink that keeps
/// readings has them safe (InfluxDB, or its synced spool).
#[derive(Message)]
#[rtype(result = "Result<(), IngestFailure>")]
pub struct IngestBatch {
    pub readings: Vec<Reading>,
}

/// Why an `IngestBatch` is not safe.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestFailure {
    /// Applying panicked and the actor is restarting from its last state: these
    /// readings were not applied (send them again).
    Unapplied(Unapplied),
    /// Applied, but not stored durably (the spool refuses writes); a repeat is dropped
    /// as a duplicate once it is.
    NotStored(String),
}

/// The readings of a batch a location actor did not apply: it panicked and is restarting.
#[derive(Debug, Clone, PartialEq)]
pub struct Unapplied {
    pub readings: Vec<Reading>,
}

/// A location actor panicked while handling a message and is restarting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the location restarted while handling it")]
pub struct Restarting;

/// The consensus on show (metric; `Update::body` renders it in any units); `None` while
/// no source has reported, after waiting up to `wait` for the first data. Sent by
/// /current.
#[derive(Message)]
#[rtype(result = "Option<Arc<Update>>")]
pub struct GetCurrent {
    pub wait: Option<Duration>,
}

/// The blended forecast (metric, every hour held); `None` while no provider has sent
/// one, after waiting up to `wait`. Sent by /forecast.
#[derive(Message)]
#[rtype(result = "Option<Arc<Forecast>>")]
pub struct GetForecast {
    pub wait: Option<Duration>,
}

/// The learned models' runs for this location. Sent by the forecaster at every
/// completed hour and after each training.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyLearned(pub crate::domain::Learned);

/// Stored readings with `from <= observed_at <= to`, oldest first. Sent by /history.
#[derive(Message)]
#[rtype(result = "Vec<Reading>")]
pub struct GetHistory {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The latest report of each air-quality provider. Sent by /air-quality.
#[derive(Message)]
#[rtype(result = "Vec<Arc<AirReport>>")]
pub struct GetAirReports;

/// Recent anomalies that started in [from, to], oldest first. Sent by /anomalies when
/// InfluxDB does not keep them.
#[derive(Message)]
#[rtype(result = "Vec<Anomaly>")]
pub struct GetAnomalies {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Sent by a `WsSession`: deliver a snapshot now, then every update.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub session_id: u64,
    pub recipient: Recipient<Deliver>,
    /// The last `seq` the client saw of this location (a resume after a reconnect).
    pub since: Option<u64>,
}

/// Sent by a `WsSession` that no longer follows this location (or is closing).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session_id: u64,
}

/// Sent by an idle `LocationActor` that has no subscribers, to the `Directory`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestPassivation {
    pub id: LocationId,
    pub addr: Addr<LocationActor>,
}

/// Sent by the `Directory` after it forgot this actor: save and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Passivate;

/// Sent at shutdown: hand the current snapshot to the persister now (if it changed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint;

/// Sent by the `Directory` when another instance takes this location over (its Kafka
/// partition moved): the latest state goes to the persister before the answer, then the
/// actor stops without writing again, so a late write can never overwrite the new
/// owner's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandOver;

/// Sent by the ingest path before the first readings of a location this instance just
/// took over: an actor that applied nothing itself restores from the store again, since
/// the previous owner may have changed the location after this one started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt;

/// Stops the actor from the inside, as an unrecoverable error would: its supervisor
/// restarts it and it restores from the store. For operators and tests exercising
/// supervision.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;
