//! GraphQL at `/graphql` (async-graphql): queries and a mutation over HTTP (POST, and GET
//! for queries), subscriptions over WebSocket (`graphql-transport-ws`, and the older
//! `graphql-ws`) on actix-ws.
//!
//! One code path: every resolver calls the functions the REST handlers call, so a
//! location's `current`, `forecast`, `history`, `airQuality` and `anomalies` are the REST
//! documents themselves (JSON scalars), and `submitReadings` is POST /v1/readings'
//! validation, policy and acknowledgement. Errors carry `extensions.code` (the REST
//! status's name) and, for a bad parameter, `extensions.errors` (the fields at fault).
//!
//! Limits: `graphql.max_depth`, `graphql.max_complexity`, `graphql.max_batch` operations
//! per request, `graphql.max_subscriptions` per connection; a subscription follows at
//! most `ws.max_subscriptions` locations, and its connection counts against the caller's
//! WebSocket cap like `/v1/ws`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Handler, WrapFuture};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation};
use async_graphql::http::{GraphiQLSource, WebSocketProtocols, WsMessage};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{
    BatchRequest, Context, Data, Error, ErrorExtensions, Json, Object, Request, Response, Schema, ServerError,
    ServerResult, SimpleObject, Subscription, ValidationResult, Variables,
};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::actors::directory::{Directory, Resolve};
use crate::actors::location::{LocationActor, Subscribe, Unsubscribe};
use crate::actors::messages::{Deliver, Payload};
use crate::config::GraphqlSettings;
use crate::domain::{Location, LocationId};
use crate::http::auth::{Caller, caller};
use crate::http::routes::locations::{
    AirQualityQuery, AnomaliesQuery, AnomaliesResponse, ForecastQuery, HistoryQuery, HistoryResponse,
    air_quality_document, anomalies_document, forecast_document, history_document, units,
};
use crate::http::routes::readings::MAX_ITEMS;
use crate::http::{ApiError, AppState};

pub type IsobarSchema = Schema<Query, Mutation, LiveUpdates>;

/// Largest request body (a `submitReadings` of 1 MiB of readings, with room for the query).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// `/graphql` (when `graphql.enabled`): POST for queries and mutations, GET for queries,
/// subscriptions (WebSocket) and GraphiQL.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::routes::resource("/graphql", "GET, POST")
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route(web::post().to(post))
            .route(web::get().to(get)),
    );
}

/// The schema with its limits; requests bring the application state and the caller.
pub fn schema(settings: &GraphqlSettings) -> IsobarSchema {
    Schema::build(Query, Mutation, LiveUpdates)
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .extension(Prepared::default())
        .finish()
}

/// Queries parsed once: a dashboard sends the same few documents over and over.
const PARSED_QUERIES: usize = 256;

/// Keeps the last [`PARSED_QUERIES`] parsed documents (all of them dropped when full, so
/// the cache cannot grow), and gives the errors async-graphql raises itself (a query that
/// does not parse, or breaks a rule or a limit) an `extensions.code`, as the resolvers'
/// errors have.
#[derive(Default)]
struct Prepared {
    parsed: Arc<std::sync::Mutex<std::collections::HashMap<String, ExecutableDocument>>>,
}

impl ExtensionFactory for Prepared {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Prepared { parsed: self.parsed.clone() })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Prepared {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let cached = self.parsed.lock().ok().and_then(|parsed| parsed.get(query).cloned());
        if let Some(document) = cached {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await.map_err(|e| coded(e, "GRAPHQL_PARSE_FAILED"))?;
        if let Ok(mut parsed) = self.parsed.lock() {
            if parsed.len() >= PARSED_QUERIES {
                parsed.clear();
            }
            parsed.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| errors.into_iter().map(|e| coded(e, "GRAPHQL_VALIDATION_FAILED")).collect())
    }
}

