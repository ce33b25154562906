//! POST /v1/readings: one reading or an array of up to 10,000, at most 1 MiB.
//!
//! The handler checks the envelope (content type, size, JSON, item count); the service
//! parses and validates every item on its own, applies the valid ones even when others in
//! the batch are not, and reports each rejected item with its index and the fields at
//! fault. 202 with the count accepted; 422 when nothing was.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::http::error::Problem;
use crate::http::{ApiError, AppState};
use crate::service::IngestResponse;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_ITEMS: usize = 10_000;

/// Ingest station readings.
#[utoipa::path(post, path = "/v1/readings", tag = "readings", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A Reading or an array of up to 10,000 (1 MiB max)", content_type = "application/json"),
    responses((status = 202, body = crate::service::IngestResponse),
              (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON"),
              (status = 401, body = Problem, content_type = "application/problem+json", description = "No API key, or not a valid one"),
              (status = 403, body = Problem, content_type = "application/problem+json", description = "A read key; a source the key may not write as; the key's station limit"),
              (status = 413, body = Problem, content_type = "application/problem+json", description = "Over 1 MiB or 10,000 items"),
              (status = 415, body = Problem, content_type = "application/problem+json", description = "Not application/json"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "No item was accepted")))]
pub async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "readings must be sent as application/json, got {:?}",
            if content_type.is_empty() { "no content type" } else { content_type }
        )));
    }
    let too_large = || ApiError::PayloadTooLarge(format!("request body is larger than {MAX_BODY_BYTES} bytes (1 MiB)"));
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(MAX_BODY_BYTES));
    let body_timeout = std::time::Duration::from_secs(state.settings.http.request_body_timeout_secs.max(1));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(body_timeout, read).await.map_err(|_| {
        ApiError::RequestTimeout(format!("the request body did not arrive within {} s", body_timeout.as_secs()))
    })??;
    let writer = crate::http::auth::caller(&req).writer(&state.access.settings);
    if let Some(report) = state.service.submit_valid_body(&body, MAX_ITEMS, &writer).await {
        return answer(report?);
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    if items.len() > MAX_ITEMS {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} readings in one request; at most {MAX_ITEMS} are accepted",
            items.len()
        )));
    }
    if items.is_empty() {
        return Err(ApiError::Unprocessable { detail: "the array holds no readings".into(), extra: None });
    }

    let report = state.service.submit_readings(&items, &writer).await?;
    answer(report)
}

/// 202 with the report, or 422 when no reading was taken.
fn answer(report: IngestResponse) -> Result<HttpResponse, ApiError> {
    let items = report.accepted + report.rejected.len();
    if report.accepted == 0 {
        let mut rejected = report.rejected;
        let detail = if items == 1 {
            "the reading was rejected; see errors".to_owned()
        } else {
            format!("all {items} readings were rejected; see rejected")
        };
        let extra = serde_json::to_value(&rejected).unwrap_or_default();
        let errors = if items == 1 { rejected.pop().map(|r| r.errors) } else { None };
        return Err(match errors {
            Some(errors) => ApiError::Unprocessable {
                detail,
                extra: Some(("errors", serde_json::to_value(errors).unwrap_or_default())),
            },
            None => ApiError::Unprocessable { detail, extra: Some(("rejected", extra)) },
        });
    }
    Ok(HttpResponse::Accepted().json(report))
}
