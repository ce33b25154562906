//! How a `LocationActor` reads its stored state: once as it starts (holding its mailbox),
//! again while the store cannot be read (with a backoff, applying readings meanwhile and
//! merging them into what it finally reads), and to catch up with another instance's
//! snapshot. Until the first read succeeds (or the store says it holds nothing) the actor
//! writes no snapshot; then it takes an owner epoch above the one it read, which the
//! store's fence compares.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tracing::{debug, info, warn};

use super::LocationActor;
use crate::actors::persister::LoadSnapshot;
use crate::core::Snapshot;

impl LocationActor {
    /// Restores from the store; with `newer_than`, only a snapshot newer than that and
    /// only while this actor applied nothing itself. The first read of a run holds the
    /// mailbox; while the store cannot be read the actor works on and tries again with
    /// a backoff, then merges what it applied meanwhile into the stored state.
    pub(super) fn restore(&mut self, newer_than: Option<u64>, ctx: &mut Context<Self>) {
        let load = self.deps.persister.send(LoadSnapshot { location_id: self.location.id.clone() });
        let first = !self.restored && self.restore_failures == 0 && newer_than.is_none();
        let handle = load.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Ok(found)) => act.restored_from(found, newer_than, ctx),
            Ok(Err(error)) if newer_than.is_none() && !act.restored => act.restore_later(error.to_string(), ctx),
            Ok(Err(error)) => debug!(location = %act.location.id, %error, "cannot catch up from the store"),
            Err(error) => warn!(location = %act.location.id, %error, "persister unavailable"),
        });
        if first {
            ctx.wait(handle);
        } else {
            ctx.spawn(handle);
        }
    }

    fn restored_from(&mut self, found: Option<Arc<Snapshot>>, newer_than: Option<u64>, ctx: &mut Context<Self>) {
        if let Some(snapshot) = &found
            && !newer_than.is_some_and(|seq| snapshot.seq <= seq || self.core.is_dirty())
            && let Ok(event) = self.guarded("restore", ctx, |act| act.core.restore(snapshot, Utc::now()))
        {
            self.emit(event, ctx);
        }
        if self.restore_failures > 0 {
            info!(location = %self.location.id, "read the store after {} failed attempts", self.restore_failures);
        }
        self.restored = true;
        self.restore_failures = 0;
        // This run writes under an epoch above any it read: the store refuses older ones.
        let stored = found.map_or(0, |s| s.epoch);
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        self.core.set_epoch(now_ms.max(stored + 1).max(self.core.epoch()));
    }

    fn restore_later(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.restore_failures == 0 {
            warn!(location = %self.location.id, %error, "cannot read the stored state; applying readings meanwhile and trying again");
        }
        self.restore_failures += 1;
        let delay = Duration::from_millis(200 * (1u64 << self.restore_failures.min(5))).min(Duration::from_secs(5));
        ctx.run_later(delay, |act, ctx| act.restore(None, ctx));
    }
}
