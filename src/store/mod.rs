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

/// Snapshots are the core's; the store keeps them.
pub use crate::core::Snapshot;
pub use memory::MemoryStore;

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
