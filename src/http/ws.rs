//! WebSocket endpoints: `/v1/ws` (subscribe by message) and `/ws/weather/{id}` (already
//! subscribed to one location). Each upgraded connection becomes a `WsSession` actor.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::actors::session::WsSession;
use crate::domain::LocationId;
use crate::http::{ApiError, AppState};

/// WebSocket with the JSON protocol of DESIGN §3.
#[utoipa::path(get, path = "/v1/ws", tag = "live", security((), ("bearer" = []), ("api_key_query" = [])),
    responses((status = 101, description = "Switching protocols: send {\"type\":\"subscribe\",\"locations\":[\"KJFK\"]}"),
              (status = 401, body = crate::http::error::Problem, content_type = "application/problem+json", description = "An API key that is not valid"),
              (status = 426, body = crate::http::error::Problem, content_type = "application/problem+json", description = "Not a WebSocket upgrade"),
              (status = 429, body = crate::http::error::Problem, content_type = "application/problem+json", description = "Too many connections or requests")))]
pub async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    upgrade(&state, &req, body, None)
}

/// WebSocket already subscribed to one location.
#[utoipa::path(get, path = "/ws/weather/{id}", tag = "live", security((), ("bearer" = []), ("api_key_query" = [])),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"),
           ("since" = Option<u64>, Query, description = "The last seq seen, to resume after a reconnect: `resumed` when nothing was missed, else a snapshot saying how many updates it replaces (`missed`) or that the history restarted (`reset`)")),
    responses((status = 101, description = "Switching protocols; a snapshot (or `resumed`) follows"),
              (status = 400, body = crate::http::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::http::error::Problem, content_type = "application/problem+json"),
              (status = 401, body = crate::http::error::Problem, content_type = "application/problem+json", description = "An API key that is not valid"),
              (status = 426, body = crate::http::error::Problem, content_type = "application/problem+json", description = "Not a WebSocket upgrade"),
              (status = 429, body = crate::http::error::Problem, content_type = "application/problem+json", description = "Too many connections or requests")))]
pub async fn connect_to_location(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Resume>,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let id = AppState::parse_id(&path)?;
    let since = match query.since.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::invalid_param("since", format!("must be the last seq seen, a whole number; got {raw:?}"))
        })?),
    };
    // Unknown locations are refused before the upgrade, with a plain 404 problem.
    state.service.resolve(&id).await.map_err(ApiError::from)?;
    upgrade(&state, &req, body, Some((id, since)))
}

/// `?since=`: the last `seq` the client saw, to resume after a reconnect.
#[derive(serde::Deserialize)]
pub struct Resume {
    since: Option<String>,
}

fn upgrade(
    state: &AppState,
    req: &HttpRequest,
    body: web::Payload,
    initial: Option<(LocationId, Option<u64>)>,
) -> Result<HttpResponse, actix_web::Error> {
    let slot = state.access.websocket_slot(&crate::http::auth::caller(req))?;
    let (response, session, stream) = actix_ws::handle(req, body)
        .map_err(|e| ApiError::UpgradeRequired(format!("WebSocket upgrade required: {e}")))?;
    let id = state.next_session_id.fetch_add(1, Ordering::Relaxed);
    WsSession::start(id, session, stream, state.sessions.clone(), initial, slot);
    Ok(response)
}
