//! The HTTP layer: parse, ask the right actor, render. No business logic here, and no
//! store or provider access: everything goes through actor messages or the read-only
//! catalog.

pub mod error;
pub mod openapi;
pub mod routes;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use actix::{Addr, Handler, Message};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpRequest, web};

use crate::actors::directory::{Directory, Resolve};
use crate::actors::location::LocationActor;
use crate::actors::persister::Persister;
use crate::actors::session::SessionDeps;
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::domain::LocationId;
use crate::telemetry::Metrics;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub directory: Addr<Directory>,
    pub persister: Addr<Persister>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    pub sessions: SessionDeps,
    /// Current conditions as the location actors last published them (read-only here).
    pub views: Arc<crate::actors::location::published::PublishedViews>,
    /// The Kafka consumer when Kafka is configured, for /ready.
    pub kafka: Option<Addr<crate::actors::kafka::KafkaIngest>>,
    /// The source pollers, for /ready.
    pub providers: Vec<actix::Recipient<crate::actors::poller::GetProviderStatus>>,
    /// Source of WebSocket session ids.
    pub next_session_id: AtomicU64,
}

impl AppState {
    /// Parses a path id: 400 when malformed.
    pub fn parse_id(raw: &str) -> Result<LocationId, ApiError> {
        LocationId::parse(raw).map_err(|e| ApiError::invalid_param("id", e.to_string()))
    }

    /// The actor of `id`: 404 when the id is neither a catalog city nor a known station.
    pub async fn resolve(&self, id: &LocationId) -> Result<Addr<LocationActor>, ApiError> {
        self.directory.send(Resolve { id: id.clone() }).await?.map_err(|e| {
            ApiError::NotFound(format!(
                "{e}: not a GeoNames city id in the catalog nor a station that has sent readings"
            ))
        })
    }

    /// Sends `make()` to the actor of `id`; a dead actor (passivated a moment ago) is
    /// resolved again once.
    pub async fn ask<M>(&self, id: &LocationId, make: impl Fn() -> M) -> Result<M::Result, ApiError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        LocationActor: Handler<M>,
    {
        let addr = self.resolve(id).await?;
        match addr.send(make()).await {
            Ok(result) => Ok(result),
            Err(_) => Ok(self.resolve(id).await?.send(make()).await?),
        }
    }
}

/// Registers every route on the app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request(format!("invalid query string: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default().error_handler(|e, _| ApiError::bad_request(format!("invalid path: {e}")).into()),
    )
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// Counts and times every request by method, route pattern (never the raw path) and status.
pub async fn record_metrics(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let status = response.status();
        metrics.http_requests.with_label_values(&[method_label(&method), &route, status.as_str()]).inc();
        metrics.http_request_duration.with_label_values(&[&route]).observe(start.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// Methods outside the usual set share one label, keeping the label set bounded.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}
