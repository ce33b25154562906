//! The OpenAPI 3 document served at /api/openapi.json, generated from the handlers'
//! annotations so it cannot drift from the routes.

use utoipa::OpenApi;

use crate::domain::{Current, FieldError, Location, LocationKind, LocationRef, SourceContribution, Units, Values};
use crate::http::error::Problem;
use crate::http::routes::{locations, ops, readings};
use crate::http::ws;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "isobar",
        description = "Real-time weather: several providers and your own stations merged into one picture per location."
    ),
    paths(
        ops::health,
        ops::ready,
        ops::metrics,
        openapi,
        locations::search,
        locations::nearest,
        locations::get,
        locations::current,
        locations::history,
        locations::forecast,
        readings::post,
        ws::connect,
        ws::connect_to_location,
    ),
    components(schemas(
        Location,
        LocationKind,
        Current,
        LocationRef,
        SourceContribution,
        Units,
        FieldError,
        Problem,
        locations::SearchResponse,
        locations::NearestResponse,
        locations::HistoryResponse,
        locations::ReadingView,
        Values,
        crate::service::IngestResponse,
        crate::service::Rejected,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", body = serde_json::Value)))]
pub async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(<ApiDoc as OpenApi>::openapi())
}
