//! `RedisFeed`: the cross-instance live feed.
//!
//! Every instance publishes its updates on `isobar:updates:{id}` (the `RedisRelay` sink,
//! through the `Persister`). A location actor that follows other instances (see its
//! `Ownership`) sends `Follow` with its own recipient; updates published by *other*
//! instances (each message is tagged with its instance) are handed to it as
//! `RelayUpdate`. The subscription reconnects and resubscribes by itself when Redis goes
//! away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::actors::messages::{Follow, RelayUpdate, Unfollow};
use crate::domain::LocationId;
use crate::store::redis::updates_channel;

const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const CHANNEL_PREFIX: &str = "isobar:updates:";

pub struct RedisFeed {
    client: redis::Client,
    instance: Arc<str>,
    /// The followed locations, each with its actor.
    followed: HashMap<LocationId, Recipient<RelayUpdate>>,
    sink: Option<Arc<Mutex<PubSubSink>>>,
    /// Whether a reconnect was logged, so an outage logs once.
    reconnect_logged: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Connected {
    sink: PubSubSink,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Disconnected {
    error: Option<String>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Received {
    channel: String,
    payload: Vec<u8>,
}

impl RedisFeed {
    pub fn new(client: redis::Client, instance: Arc<str>) -> Self {
        Self { client, instance, followed: HashMap::new(), sink: None, reconnect_logged: false }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let pubsub = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => return me.do_send(Disconnected { error: Some(e.to_string()) }),
            };
            let (sink, mut stream) = pubsub.split();
            me.do_send(Connected { sink });
            while let Some(message) = stream.next().await {
                me.do_send(Received {
                    channel: message.get_channel_name().to_owned(),
                    payload: message.get_payload_bytes().to_vec(),
                });
            }
            me.do_send(Disconnected { error: None });
        });
    }

    fn change(&self, id: &LocationId, subscribe: bool, ctx: &mut Context<Self>) {
        let Some(sink) = self.sink.clone() else { return };
        let channel = updates_channel(id);
        ctx.spawn(
            async move {
                let mut sink = sink.lock().await;
                let result = if subscribe { sink.subscribe(&channel).await } else { sink.unsubscribe(&channel).await };
                if let Err(e) = result {
                    debug!(channel, error = %e, "feed subscription change failed; resubscribed on reconnect");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for RedisFeed {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
    }
}

impl Handler<Connected> for RedisFeed {
    type Result = ();

    fn handle(&mut self, msg: Connected, ctx: &mut Context<Self>) {
        if self.reconnect_logged {
            info!("live feed reconnected to Redis");
            self.reconnect_logged = false;
        }
        self.sink = Some(Arc::new(Mutex::new(msg.sink)));
        let ids: Vec<LocationId> = self.followed.keys().cloned().collect();
        for id in ids {
            self.change(&id, true, ctx);
        }
    }
}

impl Handler<Disconnected> for RedisFeed {
    type Result = ();

    fn handle(&mut self, msg: Disconnected, ctx: &mut Context<Self>) {
        self.sink = None;
        if !self.reconnect_logged {
            warn!(error = msg.error.as_deref().unwrap_or("connection closed"), "live feed lost Redis; reconnecting");
            self.reconnect_logged = true;
        }
        ctx.run_later(RECONNECT_DELAY, |act, ctx| act.connect(ctx));
    }
}

impl Handler<Received> for RedisFeed {
    type Result = ();

    fn handle(&mut self, msg: Received, _: &mut Context<Self>) {
        let Some(raw_id) = msg.channel.strip_prefix(CHANNEL_PREFIX) else { return };
        let Ok(id) = LocationId::parse(raw_id) else { return };
        let Ok(payload) = std::str::from_utf8(&msg.payload) else { return };
        let Some((instance, text)) = payload.split_once('\n') else { return };
        if instance == &*self.instance {
            return;
        }
        if let Some(relay) = self.followed.get(&id) {
            relay.do_send(RelayUpdate { text: text.to_owned().into() });
        }
    }
}

impl Handler<Follow> for RedisFeed {
    type Result = ();

    fn handle(&mut self, msg: Follow, ctx: &mut Context<Self>) {
        if self.followed.insert(msg.id.clone(), msg.relay).is_none() {
            self.change(&msg.id, true, ctx);
        }
    }
}

impl Handler<Unfollow> for RedisFeed {
    type Result = ();

    fn handle(&mut self, msg: Unfollow, ctx: &mut Context<Self>) {
        if self.followed.get(&msg.id) == Some(&msg.relay) {
            self.followed.remove(&msg.id);
            self.change(&msg.id, false, ctx);
        }
    }
}
