//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;
use utoipa::OpenApi;

use crate::actors::directory::Describe;
use crate::actors::kafka::CheckKafka;
use crate::actors::persister::CheckBackends;
use crate::actors::poller::GetProviderStatus;
use crate::domain::LocationId;
use crate::http::AppState;
use crate::http::openapi::ApiDoc;

/// How long /ready waits for each component.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

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
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let probe = LocationId::parse("0").ok();
    let directory = match probe {
        Some(id) => tokio::time::timeout(READY_TIMEOUT, state.directory.send(Describe { id })).await,
        None => return HttpResponse::InternalServerError().finish(),
    };
    let backends = tokio::time::timeout(READY_TIMEOUT * 2, state.persister.send(CheckBackends)).await;
    let kafka = match &state.kafka {
        Some(k) => Some(tokio::time::timeout(READY_TIMEOUT * 2, k.send(CheckKafka)).await),
        None => None,
    };
    let mut sources = Vec::new();
    for provider in &state.providers {
        if let Ok(Ok(status)) = tokio::time::timeout(READY_TIMEOUT, provider.send(GetProviderStatus)).await {
            sources.push(status);
        }
    }
    let up = |ok: bool| if ok { "up" } else { "down" };
    let directory_up = matches!(directory, Ok(Ok(_)));
    let mut dependencies = vec![json!({"name": "directory", "state": up(directory_up)})];
    let mut all_up = directory_up;
    match backends {
        Ok(Ok(statuses)) => {
            for s in statuses {
                all_up &= s.state == "up";
                dependencies.push(serde_json::to_value(s).unwrap_or_default());
            }
        }
        _ => {
            all_up = false;
            dependencies.push(json!({"name": "persister", "state": "down", "detail": "the persister did not answer"}));
        }
    }
    match kafka {
        None => {}
        Some(Ok(Ok(Ok(())))) => dependencies.push(json!({"name": "kafka", "state": "up"})),
        Some(result) => {
            all_up = false;
            let detail = match result {
                Ok(Ok(Err(e))) => e,
                _ => "kafka: no answer".to_owned(),
            };
            dependencies.push(json!({"name": "kafka", "state": "down", "detail": detail}));
        }
    }
    let body = json!({
        "status": if all_up { "ready" } else { "not ready" },
        "dependencies": dependencies,
        // Upstream providers: reported, but a failing provider does not make the
        // instance unready (it keeps serving what it has, marked stale).
        "sources": sources,
    });
    let status = if all_up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).json(body)
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", body = serde_json::Value)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
