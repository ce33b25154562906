//! POST /v1/readings: one reading or an array of up to 10,000, at most 1 MiB.
//!
//! Every item is parsed and validated on its own; valid items are applied even when
//! others in the batch are not, and each rejected item is reported with its index and
//! the fields at fault. 202 with the count accepted; 422 when nothing was.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::actors::directory::{FindUnroutable, RouteReadings};
use crate::actors::kafka::ProduceReadings;
use crate::domain::reading::{rejection_reason, source_label};
use crate::domain::{FieldError, Reading};
use crate::http::error::Problem;
use crate::http::{ApiError, AppState};

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_ITEMS: usize = 10_000;

#[derive(Serialize, ToSchema)]
pub struct Rejected {
    index: usize,
    errors: Vec<FieldError>,
}

#[derive(Serialize, ToSchema)]
pub struct IngestResponse {
    accepted: usize,
    rejected: Vec<Rejected>,
}

/// Ingest station readings.
#[utoipa::path(post, path = "/v1/readings", tag = "readings",
    request_body(content = serde_json::Value, description = "A Reading or an array of up to 10,000 (1 MiB max)", content_type = "application/json"),
    responses((status = 202, body = IngestResponse),
              (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON"),
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
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
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

    let now = Utc::now();
    let earliest = now - Duration::hours(state.settings.locations.history_hours as i64);
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let parsed = Reading::from_json(item, now).and_then(|r| {
            if r.observed_at < earliest {
                Err(vec![FieldError::new(
                    "observed_at",
                    format!("is older than the {} h this service keeps", state.settings.locations.history_hours),
                )])
            } else {
                Ok(r)
            }
        });
        match parsed {
            Ok(reading) => valid.push((index, reading)),
            Err(errors) => {
                let source = source_label(item.get("source").and_then(Value::as_str).unwrap_or("other"));
                state.metrics.readings_rejected.with_label_values(&[source, rejection_reason(&errors)]).inc();
                rejected.push(Rejected { index, errors });
            }
        }
    }
    let sources: Vec<(usize, &'static str)> =
        valid.iter().map(|(i, r)| (*i, source_label(r.source.as_str()))).collect();
    let unroutable = if valid.is_empty() {
        Vec::new()
    } else if let Some(kafka) = &state.kafka {
        // One log for everything: the readings go through the topic, and the 202 waits
        // for the broker's acknowledgement.
        let check = valid.iter().map(|(i, r)| (*i, r.location_id.clone(), r.latitude.is_some())).collect();
        let unroutable = state.directory.send(FindUnroutable { readings: check }).await?;
        let routable: Vec<Reading> = valid
            .into_iter()
            .filter(|(i, _)| unroutable.binary_search_by_key(i, |(u, _)| *u).is_err())
            .map(|(_, r)| r)
            .collect();
        if !routable.is_empty() {
            kafka.send(ProduceReadings { readings: routable }).await?.map_err(|e| ApiError::Unavailable {
                detail: format!(
                    "Kafka did not acknowledge the readings ({e}); retry (a repeated reading is dropped as a duplicate)"
                ),
                retry_after_secs: 5,
            })?;
        }
        unroutable
    } else {
        state.directory.send(RouteReadings { readings: valid, wait: false, adopt: Vec::new() }).await?
    };
    for (index, error) in &unroutable {
        let source = sources.binary_search_by_key(index, |(i, _)| *i).map_or("other", |at| sources[at].1);
        state.metrics.readings_rejected.with_label_values(&[source, "unknown_location"]).inc();
        rejected.push(Rejected { index: *index, errors: vec![error.clone()] });
    }
    rejected.sort_by_key(|r| r.index);
    let accepted = items.len() - rejected.len();
    if accepted == 0 {
        let detail = if items.len() == 1 {
            "the reading was rejected; see errors".to_owned()
        } else {
            format!("all {} readings were rejected; see rejected", items.len())
        };
        let extra = serde_json::to_value(&rejected).unwrap_or_default();
        let errors = if items.len() == 1 { rejected.pop().map(|r| r.errors) } else { None };
        return Err(match errors {
            Some(errors) => ApiError::Unprocessable {
                detail,
                extra: Some(("errors", serde_json::to_value(errors).unwrap_or_default())),
            },
            None => ApiError::Unprocessable { detail, extra: Some(("rejected", extra)) },
        });
    }
    Ok(HttpResponse::Accepted().json(IngestResponse { accepted, rejected }))
}
