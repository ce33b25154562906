//! `Demand`: when each location was last asked for (REST reads, WebSocket
//! subscriptions). The pollers poll the `sources.max_active_locations` most recently
//! asked-for locations and let the rest rest, so reads of ever more cities cannot drive
//! upstream traffic without bound.
//!
//! Touching is on the read path: a read lock and a clock read, and a write at most once a
//! second per location.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::domain::LocationId;

const SHARDS: usize = 16;
/// A touch within this of the last one is not recorded again.
const RESOLUTION: Duration = Duration::from_secs(1);

pub struct Demand {
    hasher: RandomState,
    shards: Vec<RwLock<HashMap<LocationId, Instant>>>,
}

impl Default for Demand {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }
}

impl Demand {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<LocationId, Instant>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// `id` was asked for now.
    pub fn touch(&self, id: &LocationId) {
        let key: &str = id.as_str();
        let shard = self.shard(key);
        let now = Instant::now();
        let recent =
            shard.read().unwrap_or_else(PoisonError::into_inner).get(key).is_some_and(|t| now - *t < RESOLUTION);
        if !recent {
            shard.write().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), now);
        }
    }

    /// When `id` was last asked for, if it was.
    pub fn last(&self, id: &LocationId) -> Option<Instant> {
        let key: &str = id.as_str();
        self.shard(key).read().unwrap_or_else(PoisonError::into_inner).get(key).copied()
    }

    /// Forgets locations not asked for within `age`.
    pub fn forget_older_than(&self, age: Duration) {
        let now = Instant::now();
        for shard in &self.shards {
            shard.write().unwrap_or_else(PoisonError::into_inner).retain(|_, t| now - *t < age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_is_remembered_until_it_is_old() {
        let demand = Demand::default();
        let id = LocationId::parse("KJFK").unwrap();
        assert_eq!(demand.last(&id), None);
        demand.touch(&id);
        let first = demand.last(&id).unwrap();
        demand.touch(&id);
        assert_eq!(demand.last(&id), Some(first), "within a second: not written again");
        demand.forget_older_than(Duration::from_secs(60));
        assert!(demand.last(&id).is_some());
        demand.forget_older_than(Duration::ZERO);
        assert_eq!(demand.last(&id), None);
    }
}
