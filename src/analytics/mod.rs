//! Pure analytics over readings and forecasts: no I/O, no actors, heavily unit-tested.

pub mod anomaly;
pub mod blend;
pub mod consensus;
pub mod drift;
pub mod forecast;
pub mod history;
pub mod residual;

pub use blend::blend;
pub use consensus::{ConsensusSettings, consensus};
