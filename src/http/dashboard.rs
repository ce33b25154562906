//! The dashboard (`web/`, built by Vite into `web/dist/` and embedded in the binary) at
//! `/`, and the OpenAPI document in Swagger UI (vendored in the binary) at `/api/docs/`.
//!
//! Hashed assets are cached for a year (`immutable`); `index.html` is revalidated every
//! time, so a new build shows at once. Both pages get a Content-Security-Policy of their
//! own (the API's is `default-src 'none'`).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use rust_embed::RustEmbed;

use crate::http::ApiError;

#[derive(RustEmbed)]
#[folder = "web/dist/"]
struct Dashboard;

/// What the dashboard may load: itself, and the API and feed on its own origin.
pub const DASHBOARD_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// Swagger UI's page: its own scripts and styles, and the OpenAPI document.
pub const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
    script-src 'self'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::routes::resource("/", "GET, HEAD").route(web::get().to(index)).route(web::head().to(index)),
    )
    .service(
        crate::http::routes::resource("/assets/{file}", "GET, HEAD")
            .route(web::get().to(asset))
            .route(web::head().to(asset)),
    )
    .service(web::redirect("/api/docs", "/api/docs/"))
    .service(
        // Swagger UI's pages get their policy here (the API's would block its scripts), so
        // that no other request pays for a middleware.
        web::scope("/api/docs")
            .wrap(actix_web::middleware::DefaultHeaders::new().add((header::CONTENT_SECURITY_POLICY, DOCS_POLICY)))
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/{_:.*}")
                    .config(utoipa_swagger_ui::Config::from("/api/openapi.json")),
            ),
    );
}

async fn index() -> Result<HttpResponse, ApiError> {
    let page = Dashboard::get("index.html")
        .ok_or_else(|| ApiError::NotFound("the dashboard is not in this build (web/dist is empty)".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("content-security-policy", DASHBOARD_POLICY))
        .body(page.data.into_owned()))
}

async fn asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let file =
        Dashboard::get(&format!("assets/{name}")).ok_or_else(|| ApiError::NotFound(format!("no asset {name}")))?;
    let content_type = match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::ETAG, format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..8]))))
        .body(file.data.into_owned()))
}
