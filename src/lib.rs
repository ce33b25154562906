//! isobar: a self-hosted real-time weather data service.
//!
//! # Layout
//!
//! Dependencies point one way (DESIGN §4): `domain` ← `analytics`, `catalog`, `sources`,
//! `store` ← `actors` ← `http` ← `startup`.
//!
//! - [`domain`]: location ids, locations, readings (parsed once at the edge), units and the
//!   current-conditions document. No I/O.
//! - [`analytics`]: consensus across sources (pure functions).
//! - [`catalog`]: the bundled GeoNames city catalog: lookup, prefix search, nearest.
//! - [`sources`]: turning upstream data (the bundled replay dataset) into readings.
//! - [`store`]: storage backends behind the persister (in-memory today).
//! - [`actors`]: `Directory`, `LocationActor`, `Persister`, `WsSession`, `ReplayFeeder`.
//! - [`http`]: routes, problem+json errors, WebSocket endpoints, OpenAPI document.
//! - [`config`]: the settings tree; each component receives its own slice.
//! - [`telemetry`]: tracing set-up and the Prometheus metrics every component reports to.
//! - [`startup`]: wires actors and the HTTP server together and shuts them down gracefully.

pub mod actors;
pub mod analytics;
pub mod catalog;
pub mod config;
pub mod core;
pub mod domain;
pub mod http;
pub mod service;
pub mod sources;
pub mod startup;
pub mod store;
pub mod telemetry;
