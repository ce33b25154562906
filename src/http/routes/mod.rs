//! Route table (DESIGN §3). Each resource answers a wrong method with a 405 problem.

pub mod locations;
pub mod ops;
pub mod readings;

use actix_web::{HttpRequest, web};

use super::ApiError;
use super::ws;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health").route(web::get().to(ops::health)))
        .service(resource("/ready").route(web::get().to(ops::ready)))
        .service(resource("/metrics").route(web::get().to(ops::metrics)))
        .service(resource("/api/openapi.json").route(web::get().to(super::openapi::openapi)))
        .service(resource("/v1/locations").route(web::get().to(locations::search)))
        .service(resource("/v1/locations/nearest").route(web::get().to(locations::nearest)))
        .service(resource("/v1/locations/{id}").route(web::get().to(locations::get)))
        .service(resource("/v1/locations/{id}/current").route(web::get().to(locations::current)))
        .service(resource("/v1/locations/{id}/history").route(web::get().to(locations::history)))
        .service(resource("/v1/locations/{id}/forecast").route(web::get().to(locations::forecast)))
        .service(resource("/v1/readings").route(web::post().to(readings::post)))
        .service(resource("/v1/ws").route(web::get().to(ws::connect)))
        .service(resource("/ws/weather/{id}").route(web::get().to(ws::connect_to_location)));
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    ApiError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.path())).error_response()
}
