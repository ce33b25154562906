//! Who else may show a location, chosen once at start-up from the configuration.
//!
//! - Alone: no Redis; every instance keeps its own state and nobody relays.
//! - Relay: Redis without Kafka; every instance still keeps its own state, and a location
//!   with local subscribers relays the other instances' updates to them.
//! - Partitioned: Kafka and Redis; a location belongs to the instance that owns its
//!   partition. Every actor follows the owner's updates for its whole life, shows them
//!   when newer than its own, and catches up from the store a little after it starts.

use std::time::Duration;

use actix::prelude::*;

use crate::actors::messages::{Follow, RelayUpdate, Unfollow};
use crate::domain::LocationId;

#[derive(Clone)]
pub enum Ownership {
    Alone,
    Relay(Feed),
    Partitioned {
        feed: Feed,
        /// When an actor restores again, to take up a change it did not follow yet.
        catch_up: Duration,
    },
}

/// The cross-instance live feed (the `RedisFeed`).
#[derive(Clone)]
pub struct Feed {
    pub follow: Recipient<Follow>,
    pub unfollow: Recipient<Unfollow>,
}

impl Feed {
    /// Starts or stops relaying other instances' updates of `id` to `relay`.
    pub fn set(&self, id: &LocationId, on: bool, relay: Recipient<RelayUpdate>) {
        if on {
            self.follow.do_send(Follow { id: id.clone(), relay });
        } else {
            self.unfollow.do_send(Unfollow { id: id.clone(), relay });
        }
    }
}

impl Ownership {
    pub fn feed(&self) -> Option<&Feed> {
        match self {
            Self::Alone => None,
            Self::Relay(feed) | Self::Partitioned { feed, .. } => Some(feed),
        }
    }

    /// Whether an actor follows the feed while it has subscribers (and only then).
    pub fn relays(&self) -> bool {
        matches!(self, Self::Relay(_))
    }

    /// Whether another instance's update may become this actor's view.
    pub fn adopts_remote_updates(&self) -> bool {
        matches!(self, Self::Partitioned { .. })
    }
}
