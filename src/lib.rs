//! isobar: a self-hosted real-time weather data service.
//!
//! # Layout
//!
//! Dependencies point one way (DESIGN §4): `domain` ← `analytics` ← `core`;
//! `domain` ← `catalog`, `sources`, `store`; all of those ← `actors` ← `service` ←
//! `http` ← `startup`/`main`. No two files import each other in a circle.
//!
//! - [`domain`]: location ids, locations, readings (parsed once at the edge), the
//!   quantity table (`domain::quantity`: one row per quantity, read by parsing,
//!   validation, consensus, units, the codecs and the OpenAPI schema), units, the
//!   current-conditions and forecast documents. No I/O.
//! - [`analytics`]: consensus across sources, forecast blending, history downsampling
//!   (pure functions).
//! - [`core`]: `LocationCore`, one location's state and rules with no actors and no
//!   I/O: it returns typed events (`Update`, `Refreshed`, `Applied`, `Forecast`) and is
//!   where per-location analyses plug in (`core::Analysis`).
//! - [`catalog`]: the bundled GeoNames city catalog and the registered stations:
//!   lookup, one ranked search over both, nearest city.
//! - [`sources`]: one folder per upstream provider (request building, parsing, a
//!   `Provider` implementation), the shared upstream HTTP client, the replay dataset.
//! - [`store`]: Redis, InfluxDB, memory and the spool: plain clients, no actors.
//! - [`actors`]: `Directory` (the registry of location actors), `LocationActor` (a thin
//!   shell over its core, handing events to its sinks), `Persister`, `WsSession`,
//!   `SourcePoller<P>`, `ReplayFeeder`, `RedisFeed`, `KafkaIngest`; the one ingest path,
//!   the sinks, the published views and the wire messages.
//! - [`service`]: what every API asks of isobar (search, location, current, forecast,
//!   history, submitting readings, readiness); REST handlers call it.
//! - [`http`]: routes, problem+json errors, WebSocket endpoints, OpenAPI document.
//! - [`growth`]: how the queues each location keeps grow (by a quarter, not doubled).
//! - [`config`]: the settings tree; each component receives its own slice.
//! - [`telemetry`]: tracing set-up and the Prometheus metrics every component reports to.
//! - [`startup`]: chooses the sinks and ownership from the configuration, wires actors,
//!   the service and the HTTP server together, and shuts them down gracefully.

pub mod actors;
pub mod analytics;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod core;
pub mod domain;
#[cfg(test)]
mod fuzz;
pub mod growth;
pub mod http;
pub mod observations;
pub mod service;
pub mod sources;
pub mod startup;
pub mod store;
pub mod telemetry;
