use serde_json::json;

use crate::helpers::{spawn_app, station_reading};

#[actix_rt::test]
async fn health_and_ready_answer_200_with_their_dependencies() {
    let app = spawn_app().await;
    assert_eq!(app.get_json("/health").await, (200, json!({"status": "ok"})));
    assert_eq!(
        app.get_json("/ready").await,
        (
            200,
            json!({"status": "ready", "dependencies": [
            {"name": "directory", "state": "up"},
            {"name": "memory", "state": "up", "queued": 0}], "sources": []})
        )
    );
}

#[actix_rt::test]
async fn metrics_use_route_patterns_and_never_a_location_id() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("METRICSSTN", 1, 1.0)).await;
    app.get("/v1/locations/METRICSSTN/current").await;
    app.get("/v1/locations/METRICSSTN/current").await;
    app.get("/no/such/route").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(!text.contains("METRICSSTN"), "a location id leaked into /metrics");
    for line in [
        "isobar_http_requests_total{method=\"GET\",route=\"/v1/locations/{id}/current\",status=\"200\"} 2",
        "isobar_http_requests_total{method=\"POST\",route=\"/v1/readings\",status=\"202\"} 1",
        "isobar_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "isobar_http_request_duration_seconds_count{route=\"/v1/locations/{id}/current\"} 2",
        "isobar_readings_ingested_total{source=\"station\"} 1",
        "isobar_locations_active 1",
        "isobar_ws_connections 0",
        "isobar_ws_messages_sent_total 0",
        "isobar_ws_clients_dropped_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("process_resident_memory_bytes ")), "process metrics");
}

#[actix_rt::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<_> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/openapi.json",
            "/health",
            "/metrics",
            "/ready",
            "/v1/locations",
            "/v1/locations/nearest",
            "/v1/locations/{id}",
            "/v1/locations/{id}/air-quality",
            "/v1/locations/{id}/anomalies",
            "/v1/locations/{id}/current",
            "/v1/locations/{id}/forecast",
            "/v1/locations/{id}/forecast/train",
            "/v1/locations/{id}/history",
            "/v1/readings",
            "/v1/ws",
            "/ws/weather/{id}",
        ]
    );
    assert!(doc["components"]["schemas"]["Current"].is_object());
}

#[actix_rt::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = spawn_app().await;
    let r = app.get("/v2/nothing").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["detail"], "no route for GET /v2/nothing");
    let r = app.client.delete(app.url("/v1/readings")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["detail"],
        "DELETE is not allowed on /v1/readings; use POST"
    );
    let r = app.client.put(app.url("/v1/locations/KJFK/current")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "GET"));
}
