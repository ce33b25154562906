//! The embedded backend: snapshots kept in process memory. It lets passivated or
//! restarted location actors come back with their state when no Redis is configured;
//! it does not survive the process.

use std::collections::HashMap;
use std::sync::Arc;

use super::Snapshot;
use crate::domain::LocationId;

#[derive(Default)]
pub struct MemoryStore {
    snapshots: HashMap<LocationId, Arc<Snapshot>>,
}

impl MemoryStore {
    pub fn write(&mut self, batch: Vec<(LocationId, Arc<Snapshot>)>) -> usize {
        let n = batch.len();
        self.snapshots.extend(batch);
        n
    }

    pub fn snapshot(&self, id: &LocationId) -> Option<Arc<Snapshot>> {
        self.snapshots.get(id).cloned()
    }

    pub fn remove(&mut self, id: &LocationId) {
        self.snapshots.remove(id);
    }

    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }
}