/// `error` with `code` unless it has one.
fn coded(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

/// The schema's SDL (`isobar graphql-schema`, and the committed `schema.graphql`).
pub fn sdl() -> String {
    schema(&GraphqlSettings::default()).sdl()
}

/// A REST error as a GraphQL one: `extensions.code` names the status.
fn gql(error: ApiError) -> Error {
    let code = match &error {
        ApiError::BadRequest { .. } => "BAD_REQUEST",
        ApiError::NotFound(_) => "NOT_FOUND",
        ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
        ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
        ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
        ApiError::Unprocessable { .. } => "UNPROCESSABLE",
        ApiError::Unavailable { .. } => "UNAVAILABLE",
        ApiError::Unauthorized(_) => "UNAUTHORIZED",
        ApiError::Forbidden(_) => "FORBIDDEN",
        ApiError::UpgradeRequired(_) => "UPGRADE_REQUIRED",
        ApiError::RequestTimeout(_) => "REQUEST_TIMEOUT",
        ApiError::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
    };
    let detail = error.to_string();
    Error::new(detail).extend_with(|_, e| {
        e.set("code", code);
        match &error {
            ApiError::BadRequest { errors, .. } if !errors.is_empty() => {
                e.set(
                    "errors",
                    async_graphql::Value::from_json(serde_json::to_value(errors).unwrap_or_default())
                        .unwrap_or_default(),
                );
            }
            ApiError::Unprocessable { extra: Some((name, value)), .. } => {
                e.set(*name, async_graphql::Value::from_json(value.clone()).unwrap_or_default());
            }
            ApiError::Unavailable { retry_after_secs, .. } | ApiError::TooManyRequests { retry_after_secs, .. } => {
                e.set("retryAfterSecs", *retry_after_secs);
            }
            _ => {}
        }
    })
}

fn state<'a>(ctx: &Context<'a>) -> &'a web::Data<AppState> {
    ctx.data_unchecked::<web::Data<AppState>>()
}

pub struct Query;

#[Object]
impl Query {
    /// One location: a catalog city (GeoNames id) or a station.
    async fn location(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<LocationNode> {
        let state = state(ctx);
        let id = AppState::parse_id(&id).map_err(gql)?;
        let location = state.service.location(&id).await.map_err(|e| gql(e.into()))?;
        Ok(LocationNode(location))
    }

    /// Search by name prefix (as GET /v1/locations): exact names first, then by population.
    async fn locations(
        &self,
        ctx: &Context<'_>,
        search: String,
        #[graphql(desc = "1-100, default 10")] limit: Option<i32>,
    ) -> async_graphql::Result<Vec<LocationNode>> {
        let limit = match limit {
            None => None,
            Some(n) => Some(usize::try_from(n).map_err(|_| gql(crate::service::search_limit_error().into()))?),
        };
        let found = state(ctx).service.search(&search, limit).map_err(|e| gql(e.into()))?;
        Ok(found.into_iter().map(LocationNode).collect())
    }

    /// The catalog city nearest to a point.
    async fn nearest(&self, ctx: &Context<'_>, lat: f64, lon: f64) -> async_graphql::Result<Nearest> {
        let (location, distance_km) = state(ctx).service.nearest(lat, lon).map_err(|e| gql(e.into()))?;
        Ok(Nearest { location: LocationNode(location), distance_km })
    }
}

/// The catalog city nearest to a point, and how far it is.
#[derive(SimpleObject)]
pub struct Nearest {
    location: LocationNode,
    distance_km: f64,
}

/// /current's document of an update in some units, serialized straight into the answer.
pub struct CurrentDocument(Arc<crate::core::Update>, crate::domain::Units);

impl serde::Serialize for CurrentDocument {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            crate::domain::Units::Metric => self.0.current.serialize(serializer),
            units => self.0.current.in_units(units).serialize(serializer),
        }
    }
}

/// A location, with its documents.
pub struct LocationNode(Location);

#[Object(name = "Location")]
impl LocationNode {
    async fn id(&self) -> &str {
        self.0.id.as_str()
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// ISO 3166-1 alpha-2.
    async fn country(&self) -> &str {
        &self.0.country
    }

    /// IANA time zone.
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }

    async fn latitude(&self) -> f64 {
        self.0.latitude
    }

    async fn longitude(&self) -> f64 {
        self.0.longitude
    }

    async fn population(&self) -> Option<u64> {
        self.0.population
    }

    /// Metres above sea level, when known.
    async fn elevation(&self) -> Option<f64> {
        self.0.elevation
    }

