//! The OpenAPI 3 document served at /api/openapi.json, generated from the handlers'
//! annotations so it cannot drift from the routes.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::domain::{
    Anomaly, AnomalyKind, Band, Current, FieldError, Location, LocationKind, LocationRef, Severity, SourceContribution,
    Units, Values,
};
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
        locations::anomalies,
        locations::forecast,
        locations::train,
        locations::air_quality,
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
        locations::AnomaliesResponse,
        locations::TrainedBody,
        crate::analytics::forecast::Model,
        crate::analytics::aqi::AirQuality,
        crate::domain::AirQualitySummary,
        crate::analytics::aqi::PollutantIndex,
        crate::analytics::aqi::Pollutant,
        crate::analytics::aqi::Averaging,
        crate::analytics::aqi::Category,
        crate::analytics::aqi::AirSource,
        crate::analytics::aqi::AqiHour,
        crate::analytics::aqi::advice::Advice,
        crate::analytics::aqi::european::EuropeanIndex,
        crate::analytics::aqi::european::EuropeanPollutant,
        crate::analytics::aqi::european::EuropeanLevel,
        crate::domain::ReportedIndex,
        Anomaly,
        AnomalyKind,
        Band,
        Severity,
        locations::ReadingView,
        locations::ReadingFlag,
        Values,
        crate::service::IngestResponse,
        crate::service::Rejected,
    )),
    modifiers(&SecuritySchemes, &ReadingInput, &AccessAnswers)
)]
pub struct ApiDoc;

/// What access control may answer on any route: 401 for a key that is not ours, 429
/// past a rate limit (every route but /health).
struct AccessAnswers;

impl Modify for AccessAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::http::error::PROBLEM_JSON,
                    utoipa::openapi::ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.post].into_iter().flatten();
            for operation in operations {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| RefOr::T(problem("An API key that is not valid (unknown or revoked)")));
                if path != "/health" {
                    responses
                        .entry("429".into())
                        .or_insert_with(|| RefOr::T(problem("Over the rate limit; see Retry-After and RateLimit")));
                }
            }
        }
    }
}

/// The body of POST /v1/readings: a reading (with every quantity's valid range, from the
/// quantity table) or an array of 1 to 10,000.
struct ReadingInput;

impl Modify for ReadingInput {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
            SchemaType, Type,
        };
        use utoipa::openapi::{Ref, RefOr};

        let nullable_number = |min: f64, max: f64, description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Number, Type::Null]))
                .minimum(min.is_finite().then_some(min))
                .maximum(max.is_finite().then_some(max))
                .description(Some(description))
        };
        let mut reading = ObjectBuilder::new()
            .description(Some(
                "A reading. It must also be no older than locations.history_hours and no more than \
                 locations.max_clock_skew_secs ahead of the server's clock, and a new station needs \
                 latitude and longitude: those items are rejected with 422.",
            ))
            .property(
                "location_id",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some(crate::domain::LOCATION_ID_PATTERN)),
            )
            .required("location_id")
            .property(
                "source",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[a-z0-9][a-z0-9._-]{0,31}$"))
                    .description(Some("Your source's name; the providers' names are reserved")),
            )
            .required("source")
            .property(
                "observed_at",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .required("observed_at")
            .property("latitude", nullable_number(-90.0, 90.0, "A new station's latitude"))
            .property("longitude", nullable_number(-180.0, 180.0, "A new station's longitude"))
            .property(
                "weather_code",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                    .minimum(Some(0))
                    .maximum(Some(99))
                    .description(Some("WMO weather code")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for spec in &crate::domain::QUANTITIES {
            let description = format!("{} ({})", spec.description, spec.metric_unit);
            reading = reading.property(spec.name, nullable_number(spec.min, spec.max, &description));
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert("ReadingInput".into(), RefOr::T(Schema::Object(reading.build())));
        let one = || RefOr::Ref(Ref::from_schema_name("ReadingInput"));
        let body = OneOfBuilder::new()
            .item(one())
            .item(ArrayBuilder::new().items(one()).min_items(Some(1)).max_items(Some(10_000)));
        let operation = openapi.paths.paths.get_mut("/v1/readings").and_then(|item| item.post.as_mut());
        if let Some(RefOr::T(request)) = operation.and_then(|op| op.request_body.as_mut())
            && let Some(RefOr::T(content)) = request.content.get_mut("application/json")
        {
            content.schema = Some(RefOr::T(Schema::OneOf(body.build())));
        }
    }
}

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
