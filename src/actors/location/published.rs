//! `PublishedViews`: the read-optimized copy of every location's current conditions.
//!
//! Each `LocationActor` alone writes its entry, with the bytes it already serialized for
//! its subscribers; /current reads it without messaging any actor. An entry is served only
//! while younger than the render TTL (ages and the stale flag move with time); after that
//! the request goes to the actor, which recomputes and publishes again. Sharded locks keep
//! writers (one per update) from contending with the many readers.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytestring::ByteString;
use chrono::{DateTime, Utc};

use crate::domain::LocationId;

const SHARDS: usize = 32;

/// What /current answers in metric units for one location.
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    pub changed_at: DateTime<Utc>,
    pub body: ByteString,
    pub computed_at: Instant,
}

pub struct PublishedViews {
    hasher: RandomState,
    shards: Vec<RwLock<HashMap<LocationId, Arc<Published>>>>,
}

impl Default for PublishedViews {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }
}

impl PublishedViews {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<LocationId, Arc<Published>>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub fn get(&self, id: &str) -> Option<Arc<Published>> {
        let shard = self.shard(id).read().unwrap_or_else(|p| p.into_inner());
        shard.get(id).cloned()
    }

    pub fn publish(&self, id: &LocationId, view: Published) {
        let key: &str = id.borrow();
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        shard.insert(id.clone(), Arc::new(view));
    }

    pub fn remove(&self, id: &LocationId) {
        let key: &str = id.borrow();
        self.shard(key).write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_reads_by_str_and_removes() {
        let views = PublishedViews::default();
        let id = LocationId::parse("KJFK").unwrap();
        views
            .publish(&id, Published { seq: 3, changed_at: Utc::now(), body: "{}".into(), computed_at: Instant::now() });
        assert_eq!(views.get("KJFK").unwrap().seq, 3);
        assert!(views.get("KLGA").is_none());
        views.remove(&id);
        assert!(views.is_empty());
    }
}