    /// `city` or `station`.
    async fn kind(&self) -> String {
        serde_json::to_value(self.0.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// GET /v1/locations/{id}/current's document.
    async fn current(&self, ctx: &Context<'_>, units: Option<String>) -> async_graphql::Result<Json<CurrentDocument>> {
        let units = self::units(units.as_deref()).map_err(gql)?;
        let update = state(ctx).service.current(self.0.id.as_str()).await.map_err(|e| gql(e.into()))?;
        Ok(Json(CurrentDocument(update, units)))
    }

    /// The consensus current conditions as typed fields: the same update `current` shows.
    async fn conditions(&self, ctx: &Context<'_>, units: Option<String>) -> async_graphql::Result<Conditions> {
        let units = self::units(units.as_deref()).map_err(gql)?;
        let update = state(ctx).service.current(self.0.id.as_str()).await.map_err(|e| gql(e.into()))?;
        Ok(Conditions(match units {
            crate::domain::Units::Metric => update.current.clone(),
            crate::domain::Units::Imperial => update.current.in_units(units),
        }))
    }

    /// GET /v1/locations/{id}/forecast's document.
    async fn forecast(
        &self,
        ctx: &Context<'_>,
        hours: Option<i32>,
        units: Option<String>,
        model: Option<String>,
    ) -> async_graphql::Result<Json<crate::domain::Forecast>> {
        let query = ForecastQuery { hours: hours.map(|h| h.to_string()), units, model };
        forecast_document(&state(ctx).service, &self.0.id, &query).await.map(Json).map_err(gql)
    }

    /// GET /v1/locations/{id}/history's document.
    async fn history(
        &self,
        ctx: &Context<'_>,
        from: Option<String>,
        to: Option<String>,
        step: Option<String>,
        units: Option<String>,
    ) -> async_graphql::Result<Json<HistoryResponse>> {
        let query = HistoryQuery { from, to, step, units };
        history_document(&state(ctx).service, &self.0.id, &query).await.map(Json).map_err(gql)
    }

    /// GET /v1/locations/{id}/air-quality's document.
    async fn air_quality(
        &self,
        ctx: &Context<'_>,
        hours: Option<i32>,
    ) -> async_graphql::Result<Json<crate::analytics::aqi::AirQuality>> {
        let query = AirQualityQuery { hours: hours.map(|h| h.to_string()) };
        air_quality_document(&state(ctx).service, &self.0.id, &query).await.map(Json).map_err(gql)
    }

    /// GET /v1/locations/{id}/anomalies' document.
    async fn anomalies(
        &self,
        ctx: &Context<'_>,
        from: Option<String>,
        to: Option<String>,
        units: Option<String>,
    ) -> async_graphql::Result<Json<AnomaliesResponse>> {
        let query = AnomaliesQuery { from, to, units };
        anomalies_document(&state(ctx).service, &self.0.id, &query).await.map(Json).map_err(gql)
    }
}

/// Consensus current conditions, typed (GET /current's document has every field).
pub struct Conditions(crate::domain::Current);

/// One quantity's consensus value.
#[derive(SimpleObject)]
pub struct QuantityValue {
    /// As in the REST documents: `temperature`, `humidity`, `pm2_5`, …
    quantity: &'static str,
    value: f64,
    /// In the requested units.
    unit: &'static str,
}

#[Object]
impl Conditions {
    /// RFC 3339, as the REST documents write it.
    async fn observed_at(&self) -> String {
        self.0.observed_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    /// `metric` or `imperial`.
    async fn units(&self) -> &'static str {
        self.0.units.as_str()
    }

    /// One quantity's value (`null` when no source reports it).
    async fn value(&self, quantity: String) -> async_graphql::Result<Option<f64>> {
        let q = crate::domain::Quantity::from_name(&quantity)
            .ok_or_else(|| gql(ApiError::invalid_param("quantity", format!("unknown quantity {quantity:?}"))))?;
        Ok(self.0.values.get(q))
    }

    /// The quantities some source reports, in table order.
    async fn values(&self) -> Vec<QuantityValue> {
        let imperial = self.0.units == crate::domain::Units::Imperial;
        self.0
            .values
            .present()
            .map(|(spec, value)| QuantityValue {
                quantity: spec.name,
                value,
                unit: if imperial { spec.imperial_unit } else { spec.metric_unit },
            })
            .collect()
    }

    /// WMO weather code.
    async fn weather_code(&self) -> Option<u8> {
        self.0.weather_code
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn sources_count(&self) -> usize {
        self.0.sources_count
    }

    async fn confidence(&self) -> f64 {
        self.0.confidence
    }

    async fn quality_score(&self) -> f64 {
        self.0.quality_score
    }

    async fn stale(&self) -> bool {
        self.0.stale
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// POST /v1/readings: the same validation, policy and acknowledgement (`accepted`,
    /// `rejected`). Nothing accepted is an `UNPROCESSABLE` error listing why.
    async fn submit_readings(
        &self,
        ctx: &Context<'_>,
        readings: Vec<Json<Value>>,
    ) -> async_graphql::Result<Json<crate::service::IngestResponse>> {
        let state = state(ctx);
        let caller = ctx.data_unchecked::<Caller>();
        state.access.may_write(caller).map_err(gql)?;
        if readings.len() > MAX_ITEMS {
            return Err(gql(ApiError::PayloadTooLarge(format!(
                "{} readings in one request; at most {MAX_ITEMS} are accepted",
                readings.len()
            ))));
        }
        if readings.is_empty() {
            return Err(gql(ApiError::Unprocessable { detail: "the list holds no readings".into(), extra: None }));
        }
        let items: Vec<Value> = readings.into_iter().map(|r| r.0).collect();
        let writer = caller.writer(&state.access.settings);
        let report = state.service.submit_readings(&items, &writer).await.map_err(|e| gql(e.into()))?;
        if report.accepted == 0 {
            let detail = format!("{} of {} readings accepted; see rejected", 0, items.len());
            let rejected = serde_json::to_value(&report.rejected).unwrap_or_default();
            return Err(gql(ApiError::Unprocessable { detail, extra: Some(("rejected", rejected)) }));
        }
        Ok(Json(report))
    }
}

/// One live message, as the WebSocket feed sends it.
#[derive(SimpleObject)]
pub struct LiveMessage {
    /// `snapshot`, `update`, `anomaly`, `forecast` or `air_quality`.
    #[graphql(name = "type")]
    kind: String,
    location_id: String,
    /// The message's `data`, as the WebSocket feed has it.
    data: Json<Value>,
}

pub struct LiveUpdates;

#[Subscription(name = "Subscription")]
impl LiveUpdates {
    /// The locations' snapshots, then every update, anomaly, forecast and air-quality
    /// message, as `/v1/ws` sends them.
    async fn updates(
        &self,
        ctx: &Context<'_>,
        location_ids: Vec<String>,
    ) -> async_graphql::Result<impl Stream<Item = LiveMessage> + use<>> {
        let state = state(ctx).clone();
        let slot = ctx
            .data_opt::<Arc<SubscriptionSlots>>()
            .ok_or_else(|| gql(ApiError::UpgradeRequired("subscriptions are served over WebSocket".into())))?
            .acquire()
            .map_err(gql)?;
        let max = state.settings.ws.max_subscriptions;
        if location_ids.is_empty() || location_ids.len() > max {
            return Err(gql(ApiError::invalid_param("locationIds", format!("must name 1 to {max} locations"))));
        }
        let ids = location_ids.iter().map(|raw| AppState::parse_id(raw)).collect::<Result<Vec<_>, _>>().map_err(gql)?;
        for id in &ids {
            state.service.location(id).await.map_err(|e| gql(e.into()))?;
        }
        let (tx, rx) = mpsc::channel(state.settings.ws.outbound_queue.max(1));
        let session_id = state.next_session_id.fetch_add(1, Ordering::Relaxed);
        Relay {
            session_id,
            ids,
            directory: state.sessions.directory.clone(),
            demand: state.sessions.demand.clone(),
            followed: Vec::new(),
            tx,
        }
        .start();
        let messages = tokio_stream_from(rx).filter_map(|text| async move {
            let message: Value = serde_json::from_str(&text).ok()?;
            Some(LiveMessage {
                kind: message.get("type")?.as_str()?.to_owned(),
                location_id: message.get("location_id")?.as_str()?.to_owned(),
                data: Json(message.get("data").cloned().unwrap_or(Value::Null)),
            })
        });
        // The slot is held while the stream lives.
        Ok(messages.map(move |m| {
            let _held = &slot;
            m
        }))
    }
}

/// A receiver as a stream.
fn tokio_stream_from(mut rx: mpsc::Receiver<bytestring::ByteString>) -> impl Stream<Item = bytestring::ByteString> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Subscriptions one connection may hold.
pub struct SubscriptionSlots {
    max: usize,
    used: Arc<AtomicUsize>,
}

/// A held subscription slot, given back when dropped.
pub struct SubscriptionSlot(Arc<AtomicUsize>);

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SubscriptionSlots {
    fn new(max: usize) -> Self {
        Self { max, used: Arc::default() }
    }

    fn acquire(&self) -> Result<SubscriptionSlot, ApiError> {
        let max = self.max;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .map(|_| SubscriptionSlot(self.used.clone()))
            .map_err(|_| ApiError::TooManyRequests {
                detail: format!(
                    "at most {max} subscriptions per connection (graphql.max_subscriptions); complete one first"
                ),
                retry_after_secs: 1,
            })
    }
}

/// Follows a subscription's locations for it, as a `WsSession` does: subscribes through
/// the directory, touches their demand, subscribes again when a location actor restarts,
/// and stops (unsubscribing) when the subscription's stream is gone or too slow to read.
struct Relay {
    session_id: u64,
    ids: Vec<LocationId>,
    directory: Addr<Directory>,
    demand: Arc<crate::actors::demand::Demand>,
    followed: Vec<Addr<LocationActor>>,
    tx: mpsc::Sender<bytestring::ByteString>,
}

impl Relay {
    fn follow(&mut self, ids: Vec<LocationId>, ctx: &mut actix::Context<Self>) {
        let directory = self.directory.clone();
        let resolve = async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push((id.clone(), directory.send(Resolve { id }).await));
            }
            out
        };
        ctx.wait(resolve.into_actor(self).map(|results, act, ctx| {
            for (id, result) in results {
                match result {
                    Ok(Ok(addr)) => {
                        act.demand.touch(&id);
                        let recipient = ctx.address().recipient();
                        addr.do_send(Subscribe { session_id: act.session_id, recipient, since: None });
                        act.followed.push(addr);
                    }
                    _ => ctx.stop(),
                }
            }
        }));
    }
}

impl Actor for Relay {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut actix::Context<Self>) {
        let ids = self.ids.clone();
        self.follow(ids, ctx);
        ctx.run_interval(Duration::from_secs(5), |act, ctx| {
            if act.tx.is_closed() {
                ctx.stop();
                return;
            }
            for id in &act.ids {
                act.demand.touch(id);
            }
        });
    }

    fn stopped(&mut self, _: &mut actix::Context<Self>) {
        for addr in &self.followed {
            addr.do_send(Unsubscribe { session_id: self.session_id });
        }
    }
}

impl Handler<Deliver> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut actix::Context<Self>) {
        match msg.payload {
            Payload::Text(text) => {
                if self.tx.try_send(text).is_err() {
                    // Gone, or not read fast enough: the stream ends.
                    ctx.stop();
                }
            }
            Payload::Overflowed => ctx.stop(),
            Payload::LocationStopped(id) => {
                self.followed.retain(|a| a.connected());
                self.follow(vec![id], ctx);
            }
        }
    }
}

