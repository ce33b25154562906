//! Messages that would otherwise make two actor modules import each other (a location
//! actor and the pollers, the Redis feed, the sessions), declared once here: each side
//! holds `Recipient`s of these (the actix chat example's style). Requests an actor
//! answers as its API (the Directory's `Resolve`, a location's `IngestBatch`, the
//! persister's writes) live with that actor; its callers import it, never the reverse.

use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use crate::domain::{AirReport, ForecastRun, Location, LocationId, SourceName};

/// What a location actor sends to a subscribed WebSocket session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub payload: Payload,
}

pub enum Payload {
    /// A serialized snapshot or update, shared by every subscriber.
    Text(ByteString),
    /// This session's mailbox was full: it has been unsubscribed and must close (1013).
    Overflowed,
    /// The location actor stopped (passivated or restarted): subscribe again.
    LocationStopped(LocationId),
}

/// A location actor started: poll its location and report to `reports`. Sent by the
/// `LocationActor` to every `SourcePoller` (again after a restart).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub location: Arc<Location>,
    /// Which run of the location's actor this is, so that a late `Untrack` of an earlier
    /// run does not stop the polling of a later one.
    pub run: u64,
    pub reports: Recipient<ProviderReport>,
}

/// A location actor stopped: stop polling its location. Sent by the `LocationActor`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Untrack {
    pub id: LocationId,
    pub run: u64,
}

/// What a provider's last refresh of a location brought besides readings (which go the
/// one ingest way): its forecast run, an air-quality provider's report, and whether the
/// refresh worked. A failing source
/// stops counting as fresh. Sent by a `SourcePoller` to the tracking `LocationActor`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProviderReport {
    pub source: SourceName,
    pub forecast: Option<ForecastRun>,
    pub air: Option<AirReport>,
    /// Why the refresh failed; `None` when it worked.
    pub error: Option<String>,
}

/// Relay other instances' updates of `id` to `relay` from now on. Sent by a
/// `LocationActor` to the `RedisFeed`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Follow {
    pub id: LocationId,
    pub relay: Recipient<RelayUpdate>,
}

/// Stop relaying `id` to `relay` (a later actor of the same location may follow it
/// already). Sent by a `LocationActor` when it no longer follows (or stops).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unfollow {
    pub id: LocationId,
    pub relay: Recipient<RelayUpdate>,
}

/// An update another instance published, as its wire message. Sent by the `RedisFeed` to
/// the following `LocationActor`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayUpdate {
    pub text: ByteString,
}
