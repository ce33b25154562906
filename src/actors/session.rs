//! `WsSession`: one actor per WebSocket connection (on `actix-ws`).
//!
//! It parses client messages (`subscribe`, `unsubscribe`, `ping`), subscribes to location
//! actors through the `Directory`, and forwards their pre-serialized messages. Outbound
//! messages go through a bounded queue to a writer task; a client that does not read
//! fills it and is closed with 1013 instead of growing memory. A malformed client message
//! gets an `error` message and the connection stays open; a frame over the size limit
//! closes it with 1009; a silent client is closed after the idle timeout; shutdown closes
//! every session with 1001.
//!
//! The outbound queue is a `VecDeque` in the actor with one send in flight at a time
//! (the connection is moved into that send and handed back when it completes): an idle
//! connection costs no queue allocation and no extra task.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Message, ProtocolError, Session};
use serde_json::Value;
use tokio::sync::watch;
use tracing::debug;

use crate::actors::demand::Demand;
use crate::actors::directory::{Directory, Resolve, UnknownLocation};
use crate::actors::location::{LocationActor, Subscribe, Unsubscribe};
use crate::actors::messages::{Deliver, Payload};
use crate::auth::limits::Slot;
use crate::config::WsSettings;
use crate::domain::LocationId;
use crate::telemetry::Metrics;

/// Location-actor messages waiting for this session's actor; beyond this a location
/// drops the subscriber (the client is too slow, or the session's thread is).
const MAILBOX_CAPACITY: usize = 1024;
/// How long a close frame may wait for room in a full connection before it is abandoned.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a session needs besides its connection.
#[derive(Clone)]
pub struct SessionDeps {
    pub directory: Addr<Directory>,
    pub settings: Arc<WsSettings>,
    pub metrics: Arc<Metrics>,
    /// Flips to true at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// A subscription is demand: touched on subscribing and at every heartbeat.
    pub demand: Arc<Demand>,
}

pub struct WsSession {
    id: u64,
    deps: SessionDeps,
    /// The connection; `None` while a send is in flight (the send holds it).
    session: Option<Session>,
    /// A second handle on the connection, to close it past a send stuck on a full socket.
    closer: Session,
    /// Messages waiting for the connection, oldest first; bounded by `ws.outbound_queue`.
    outbound: VecDeque<Message>,
    subscriptions: HashMap<LocationId, Addr<LocationActor>>,
    /// Last message or pong from the client.
    last_heard: Instant,
    closing: bool,
    /// Counts against the client's connection cap while the session lives.
    _slot: Option<Slot>,
}