/// `POST /graphql`: one operation or a batch of up to `graphql.max_batch`.
pub async fn post(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let batch: BatchRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("not a GraphQL request: {e}")))?;
    let max = state.settings.graphql.max_batch;
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > max
    {
        return Err(ApiError::bad_request(format!(
            "{} operations in one batch; at most {max} (graphql.max_batch)",
            requests.len()
        )));
    }
    let schema = state.graphql.clone();
    let caller = caller(&req);
    let response = schema.execute_batch(batch.data(state.clone()).data(caller)).await;
    Ok(HttpResponse::Ok().json(response))
}

/// What GraphiQL's page may load: its scripts and styles from unpkg (where async-graphql's
/// page takes them), its inline bootstrap, and requests back to this server.
const GRAPHIQL_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline' https://unpkg.com; \
    style-src 'unsafe-inline' https://unpkg.com; font-src https://unpkg.com data:; img-src https://graphql.org data:; \
    connect-src 'self' ws: wss:; frame-ancestors 'none'";

/// `GET /graphql`: a WebSocket upgrade for subscriptions, a query in the query string,
/// or GraphiQL when `graphql.playground` is on.
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if upgrade.is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return websocket(state, req, body).await;
    }
    if req.query_string().is_empty() {
        if state.settings.graphql.playground {
            let page = GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql").finish();
            return Ok(HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header(("content-security-policy", GRAPHIQL_POLICY))
                .body(page));
        }
        return Err(ApiError::bad_request(
            "GET /graphql needs a query (?query=…); POST for mutations; GraphiQL is off (graphql.playground)",
        )
        .into());
    }
    let mut request = async_graphql::http::parse_query_string(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("not a GraphQL request: {e}")))?;
    if is_mutation(&mut request) {
        return Err(ApiError::MethodNotAllowed("mutations are sent with POST".into()).into());
    }
    let response: Response = state.graphql.execute(request.data(state.clone()).data(caller(&req))).await;
    Ok(HttpResponse::Ok().json(response))
}

