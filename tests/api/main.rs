//! Black-box tests through the public HTTP and WebSocket interface, against a server on
//! port 0 in this process (and, in `process`, the real binary).

pub mod anomalies;
mod auth;
mod dashboard;
mod deploy;
mod detect;
mod helpers;

#[cfg(feature = "failpoints")]
mod faults;
mod graphql;
mod kafka;
mod kafka_broker;
mod learned;
mod locations;
mod ops;
mod persistence;
mod process;
mod quantities;
mod readings;
mod resilience;
mod schema;
mod secrets;
mod servers;
mod upstream;
mod ws;