impl WsSession {
    /// Starts a session on an upgraded connection, optionally already subscribed to `initial`.
    pub fn start(
        id: u64,
        session: Session,
        stream: actix_ws::MessageStream,
        deps: SessionDeps,
        initial: Option<(LocationId, Option<u64>)>,
        slot: Option<Slot>,
    ) -> Addr<Self> {
        let max = deps.settings.max_message_bytes;
        let closer = session.clone();
        let stream = stream.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
        WsSession::create(move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            ctx.add_stream(stream);
            let mut act = WsSession {
                id,
                deps,
                session: Some(session),
                closer,
                outbound: VecDeque::new(),
                subscriptions: HashMap::new(),
                last_heard: Instant::now(),
                closing: false,
                _slot: slot,
            };
            if let Some(location) = initial {
                act.subscribe(vec![location], ctx);
            }
            act
        })
    }

    fn send(&mut self, message: Message, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.outbound.len() >= self.deps.settings.outbound_queue {
            self.deps.metrics.ws_clients_dropped.inc();
            return self.close_now(CloseCode::Again, "client too slow: outbound queue full", ctx);
        }
        self.outbound.push_back(message);
        self.pump(ctx);
    }

    /// Starts sending the oldest queued message unless a send is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.outbound.is_empty() {
            return;
        }
        let Some(mut session) = self.session.take() else { return };
        let Some(message) = self.outbound.pop_front() else { return };
        let text = matches!(message, Message::Text(_));
        let send = async move {
            let result = send_one(&mut session, message).await;
            (session, result)
        };
        ctx.spawn(send.into_actor(self).map(move |(session, result), act, ctx| {
            if result.is_err() {
                return ctx.stop();
            }
            if text {
                act.deps.metrics.ws_messages_sent.inc();
            }
            act.session = Some(session);
            act.pump(ctx);
        }));
    }

    fn send_error(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        let text = serde_json::json!({"type": "error", "code": code, "message": message}).to_string();
        self.send(Message::Text(text.into()), ctx);
    }

    /// Closes after what is queued: the rest is sent by a task that outlives the actor.
    fn close(&mut self, code: CloseCode, description: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        let reason = CloseReason { code, description: Some(description.to_owned()) };
        let mut queue = std::mem::take(&mut self.outbound);
        queue.push_back(Message::Close(Some(reason)));
        let session = self.session.take().unwrap_or_else(|| self.closer.clone());
        actix_rt::spawn(async move {
            let mut session = session;
            for message in queue {
                let last = matches!(message, Message::Close(_));
                let sent = tokio::time::timeout(CLOSE_TIMEOUT, send_one(&mut session, message)).await;
                if last || !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        });
        ctx.stop();
    }

    /// Closes ahead of whatever is queued: for a client that stopped reading.
    fn close_now(&mut self, code: CloseCode, description: &str, ctx: &mut Context<Self>) {
        self.closing = true;
        self.outbound.clear();
        let closer = self.closer.clone();
        let reason = CloseReason { code, description: Some(description.to_owned()) };
        actix_rt::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, closer.close(Some(reason))).await;
        });
        ctx.stop();
    }

    fn handle_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return self.send_error("invalid_json", "message is not valid JSON", ctx);
        };
        let kind = value.get("type").and_then(Value::as_str);
        match kind {
            Some("ping") => self.send(Message::Text(r#"{"type":"pong"}"#.into()), ctx),
            Some(kind @ ("subscribe" | "unsubscribe")) => {
                let Some(ids) = parse_locations(&value) else {
                    return self.send_error(
                        "invalid_message",
                        &format!(r#"{kind} needs "locations": an array of location id strings"#),
                        ctx,
                    );
                };
                let ids = match ids {
                    Ok(ids) => ids,
                    Err(bad) => {
                        return self.send_error(
                            "invalid_location_id",
                            &format!("{bad:?} is not a valid location id"),
                            ctx,
                        );
                    }
                };
                if kind == "unsubscribe" {
                    return self.unsubscribe(ids);
                }
                let Some(since) = parse_since(&value) else {
                    return self.send_error(
                        "invalid_message",
                        r#""since" must be an object of location id to the last seq seen, e.g. {"KJFK": 41}"#,
                        ctx,
                    );
                };
                let ids = ids
                    .into_iter()
                    .map(|id| {
                        let seq = since.get(id.as_str()).copied();
                        (id, seq)
                    })
                    .collect();
                self.subscribe(ids, ctx)
            }
            Some(other) => self.send_error(
                "unknown_type",
                &format!("unknown message type {other:?}; expected subscribe, unsubscribe or ping"),
                ctx,
            ),
            None => self.send_error("invalid_message", r#"message needs a string "type""#, ctx),
        }
    }

    /// Subscribes to each location not followed yet, resuming from the `seq` given with it.
    fn subscribe(&mut self, ids: Vec<(LocationId, Option<u64>)>, ctx: &mut Context<Self>) {
        let mut new: Vec<(LocationId, Option<u64>)> =
            ids.into_iter().filter(|(id, _)| !self.subscriptions.contains_key(id)).collect();
        new.dedup_by(|a, b| a.0 == b.0);
        let max = self.deps.settings.max_subscriptions;
        if self.subscriptions.len() + new.len() > max {
            let message = format!(
                "at most {max} subscriptions per connection; this one has {} and asked for {} more",
                self.subscriptions.len(),
                new.len()
            );
            return self.send_error("too_many_subscriptions", &message, ctx);
        }
        let directory = self.deps.directory.clone();
        let resolve = async move {
            let mut out = Vec::with_capacity(new.len());
            for (id, since) in new {
                let result = directory.send(Resolve { id: id.clone() }).await;
                out.push((id, since, result));
            }
            out
        };
        // `wait`: later client messages (an unsubscribe) and deliveries apply after this.
        ctx.wait(resolve.into_actor(self).map(|results, act, ctx| {
            for (id, since, result) in results {
                match result {
                    Ok(Ok(addr)) => {
                        act.deps.demand.touch(&id);
                        addr.do_send(Subscribe { session_id: act.id, recipient: ctx.address().recipient(), since });
                        act.subscriptions.insert(id, addr);
                    }
                    Ok(Err(unknown @ UnknownLocation::Unknown(_))) => {
                        act.send_error("unknown_location", &unknown.to_string(), ctx)
                    }
                    // Redis could not say whether it is another instance's station.
                    Ok(Err(unchecked)) => act.send_error("unavailable", &format!("{unchecked}; subscribe again"), ctx),
                    Err(_) => act.send_error("unavailable", "the location directory is not available", ctx),
                }
            }
        }));
    }

    fn unsubscribe(&mut self, ids: Vec<LocationId>) {
        for id in ids {
            if let Some(addr) = self.subscriptions.remove(&id) {
                addr.do_send(Unsubscribe { session_id: self.id });
            }
        }
    }
}

/// `Some(Ok(ids))`, `Some(Err(first invalid id))`, or `None` when `locations` is not an
/// array of strings.
pub(crate) fn parse_locations(value: &Value) -> Option<Result<Vec<LocationId>, String>> {
    let items = value.get("locations")?.as_array()?;
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let raw = item.as_str()?;
        match LocationId::parse(raw) {
            Ok(id) => ids.push(id),
            Err(_) => return Some(Err(raw.to_owned())),
        }
    }
    Some(Ok(ids))
}

/// The optional `since` of a subscribe message: location id → the last `seq` the client
/// saw. `None` when it is there but not such an object.
pub(crate) fn parse_since(value: &Value) -> Option<HashMap<&str, u64>> {
    let Some(since) = value.get("since") else { return Some(HashMap::new()) };
    since.as_object()?.iter().map(|(id, seq)| Some((id.as_str(), seq.as_u64()?))).collect()
}

/// Sends one message on the connection.
async fn send_one(session: &mut Session, message: Message) -> Result<(), actix_ws::Closed> {
    match message {
        Message::Text(text) => session.text(text).await,
        Message::Ping(bytes) => session.ping(&bytes).await,
        Message::Pong(bytes) => session.pong(&bytes).await,
        Message::Close(reason) => session.clone().close(reason).await,
        _ => Ok(()),
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps.metrics.ws_connections.inc();
        let interval = Duration::from_secs(self.deps.settings.heartbeat_interval_secs.max(1));
        let timeout = Duration::from_secs(self.deps.settings.client_timeout_secs.max(1));
        ctx.run_interval(interval, move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                debug!(session = act.id, "client idle: closing");
                act.close(CloseCode::Normal, "idle timeout", ctx);
            } else {
                act.send(Message::Ping(Default::default()), ctx);
                for id in act.subscriptions.keys() {
                    act.deps.demand.touch(id);
                }
            }
        });
        let mut shutdown = self.deps.shutdown.clone();
        let wait_shutdown = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        ctx.spawn(wait_shutdown.into_actor(self).map(|_, act, ctx| {
            act.close(CloseCode::Away, "server shutting down", ctx);
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.ws_connections.dec();
        for (_, addr) in self.subscriptions.drain() {
            addr.do_send(Unsubscribe { session_id: self.id });
        }
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.handle_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                self.send_error("unsupported", "binary messages are not supported; send JSON text", ctx)
            }
            Ok(AggregatedMessage::Ping(bytes)) => self.send(Message::Pong(bytes), ctx),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => self.close(CloseCode::Normal, "bye", ctx),
            Err(ProtocolError::Overflow) => {
                let max = self.deps.settings.max_message_bytes;
                self.close_now(CloseCode::Size, &format!("message larger than {max} bytes"), ctx)
            }
            Err(error) => self.close_now(CloseCode::Protocol, &error.to_string(), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        match msg.payload {
            Payload::Text(text) => self.send(Message::Text(text), ctx),
            Payload::Overflowed => {
                self.deps.metrics.ws_clients_dropped.inc();
                self.close_now(CloseCode::Again, "client too slow: updates backed up", ctx);
            }
            Payload::LocationStopped(id) => {
                if self.subscriptions.remove(&id).is_some() {
                    self.subscribe(vec![(id, None)], ctx);
                }
            }
        }
    }
}
