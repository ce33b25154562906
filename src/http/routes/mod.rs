//! Route table (DESIGN §3). Each resource answers a wrong method with a 405 problem.

pub mod locations;
pub mod ops;
pub mod readings;

use actix_web::{HttpRequest, web};

use super::ApiError;
use super::ws;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/health").route(web::get().to(ops::health)))
        .service(get("/ready").route(web::get().to(ops::ready)))
        .service(get("/metrics").route(web::get().to(ops::metrics)))
        .service(get("/api/openapi.json").route(web::get().to(super::openapi::openapi)))
        .service(get("/v1/locations").route(web::get().to(locations::search)))
        .service(get("/v1/locations/nearest").route(web::get().to(locations::nearest)))
        // Routes are tried in order, each one with parameters by a regex capture: the
        // busiest (/current) comes before every other with a parameter.
        .service(get("/v1/locations/{id}/current").route(web::get().to(locations::current)))
        .service(get("/v1/locations/{id}").route(web::get().to(locations::get)))
        .service(get("/v1/locations/{id}/history").route(web::get().to(locations::history)))
        .service(get("/v1/locations/{id}/anomalies").route(web::get().to(locations::anomalies)))
        .service(get("/v1/locations/{id}/forecast").route(web::get().to(locations::forecast)))
        .service(get("/v1/locations/{id}/air-quality").route(web::get().to(locations::air_quality)))
        .service(resource("/v1/locations/{id}/forecast/train", "POST").route(web::post().to(locations::train)))
        .service(resource("/v1/readings", "POST").route(web::post().to(readings::post)))
        .service(get("/v1/ws").route(web::get().to(ws::connect)))
        .service(get("/ws/weather/{id}").route(web::get().to(ws::connect_to_location)));
}

fn get(path: &str) -> actix_web::Resource {
    resource(path, "GET")
}

/// A resource answering other methods than `allow` with 405 and an `Allow` header.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| method_not_allowed(req, allow)))
}

async fn method_not_allowed(req: HttpRequest, allow: &'static str) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let mut response =
        ApiError::MethodNotAllowed(format!("{} is not allowed on {}; use {allow}", req.method(), req.path()))
            .error_response();
    response
        .headers_mut()
        .insert(actix_web::http::header::ALLOW, actix_web::http::header::HeaderValue::from_static(allow));
    response
}
