//! The OpenAPI 3 document served at /api/openapi.json, generated from the handlers'
//! annotations so it cannot drift from the routes.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
    )),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The API key, sent as `Authorization: Bearer KEY` (`bearer`), or on WebSocket routes as
/// `?api_key=KEY` (`api_key_query`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("An API key made with `isobar keys create`".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "api_key_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "api_key",
                "The API key, for browser WebSockets (which cannot send headers)",
            ))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", body = serde_json::Value)))]
pub async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(<ApiDoc as OpenApi>::openapi())
}
