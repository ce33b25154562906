//! Pure analytics over readings and forecasts: no I/O, no actors, heavily unit-tested.

pub mod anomaly;
pub mod aqi;
pub mod blend;
pub mod consensus;
pub mod drift;
pub mod forecast;
pub mod history;
pub mod linalg;
pub mod residual;

pub use blend::{blend, with_learned};
pub use consensus::{ConsensusSettings, consensus};
