//! Storage backends behind the `Persister`: plain async clients, no actors.
//!
//! - [`memory`]: snapshots in process memory (always on; the embedded default).
//! - [`redis`]: latest state per location and the cross-instance live feed.
//! - [`influx`]: reading and consensus history.
//! - [`queue`]: the bounded, disk-spilling write queue in front of each backend.
//! - [`codec`]: stored forms of snapshots and readings.

pub mod codec;
pub mod influx;
pub mod memory;
pub mod queue;
pub mod redis;

use crate::domain::{LocationId, Reading};

pub use memory::MemoryStore;

/// What a location actor needs to come back after a restart, a passivation or (with a
/// durable backend) a process restart: its recent readings and update sequence. The
/// consensus is derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub location_id: LocationId,
    /// Recent readings, oldest first.
    pub readings: Vec<Reading>,
    /// The readings that were each source's latest (may be older than `readings` holds).
    pub latest: Vec<Reading>,
    /// Sequence number of the last update sent to subscribers.
    pub seq: u64,
}

/// A backend failed; the message names what and why, for logs and /ready.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("influxdb: {0}")]
    Influx(String),
    #[error("spool: {0}")]
    Spool(String),
}
