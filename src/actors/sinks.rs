//! Where a location's events go. Start-up picks the sinks once, by configuration (modes
//! by composition): the published /current views always, the Redis relay with Redis,
//! the InfluxDB history with InfluxDB, the Kafka updates producer with Kafka. Every
//! location actor hands each event to all of them, and to its own [`Subscribers`]. Each
//! sink encodes its own format; documents and wire messages are encoded once per event
//! and shared (see `core::events` and `actors::wire`).

use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;
use tracing::debug;

use crate::actors::messages::{Deliver, Payload};
use crate::actors::persister::{Durable, Publish, StoreAnomaly, StoreReadings};
use crate::actors::wire;
use crate::core::LocationEvent;
use crate::domain::LocationId;
use futures_util::future::BoxFuture;

/// Takes a location's events. Shared by every location actor, so `&self`; it must not
/// block (it runs on the location's thread).
pub trait EventSink: Send + Sync {
    fn deliver(&self, id: &LocationId, event: &LocationEvent);

    /// The location's actor stopped (passivated, handed over, restarting).
    fn stopped(&self, id: &LocationId) {
        let _ = id;
    }

    /// After a batch of readings was applied and its events delivered: a future that
    /// answers once what this sink was given is safe (durable), for sinks that keep
    /// readings; `None` for the others.
    fn barrier(&self) -> Option<Barrier> {
        None
    }
}

/// Answers once what a sink was given is durable, or why not.
pub type Barrier = BoxFuture<'static, Result<(), String>>;

/// The sinks of this instance, chosen at start-up.
pub type Sinks = Arc<[Arc<dyn EventSink>]>;

/// Publishes each update on the location's Redis channel for the other instances.
pub struct RedisRelay {
    pub persister: Recipient<Publish>,
}

impl EventSink for RedisRelay {
    fn deliver(&self, id: &LocationId, event: &LocationEvent) {
        if let LocationEvent::Update(update) = event {
            self.persister.do_send(Publish { id: id.clone(), text: wire::update_message(update).clone() });
        }
    }
}

/// Hands applied readings, consensus changes and anomalies to the persister for InfluxDB; its
/// barrier answers once they are written or synced to the spool.
pub struct History {
    pub persister: Recipient<StoreReadings>,
    pub anomalies: Recipient<StoreAnomaly>,
    pub durable: Recipient<Durable>,
}

impl EventSink for History {
    fn deliver(&self, _: &LocationId, event: &LocationEvent) {
        match event {
            LocationEvent::Applied(readings) => {
                self.persister.do_send(StoreReadings { readings: readings.clone(), consensus: None })
            }
            LocationEvent::Update(update) => {
                self.persister.do_send(StoreReadings { readings: Arc::new([]), consensus: Some(update.clone()) })
            }
            LocationEvent::Anomaly(update) => {
                let (location_id, anomaly) = (update.location_id.clone(), update.anomaly.clone());
                self.anomalies.do_send(StoreAnomaly { location_id, anomaly })
            }
            _ => {}
        }
    }

    fn barrier(&self) -> Option<Barrier> {
        let durable = self.durable.send(Durable { backend: "influxdb" });
        Some(Box::pin(async move { durable.await.unwrap_or_else(|_| Err("the persister stopped".into())) }))
    }
}

/// The WebSocket sessions subscribed to one location (each location actor has its own).
#[derive(Default)]
pub struct Subscribers {
    /// Each subscribed session, by session id.
    list: Vec<(u64, Recipient<Deliver>)>,
}

impl Subscribers {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds (or replaces) a session after sending it `snapshot`; true when it is the first.
    pub fn add(&mut self, session_id: u64, recipient: Recipient<Deliver>, snapshot: ByteString) -> bool {
        recipient.do_send(Deliver { payload: Payload::Text(snapshot) });
        self.list.retain(|(id, _)| *id != session_id);
        self.list.push((session_id, recipient));
        self.list.len() == 1
    }

    /// Removes a session; true when that left none.
    pub fn remove(&mut self, session_id: u64) -> bool {
        let before = self.list.len();
        self.list.retain(|(id, _)| *id != session_id);
        before > 0 && self.list.is_empty()
    }

    /// Sends what subscribers get of `event`; true when dropping slow ones left none.
    pub fn deliver(&mut self, event: &LocationEvent) -> bool {
        if self.list.is_empty() {
            return false;
        }
        match event {
            LocationEvent::Update(update) => self.send(wire::update_message(update)),
            LocationEvent::Forecast(forecast) => self.send(wire::forecast_message(forecast)),
            LocationEvent::Anomaly(anomaly) => self.send(wire::anomaly_message(anomaly)),
            LocationEvent::AirQuality(update) => self.send(wire::air_quality_message(update)),
            _ => false,
        }
    }

    /// Sends the same bytes to every subscriber and drops those that cannot keep up;
    /// true when that left none.
    pub fn send(&mut self, text: &ByteString) -> bool {
        let had_subscribers = !self.list.is_empty();
        self.list.retain(|(session, recipient)| {
            match recipient.try_send(Deliver { payload: Payload::Text(text.clone()) }) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    debug!(session, "subscriber mailbox full: dropping it");
                    recipient.do_send(Deliver { payload: Payload::Overflowed });
                    false
                }
                Err(SendError::Closed(_)) => false,
            }
        });
        had_subscribers && self.list.is_empty()
    }

    /// Tells every subscriber the location stopped, so each can subscribe again.
    pub fn stop(&mut self, id: &LocationId) {
        for (_, recipient) in self.list.drain(..) {
            recipient.do_send(Deliver { payload: Payload::LocationStopped(id.clone()) });
        }
    }
}
