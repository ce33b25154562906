//! The actors of isobar (DESIGN §1).
//!
//! - [`Directory`]: resolves location ids to `LocationActor`s, starting them on first use
//!   over one arbiter per core, and keeps the registry of stations.
//! - [`LocationActor`]: the single writer of one location's state.
//! - [`Persister`]: batches snapshots to the storage backends.
//! - [`WsSession`]: one per WebSocket connection.
//! - [`ReplayFeeder`]: streams the bundled replay dataset as readings.
//! - [`SourcePoller`]: one per upstream provider.
//! - [`RedisFeed`]: relays other instances' updates from Redis.
//! - [`KafkaIngest`]: consumes readings from Kafka (and `kafka::UpdatesProducer` produces updates).

pub mod directory;
pub mod feed;
pub mod kafka;
pub mod location;
pub mod persister;
pub mod poller;
pub mod replay;
pub mod session;

pub use directory::Directory;
pub use feed::RedisFeed;
pub use kafka::KafkaIngest;
pub use location::LocationActor;
pub use persister::Persister;
pub use poller::SourcePoller;
pub use replay::ReplayFeeder;
pub use session::WsSession;
