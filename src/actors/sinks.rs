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
    /// The `seq` of the last state every subscriber was told (a snapshot on subscribing,
    /// then each update): an update that does not follow it (the actor restored a newer
    /// state from the store, or a new owner's history went back) goes out as a snapshot
    /// saying so, never as an update with a silent gap.
    told: Option<u64>,
}

impl Subscribers {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds (or replaces) a session after sending it `snapshot`, which shows the state of
    /// `seq`; true when it is the first.
    pub fn add(&mut self, session_id: u64, recipient: Recipient<Deliver>, snapshot: ByteString, seq: u64) -> bool {
        recipient.do_send(Deliver { payload: Payload::Text(snapshot) });
        // Those already subscribed were told what they were told: a state that moved on
        // since (restored, not updated) reaches them as a snapshot with the next update.
        if self.list.is_empty() {
            self.told = Some(seq);
        }
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
            LocationEvent::Update(update) => {
                let told = self.told.replace(update.seq);
                match told {
                    Some(told) if update.seq == told => false,
                    Some(told) if update.seq != told + 1 => {
                        self.send(&wire::snapshot_message(&update.location_id, Some(update), Some(told)))
                    }
                    _ => self.send(wire::update_message(update)),
                }
            }
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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::actors::views::tests::update;

    /// Keeps the text of every message delivered to it.
    pub(crate) struct Collector(pub(crate) Arc<Mutex<Vec<String>>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Collector {
        type Result = ();

        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            if let Payload::Text(text) = msg.payload {
                self.0.lock().unwrap().push(text.to_string());
            }
        }
    }

    #[actix_rt::test]
    async fn an_update_that_does_not_follow_what_subscribers_were_told_goes_out_as_a_snapshot_saying_so() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut subscribers = Subscribers::default();
        subscribers.add(1, Collector(seen.clone()).start().recipient(), "the snapshot of 5".into(), 5);
        for seq in [6, 6, 9, 10, 2] {
            subscribers.deliver(&LocationEvent::Update(update(seq)));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let seen = seen.lock().unwrap().clone();
        let told: Vec<serde_json::Value> = seen[1..].iter().map(|t| serde_json::from_str(t).unwrap()).collect();
        let summary: Vec<_> = told
            .iter()
            .map(|m| (m["type"].as_str().unwrap(), m["seq"].as_u64(), m["missed"].as_u64(), m["reset"].as_bool()))
            .collect();
        assert_eq!(
            summary,
            [
                // 6 follows 5; told 6 again: nothing.
                ("update", Some(6), None, None),
                // 7 and 8 never came (a newer state restored from the store): said.
                ("snapshot", Some(9), Some(3), None),
                ("update", Some(10), None, None),
                // A history that went back (a new owner from an older snapshot): said.
                ("snapshot", Some(2), None, Some(true)),
            ]
        );
    }
}
