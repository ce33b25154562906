//! GraphQL at /graphql, driven by a client nobody here wrote: Python gql 4 (PyPI), over
//! HTTP and over WebSocket (graphql-transport-ws and the older graphql-ws), through
//! `tests/graphql_client.py`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use chrono::DurationRound;
use serde_json::{Value, json};

use crate::helpers::{TestApp, clear_of_the_hour, python, spawn_app, spawn_app_with, station_reading};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/graphql_client.py");

/// Starts the client in `mode` with `request` on its stdin.
fn client(mode: &str, app: &TestApp, request: Value) -> Child {
    let mut child = Command::new(python())
        .args([CLIENT, mode, &app.url("/graphql")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python runs; `bash scripts/test` installs gql");
    child.stdin.take().expect("piped").write_all(request.to_string().as_bytes()).expect("client reads");
    child
}

/// One request over HTTP: the client's `{"data": …}` or `{"errors": […]}`.
async fn http(app: &TestApp, request: Value) -> Value {
    let child = client("http", app, request);
    let out = actix_web::rt::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "gql client failed; is gql installed? `bash scripts/test` installs it");
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}

#[actix_rt::test]
async fn a_query_returns_exactly_what_rest_returns_for_the_same_location() {
    clear_of_the_hour().await;
    let app = spawn_app().await;
    let hour = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    let mut readings = vec![station_reading("GQL1", 90, 5.5), station_reading("GQL1", 30, 6.5)];
    for (k, r) in readings.iter_mut().enumerate() {
        r["observed_at"] = json!((hour - chrono::Duration::hours(1 - k as i64)).to_rfc3339());
        r["pm2_5"] = json!(12.0 + k as f64);
    }
    let (status, _) = app.post_readings(&json!(readings)).await;
    assert_eq!(status, 202);
    let query = r#"query Place($id: String!) {
        location(id: $id) {
            id name country timezone latitude longitude kind
            current
            imperial: current(units: "imperial")
            conditions(units: "imperial") {
                observedAt units temperature: value(quantity: "temperature") stale confidence sourcesCount
                values { quantity value unit }
            }
            history
            airQuality
            anomalies
        }
    }"#;
    let answer = http(&app, json!({"query": query, "variables": {"id": "GQL1"}})).await;
    let location = &answer["data"]["location"];
    let rest = |path: &str| {
        let app = &app;
        let path = path.to_owned();
        async move { app.get_json(&path).await.1 }
    };
    let described = rest("/v1/locations/GQL1").await;
    for field in ["id", "name", "country", "timezone", "latitude", "longitude", "kind"] {
        assert_eq!(location[field], described[field], "{field}");
    }
    assert_eq!(location["current"], rest("/v1/locations/GQL1/current").await);
    assert_eq!(location["imperial"], rest("/v1/locations/GQL1/current?units=imperial").await);
    assert_eq!(location["history"], rest("/v1/locations/GQL1/history").await);
    assert_eq!(location["airQuality"], rest("/v1/locations/GQL1/air-quality").await);
    assert_eq!(location["anomalies"], rest("/v1/locations/GQL1/anomalies").await);
    assert_eq!(location["current"]["temperature"], 6.5);
    // The typed conditions are the same update.
    let (imperial, conditions) = (&location["imperial"], &location["conditions"]);
    assert_eq!(conditions["temperature"], imperial["temperature"]);
    for field in [
        ("observedAt", "observed_at"),
        ("stale", "stale"),
        ("confidence", "confidence"),
        ("sourcesCount", "sources_count"),
    ] {
        assert_eq!(conditions[field.0], imperial[field.1], "{field:?}");
    }
    assert_eq!(conditions["units"], "imperial");
    assert_eq!(
        conditions["values"][0],
        json!({"quantity": "temperature", "value": imperial["temperature"], "unit": "°F"})
    );
    let present =
        conditions["values"].as_array().unwrap().iter().map(|v| v["quantity"].as_str().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        present,
        ["temperature", "humidity", "pressure", "wind_speed", "wind_direction", "visibility", "precipitation", "pm2_5"]
    );
    // Without a query or GraphiQL (graphql.playground), GET /graphql says what it takes.
    let (status, problem) = app.get_json("/graphql").await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (400, Some("GET /graphql needs a query (?query=…); POST for mutations; GraphiQL is off (graphql.playground)"))
    );
    // A bad parameter is the REST 400's words, with a code.
    let answer = http(&app, json!({"query": r#"{ location(id: "GQL1") { history(step: "fortnight") } }"#})).await;
    let error = &answer["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_REQUEST");
    assert_eq!(
        error["extensions"]["errors"],
        json!([{"field": "step", "message": "must be a duration such as 30s, 15m, 1h or 1d, got \"fortnight\""}])
    );
    let answer = http(&app, json!({"query": r#"{ location(id: "NOPE9") { id } }"#})).await;
    assert_eq!(
        (&answer["errors"][0]["message"], &answer["errors"][0]["extensions"]["code"]),
        (&json!("unknown location NOPE9"), &json!("NOT_FOUND"))
    );
}

#[actix_rt::test]
async fn a_subscription_gets_the_snapshot_then_an_update_within_100_ms_of_a_post() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("GQL2", 5, 4.0)).await;
    let mut shown = 4.0;
    // Each protocol's reading one minute apart: two within the same second would be one
    // reading (a duplicate, dropped) when the first client closes fast.
    for (protocol, temperature, minutes_ago) in [("graphql-transport-ws", 8.0, 2), ("graphql-ws", 9.0, 1)] {
        let query = "subscription Live($ids: [String!]!) { updates(locationIds: $ids) { type locationId data } }";
        let mut child = client(
            "subscribe",
            &app,
            json!({"query": query, "variables": {"ids": ["GQL2"]}, "count": 2, "protocol": protocol}),
        );
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut next = async || {
            let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines_rx.recv()).await;
            let line = line.expect("a message within 10 s").expect("the client is running").expect("readable");
            serde_json::from_str::<Value>(&line).expect("a JSON line")
        };
        let snapshot = next().await;
        assert_eq!(snapshot["data"]["updates"]["type"], "snapshot", "{protocol}: {snapshot}");
        assert_eq!(snapshot["data"]["updates"]["locationId"], "GQL2");
        assert_eq!(snapshot["data"]["updates"]["data"]["temperature"], shown);
        let posted_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let (status, _) = app.post_readings(&station_reading("GQL2", minutes_ago, temperature)).await;
        assert_eq!(status, 202);
        let update = next().await;
        assert_eq!(update["data"]["updates"]["type"], "update", "{protocol}: {update}");
        assert_eq!(update["data"]["updates"]["data"]["temperature"], temperature);
        let after_ms = (update["at"].as_f64().unwrap() - posted_at) * 1000.0;
        assert!(after_ms < 100.0, "{protocol}: the update came {after_ms:.1} ms after the POST");
        assert!(child.wait().unwrap().success());
        shown = temperature;
    }
}

#[actix_rt::test]
async fn an_unauthenticated_submit_readings_is_refused_like_post_and_an_authorized_one_is_acknowledged_like_it() {
    let writer = json!({"name": "writer", "sha256": isobar::auth::hash("isb_writer"), "scope": "write", "sources": []});
    let app = spawn_app_with(json!({"auth": {"loopback_writes": false, "keys": [writer]}})).await;
    let mutation = "mutation Send($r: [JSON!]!) { submitReadings(readings: $r) }";
    let reading = station_reading("GQL3", 2, 7.0);
    let refused = http(&app, json!({"query": mutation, "variables": {"r": [reading]}})).await;
    let (status, problem) = app.post_readings(&reading).await;
    assert_eq!(status, 401);
    assert_eq!(
        (&refused["errors"][0]["message"], &refused["errors"][0]["extensions"]["code"]),
        (&problem["detail"], &json!("UNAUTHORIZED"))
    );
    // With a write key: REST's acknowledgement, and a bad item rejected with its fields.
    let bad = json!({"location_id": "GQL3", "source": "station", "observed_at": "yesterday"});
    let headers = json!({"Authorization": "Bearer isb_writer"});
    let answer = http(&app, json!({"query": mutation, "variables": {"r": [reading, bad]}, "headers": headers})).await;
    assert_eq!(answer["data"]["submitReadings"]["accepted"], 1, "{answer}");
    assert_eq!(answer["data"]["submitReadings"]["rejected"][0]["index"], 1);
    assert_eq!(app.get_json("/v1/locations/GQL3/current").await.1["temperature"], 7.0);
}

#[actix_rt::test]
async fn an_over_deep_or_over_complex_query_is_refused_and_batches_gets_and_subscriptions_are_bounded() {
    let app = spawn_app_with(json!({"graphql": {"max_depth": 2, "max_batch": 2, "playground": true}})).await;
    let page = app.get("/graphql").await;
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("graphiql"));
    let deep = r#"{ nearest(lat: 40.7, lon: -74.0) { location { id } } }"#;
    let answer = http(&app, json!({"query": deep})).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{answer}");
    assert_eq!(answer["errors"][0]["message"], "Query is nested too deep.");
    let shallow = http(&app, json!({"query": r#"{ nearest(lat: 40.7, lon: -74.0) { distanceKm } }"#})).await;
    assert!(shallow["data"]["nearest"]["distanceKm"].as_f64().is_some(), "{shallow}");
    // A batch over graphql.max_batch is a 400 problem.
    let one = json!({"query": "{ locations(search: \"New\") { id } }"});
    let response = app.client.post(app.url("/graphql")).json(&json!([one, one, one])).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "3 operations in one batch; at most 2 (graphql.max_batch)");
    let response = app.client.post(app.url("/graphql")).json(&json!([one, one])).send().await.unwrap();
    let answers: Value = response.json().await.unwrap();
    assert_eq!(answers.as_array().map(Vec::len), Some(2));
    // GET runs queries, not mutations.
    let (status, answer) = app
        .get_json(
            "/graphql?query=%7B%20locations(search%3A%20%22New%20York%22%2C%20limit%3A%201)%20%7B%20id%20%7D%20%7D",
        )
        .await;
    assert_eq!((status, &answer["data"]["locations"][0]["id"]), (200, &json!("5128581")));
    let (status, problem) =
        app.get_json("/graphql?query=mutation%20%7B%20submitReadings(readings%3A%20%5B%5D)%20%7D").await;
    assert_eq!((status, problem["detail"].as_str()), (405, Some("mutations are sent with POST")));
    let complex = spawn_app_with(json!({"graphql": {"max_complexity": 3}})).await;
    let answer = http(&complex, json!({"query": r#"{ location(id: "5128581") { id name country timezone } }"#})).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{answer}");
    assert_eq!(answer["errors"][0]["message"], "Query is too complex.");
}

#[actix_rt::test]
async fn a_connection_holds_at_most_graphql_max_subscriptions() {
    let app = spawn_app_with(json!({"graphql": {"max_subscriptions": 1}})).await;
    app.post_readings(&station_reading("GQL4", 5, 4.0)).await;
    // Two subscriptions in one document run as one operation each over one connection:
    // gql opens one connection per subscribe call, so the test speaks the protocol itself.
    let (mut socket, _) = tokio_tungstenite::connect_async(tungstenite_request(&app)).await.expect("connects");
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let send = |v: Value| Message::Text(v.to_string().into());
    socket.send(send(json!({"type": "connection_init"}))).await.unwrap();
    let query = "subscription { updates(locationIds: [\"GQL4\"]) { type } }";
    socket.send(send(json!({"id": "1", "type": "subscribe", "payload": {"query": query}}))).await.unwrap();
    socket.send(send(json!({"id": "2", "type": "subscribe", "payload": {"query": query}}))).await.unwrap();
    let mut by_id = std::collections::HashMap::new();
    while by_id.len() < 2 {
        let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("the connection stays open") };
        let message: Value = serde_json::from_str(&text).unwrap();
        if let Some(id) = message["id"].as_str() {
            by_id.entry(id.to_owned()).or_insert(message);
        }
    }
    // One of the two holds the slot and gets its snapshot; the other is refused.
    let mut outcomes: Vec<Value> = by_id
        .values()
        .map(|m| {
            let payload = &m["payload"];
            payload["data"]["updates"]["type"].clone().as_str().map_or_else(
                || json!([m["type"], payload["errors"][0]["extensions"]["code"], payload["errors"][0]["message"]]),
                |kind| json!([m["type"], kind]),
            )
        })
        .collect();
    outcomes.sort_by_key(|o| o.to_string());
    assert_eq!(
        outcomes,
        [
            json!([
                "next",
                "TOO_MANY_REQUESTS",
                "at most 1 subscriptions per connection (graphql.max_subscriptions); complete one first"
            ]),
            json!(["next", "snapshot"])
        ]
    );
}

/// A WebSocket request to `/graphql` speaking graphql-transport-ws.
pub fn tungstenite_request(app: &TestApp) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/graphql", app.address).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    request
}

#[test]
fn the_committed_schema_graphql_is_what_the_binary_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_isobar")).arg("graphql-schema").output().expect("isobar runs");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "schema.graphql is stale: run `cargo run -- graphql-schema > schema.graphql`"
    );
}
