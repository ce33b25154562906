//! Operational endpoints: liveness, readiness, metrics.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::AppState;

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process serves", body = serde_json::Value, example = json!({"status": "ok"}))))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: 200 when every component and configured backend answers, else 503.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready", body = serde_json::Value),
              (status = 503, description = "A dependency is down; the body names it", body = serde_json::Value)))]
pub async fn ready(state: web::Data<AppState>, req: actix_web::HttpRequest) -> HttpResponse {
    let readiness = state.service.readiness().await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if crate::http::auth::caller(&req).operator() {
        return HttpResponse::build(status).json(readiness.body);
    }
    // Which dependency is down, and why, is for operators (an admin key, or loopback).
    HttpResponse::build(status).json(json!({ "status": readiness.body["status"] }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = []), ()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String),
              (status = 401, body = crate::http::error::Problem, content_type = "application/problem+json", description = "Not on loopback and no admin key"),
              (status = 403, body = crate::http::error::Problem, content_type = "application/problem+json", description = "Not an admin key")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Refreshes `isobar_ready` and `isobar_dependency_up`, so an alert sees an instance
    // that stays unready even where nothing probes /ready (Compose).
    state.service.readiness().await;
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}
