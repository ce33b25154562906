//! `PublishedViews`: the read-optimized copy of every location's current conditions.
//!
//! A sink of every location actor: each actor alone writes its own entry (the update it
//! shows, whose document is serialized once and shared with its subscribers), and /current
//! reads it without messaging any actor. An entry is served only while younger than the
//! render TTL (ages and the stale flag move with time); after that the request goes to
//! the actor, which recomputes and publishes again. Sharded locks keep writers (one per
//! update) from contending with the many readers.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, RwLock};

use crate::actors::sinks::EventSink;
use crate::core::{LocationEvent, Update};
use crate::domain::LocationId;

const SHARDS: usize = 32;

pub struct PublishedViews {
    hasher: RandomState,
    shards: Vec<RwLock<HashMap<LocationId, Arc<Update>>>>,
}

impl Default for PublishedViews {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }
}

impl PublishedViews {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<LocationId, Arc<Update>>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub fn get(&self, id: &str) -> Option<Arc<Update>> {
        let shard = self.shard(id).read().unwrap_or_else(|p| p.into_inner());
        shard.get(id).cloned()
    }

    fn publish(&self, update: &Arc<Update>) {
        let key: &str = update.location_id.as_str();
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        shard.insert(update.location_id.clone(), update.clone());
    }

    fn remove(&self, id: &LocationId) {
        let key: &str = id.as_str();
        self.shard(key).write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventSink for PublishedViews {
    fn deliver(&self, _: &LocationId, event: &LocationEvent) {
        if let LocationEvent::Update(update) | LocationEvent::Refreshed(update) = event {
            self.publish(update);
        }
    }

    fn stopped(&self, id: &LocationId) {
        self.remove(id);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Current, LocationRef, Units, Values};

    /// An update of KJFK with `seq` and an empty document.
    pub(crate) fn update(seq: u64) -> Arc<Update> {
        let id = LocationId::parse("KJFK").unwrap();
        let location =
            LocationRef { id: id.clone(), name: "x".into(), latitude: 0.0, longitude: 0.0, timezone: "UTC".into() };
        let current = Current {
            location,
            observed_at: chrono::Utc::now(),
            units: Units::Metric,
            values: Values::EMPTY,
            weather_code: None,
            description: None,
            sources: Vec::new(),
            sources_count: 0,
            confidence: 0.7,
            quality_score: 0.0,
            stale: false,
            anomalies: Vec::new(),
            air_quality: None,
        };
        Arc::new(Update::new(id, seq, chrono::Utc::now(), current))
    }

    #[test]
    fn shows_updates_and_refreshes_by_str_and_forgets_stopped_locations() {
        let views = PublishedViews::default();
        let id = LocationId::parse("KJFK").unwrap();
        views.deliver(&id, &LocationEvent::Update(update(3)));
        assert_eq!(views.get("KJFK").unwrap().seq, 3);
        views.deliver(&id, &LocationEvent::Refreshed(update(4)));
        assert_eq!(views.get("KJFK").unwrap().seq, 4);
        assert!(views.get("KLGA").is_none());
        views.stopped(&id);
        assert!(views.is_empty());
    }
}
