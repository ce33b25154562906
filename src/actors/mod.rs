//! The actors of isobar (DESIGN §1) and the plain parts they share.
//!
//! - [`Directory`]: the registry of location actors; starts them on first use over one
//!   arbiter per core, and registers stations.
//! - [`LocationActor`]: the single writer of one location's state, a thin shell around
//!   its `LocationCore`; its events go to its WebSocket subscribers and the [`sinks`].
//! - [`Persister`]: batches snapshots and history to the storage backends.
//! - [`WsSession`]: one per WebSocket connection.
//! - [`SourcePoller`]: one per enabled upstream provider, generic over `sources::Provider`.
//! - [`ReplayFeeder`]: streams the bundled replay dataset as readings.
//! - [`RedisFeed`]: relays other instances' updates from Redis.
//! - [`KafkaIngest`]: consumes readings from Kafka ([`producers`] produce updates, as a
//!   sink, and the ingest path's readings).
//!
//! Not actors: [`ingest::Ingest`], the one way readings come in; [`sinks`] and
//! [`views::PublishedViews`], where events go; [`wire`], the WebSocket messages;
//! [`messages`], what actors of different modules send each other (through
//! `Recipient`s, so no actor module imports another in a circle).

pub mod demand;
pub mod directory;
pub mod feed;
pub mod forecaster;
pub mod ingest;
pub mod kafka;
pub mod location;
pub mod messages;
pub mod persister;
pub mod poller;
pub mod producers;
pub mod replay;
pub mod session;
pub mod sinks;
pub mod views;
pub mod wire;

pub use directory::Directory;
pub use feed::RedisFeed;
pub use kafka::KafkaIngest;
pub use location::LocationActor;
pub use persister::Persister;
pub use poller::SourcePoller;
pub use replay::ReplayFeeder;
pub use session::WsSession;