/// Whether the operation to run is a mutation (`false` when the query does not parse:
/// executing it reports why).
fn is_mutation(request: &mut Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else { return false };
    match &document.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| op.node.ty == OperationType::Mutation),
            None => ops.values().any(|op| op.node.ty == OperationType::Mutation),
        },
    }
}

/// Subscriptions over WebSocket, in the protocol the client offers first of
/// `graphql-transport-ws` and `graphql-ws`.
async fn websocket(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let offered = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("");
    let protocol = offered
        .split(',')
        .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        .ok_or_else(|| ApiError::bad_request("offer the graphql-transport-ws or graphql-ws subprotocol"))?;
    let caller = caller(&req);
    let socket_slot = state.access.websocket_slot(&caller)?;
    let (mut response, session, messages) = actix_ws::handle(&req, body)?;
    response
        .headers_mut()
        .insert(header::SEC_WEBSOCKET_PROTOCOL, header::HeaderValue::from_static(protocol.sec_websocket_protocol()));
    let mut data = Data::default();
    data.insert(state.clone());
    data.insert(caller);
    data.insert(Arc::new(SubscriptionSlots::new(state.settings.graphql.max_subscriptions)));
    let max_bytes = state.settings.ws.max_message_bytes;
    let pong = session.clone();
    let input = messages
        .max_frame_size(max_bytes)
        .aggregate_continuations()
        .max_continuation_size(max_bytes)
        .take_while(|m| std::future::ready(matches!(m, Ok(m) if !matches!(m, actix_ws::AggregatedMessage::Close(_)))))
        .filter_map(move |m| {
            let mut pong = pong.clone();
            async move {
                match m {
                    Ok(actix_ws::AggregatedMessage::Text(text)) => Some(text.into_bytes()),
                    Ok(actix_ws::AggregatedMessage::Ping(bytes)) => {
                        let _ = pong.pong(&bytes).await;
                        None
                    }
                    _ => None,
                }
            }
        });
    let schema = state.graphql.clone();
    let mut shutdown = state.sessions.shutdown.clone();
    actix_web::rt::spawn(async move {
        let _slot = socket_slot;
        let mut session = session;
        let mut out = Box::pin(async_graphql::http::WebSocket::new(schema, input, protocol).connection_data(data));
        loop {
            let message = tokio::select! {
                message = out.next() => message,
                // Shutdown closes the connection as it closes /v1/ws sessions (1001).
                Ok(_) = shutdown.wait_for(|down| *down) => {
                    let _ = session.close(Some(actix_ws::CloseCode::Away.into())).await;
                    return;
                }
            };
            let sent = match message {
                Some(WsMessage::Text(text)) => session.text(text).await,
                Some(WsMessage::Close(code, reason)) => {
                    let reason = actix_ws::CloseReason { code: code.into(), description: Some(reason) };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
                // The client closed (or its stream ended): answer its close with 1000.
                None => {
                    let _ = session.close(Some(actix_ws::CloseCode::Normal.into())).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}
