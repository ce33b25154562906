//! Sources of readings: request building and response parsing, no I/O state.
//!
//! Today the bundled replay dataset; upstream providers (Open-Meteo, MET Norway, NWS,
//! OpenWeatherMap) join as one module each.

pub mod replay;
