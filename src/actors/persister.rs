//! `Persister`: the one actor that talks to storage backends.
//!
//! Location actors hand it snapshots (`SaveSnapshot`, fire-and-forget) and ask for them
//! back when they start (`LoadSnapshot`). Writes for the same location within one flush
//! interval coalesce into one, and a flush hands a whole batch to the backend, so a busy
//! location costs the store one write per interval. Reads see pending writes first, so
//! a location restarted right after saving gets what it saved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::config::PersistSettings;
use crate::domain::LocationId;
use crate::store::{MemoryStore, Snapshot};

pub struct Persister {
    /// Written on every flush; answers loads.
    memory: MemoryStore,
    /// Snapshots received since the last flush, latest per location.
    pending: HashMap<LocationId, Arc<Snapshot>>,
    flush_interval: Duration,
}

/// Sent by a `LocationActor` when its state changed (at most once per snapshot interval)
/// and when it stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot {
    pub snapshot: Arc<Snapshot>,
}

/// Sent by a `LocationActor` as it starts, to restore its state.
#[derive(Message)]
#[rtype(result = "Option<Arc<Snapshot>>")]
pub struct LoadSnapshot {
    pub location_id: LocationId,
}

/// Sent by start-up on shutdown (and by /ready as a liveness probe): writes everything
/// pending now and answers how many snapshots were written.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush;

impl Persister {
    pub fn new(settings: &PersistSettings) -> Self {
        Self {
            memory: MemoryStore::default(),
            pending: HashMap::new(),
            flush_interval: Duration::from_millis(settings.flush_interval_ms.max(1)),
        }
    }

    fn flush(&mut self) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        self.memory.write(self.pending.drain().collect())
    }
}

impl Actor for Persister {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.flush_interval, |act, _| {
            act.flush();
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.flush();
        Running::Stop
    }
}

impl Handler<SaveSnapshot> for Persister {
    type Result = ();

    fn handle(&mut self, msg: SaveSnapshot, _: &mut Context<Self>) {
        self.pending.insert(msg.snapshot.location_id.clone(), msg.snapshot);
    }
}

impl Handler<LoadSnapshot> for Persister {
    type Result = Option<Arc<Snapshot>>;

    fn handle(&mut self, msg: LoadSnapshot, _: &mut Context<Self>) -> Self::Result {
        self.pending.get(&msg.location_id).cloned().or_else(|| self.memory.snapshot(&msg.location_id))
    }
}

impl Handler<Flush> for Persister {
    type Result = usize;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> usize {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, seq: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            location_id: LocationId::parse(id).unwrap(),
            readings: Vec::new(),
            latest: Vec::new(),
            seq,
        })
    }

    #[actix::test]
    async fn a_saved_snapshot_loads_before_and_after_a_flush_and_writes_coalesce() {
        let p = Persister::new(&PersistSettings { flush_interval_ms: 3_600_000, snapshot_interval_ms: 1000 }).start();
        p.do_send(SaveSnapshot { snapshot: snapshot("KJFK", 1) });
        p.do_send(SaveSnapshot { snapshot: snapshot("KJFK", 2) });
        p.do_send(SaveSnapshot { snapshot: snapshot("KLGA", 7) });
        let id = LocationId::parse("KJFK").unwrap();
        let loaded = p.send(LoadSnapshot { location_id: id.clone() }).await.unwrap().unwrap();
        assert_eq!(loaded.seq, 2);
        assert_eq!(p.send(Flush).await.unwrap(), 2);
        assert_eq!(p.send(Flush).await.unwrap(), 0);
        assert_eq!(p.send(LoadSnapshot { location_id: id }).await.unwrap().unwrap().seq, 2);
        let unknown = LocationId::parse("EGLL").unwrap();
        assert_eq!(p.send(LoadSnapshot { location_id: unknown }).await.unwrap(), None);
    }
}
