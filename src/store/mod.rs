//! Storage backends behind the `Persister`: plain clients, no actors.
//!
//! Today the embedded in-memory backend; Redis (latest state) and InfluxDB (history) plug
//! in beside it and receive the same batches.

pub mod memory;

use std::sync::Arc;

use crate::domain::{LocationId, Reading};

pub use memory::MemoryStore;

/// What a location actor needs to come back after a restart, a passivation or (with a
/// durable backend) a process restart: its recent readings and update sequence. The
/// latest reading per source and the consensus are derived from these.
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

/// One batch of writes handed from the persister to a backend.
pub type SnapshotBatch = Vec<(LocationId, Arc<Snapshot>)>;
