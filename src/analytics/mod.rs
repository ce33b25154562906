//! Pure analytics over readings: no I/O, no actors, heavily unit-tested.

pub mod consensus;

pub use consensus::{ConsensusSettings, consensus};
