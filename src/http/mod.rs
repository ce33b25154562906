//! The HTTP layer: parse, ask the service, render. No business logic here, and no actor,
//! store or provider access: everything goes through the [`Service`] (and, for
//! WebSockets, the sessions it starts).

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod graphql;
pub mod openapi;
pub mod routes;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpRequest, web};

use crate::actors::session::SessionDeps;
use crate::config::Settings;
use crate::domain::LocationId;
use crate::service::Service;
use crate::telemetry::Metrics;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub service: Service,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    pub sessions: SessionDeps,
    /// Source of WebSocket session ids.
    pub next_session_id: AtomicU64,
    /// Keys and the access policy.
    pub access: auth::Access,
    /// The GraphQL schema (`/graphql`).
    pub graphql: graphql::IsobarSchema,
    /// /current's `Cache-Control` (`max-age` from `http.current_max_age_secs`).
    pub current_cache_control: actix_web::http::header::HeaderValue,
}

impl AppState {
    /// Parses a path id: 400 when malformed.
    pub fn parse_id(raw: &str) -> Result<LocationId, ApiError> {
        Ok(crate::service::parse_id(raw)?)
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

/// CORS for the configured browser origins: GET and POST with `Authorization` and
/// `Content-Type`, preflights cached for an hour.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST"])
        .allowed_headers([actix_web::http::header::AUTHORIZATION, actix_web::http::header::CONTENT_TYPE])
        .expose_headers(["ratelimit", "ratelimit-policy", "retry-after", "etag"])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Headers every answer carries: no MIME sniffing, no framing, no referrer, and a
/// content policy that lets an API answer run nothing.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("x-content-type-options", "nosniff"))
        .add(("x-frame-options", "DENY"))
        .add(("referrer-policy", "no-referrer"))
        .add(("content-security-policy", "default-src 'none'; frame-ancestors 'none'"))
}

/// Counts and times every request by method, route pattern (never the raw path) and status.
pub async fn record_metrics(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let response = next.call(req).await?;
    let request = response.request();
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        // Asked after routing, actix-web finds the pattern by the route it took, without
        // matching the path against the routes again.
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        let status = response.status();
        let metrics = &state.metrics;
        metrics.http_requests.with_label_values(&[method_label(request.method()), &route, status.as_str()]).inc();
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
