use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{close_code, next_json, send_json, spawn_app, spawn_app_with, station_reading};

#[actix_rt::test]
async fn a_subscriber_gets_a_snapshot_then_each_update_well_under_a_second_after_ingest() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("WS1", 5, 7.0)).await;
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["WS1"]})).await;
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["location_id"], "WS1");
    assert_eq!(snapshot["data"]["temperature"], 7.0);

    let sent = Instant::now();
    app.post_readings(&station_reading("WS1", 1, 9.5)).await;
    let update = next_json(&mut ws).await;
    let latency = sent.elapsed();
    assert_eq!(update["type"], "update");
    assert_eq!(update["location_id"], "WS1");
    assert_eq!(update["seq"], 2);
    assert_eq!(update["data"]["temperature"], 9.5);
    assert_eq!(update["data"], app.get_json("/v1/locations/WS1/current").await.1);
    assert!(latency < Duration::from_millis(500), "update took {latency:?}");
}

#[actix_rt::test]
async fn every_subscriber_gets_the_same_update_and_unsubscribed_ones_do_not() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("WS2", 5, 1.0)).await;
    let mut a = app.ws("/ws/weather/WS2").await;
    let mut b = app.ws("/ws/weather/WS2").await;
    assert_eq!(next_json(&mut a).await["type"], "snapshot");
    assert_eq!(next_json(&mut b).await["type"], "snapshot");
    send_json(&mut b, json!({"type": "unsubscribe", "locations": ["WS2"]})).await;
    send_json(&mut b, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut b).await, json!({"type": "pong"}));
    app.post_readings(&station_reading("WS2", 1, 2.0)).await;
    assert_eq!(next_json(&mut a).await["data"]["temperature"], 2.0);
    send_json(&mut b, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut b).await, json!({"type": "pong"}), "no update for an unsubscribed location");
}

#[actix_rt::test]
async fn a_location_without_data_yet_gets_a_null_snapshot_and_a_first_update() {
    let app = spawn_app().await;
    let mut ws = app.ws("/ws/weather/5128581").await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "snapshot", "location_id": "5128581", "seq": 0, "data": null}));
    let mut r = station_reading("5128581", 1, 3.0);
    r.as_object_mut().unwrap().remove("latitude");
    r.as_object_mut().unwrap().remove("longitude");
    assert_eq!(app.post_readings(&r).await.0, 202);
    let update = next_json(&mut ws).await;
    assert_eq!((update["seq"].as_u64(), update["data"]["location"]["name"].as_str()), (Some(1), Some("New York City")));
}

#[actix_rt::test]
async fn an_unknown_location_is_refused_with_404_before_the_upgrade() {
    let app = spawn_app().await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/ws/weather/NOPE42", app.address)).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 404),
        other => panic!("expected an HTTP 404, got {other}"),
    }
}

#[actix_rt::test]
async fn bad_messages_get_an_error_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let mut ws = app.ws("/v1/ws").await;
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "code": "invalid_json", "message": "message is not valid JSON"})
    );
    send_json(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "code": "unknown_type", "message": "unknown message type \"dance\"; expected subscribe, unsubscribe or ping"})
    );
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["NOPE77"]})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "code": "unknown_location", "message": "unknown location NOPE77"})
    );
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["bad id"]})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "code": "invalid_location_id", "message": "\"bad id\" is not a valid location id"})
    );
    send_json(&mut ws, json!({"type": "subscribe", "locations": "KJFK"})).await;
    assert_eq!(next_json(&mut ws).await["code"], "invalid_message");
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "unsupported");
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
}

#[actix_rt::test]
async fn more_than_100_subscriptions_are_refused_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let cities: Vec<String> = app.get_json("/v1/locations?q=san&limit=100").await.1["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cities.len(), 100);
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": cities})).await;
    for _ in 0..100 {
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    }
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["5128581"]})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "code": "too_many_subscriptions",
               "message": "at most 100 subscriptions per connection; this one has 100 and asked for 1 more"})
    );
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
}

#[actix_rt::test]
async fn a_frame_over_64_kib_closes_the_connection_with_1009() {
    let app = spawn_app().await;
    let mut ws = app.ws("/v1/ws").await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    ws.send(Message::Text(huge.into())).await.unwrap();
    assert_eq!(close_code(&mut ws, 3).await, Some(1009));
}

#[actix_rt::test]
async fn the_server_pings_and_closes_a_silent_client_after_the_idle_timeout() {
    let app = spawn_app_with(json!({"ws": {"heartbeat_interval_secs": 1, "client_timeout_secs": 2}})).await;
    let mut ws = app.ws("/v1/ws").await;
    // Not reading means not answering pings: the server hears nothing for 2 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut pings = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(2), futures_util::StreamExt::next(&mut ws)).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pings >= 1);
    assert_eq!(code, Some(1000));
}

#[actix_rt::test]
async fn a_client_that_answers_pings_stays_connected_past_the_idle_timeout() {
    let app = spawn_app_with(json!({"ws": {"heartbeat_interval_secs": 1, "client_timeout_secs": 2}})).await;
    let mut ws = app.ws("/v1/ws").await;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        // Reading lets tungstenite answer pings with pongs.
        let _ = tokio::time::timeout(Duration::from_millis(200), futures_util::StreamExt::next(&mut ws)).await;
    }
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
}

#[actix_rt::test]
async fn a_client_that_does_not_read_is_closed_with_1013_and_counted() {
    let app = spawn_app_with(json!({"ws": {"outbound_queue": 8}})).await;
    let ids: Vec<String> = (0..100).map(|i| format!("SLOW{i}")).collect();
    let seed: Vec<_> = ids.iter().map(|id| station_reading(id, 600, 0.0)).collect();
    app.post_readings(&json!(seed)).await;

    // A small receive buffer so that the kernel does not soak up megabytes first.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.address.parse().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{}/v1/ws", app.address),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    send_json(&mut ws, json!({"type": "subscribe", "locations": ids})).await;

    // Every batch changes all 100 locations: 100 updates of ~600 bytes each.
    for minute in (0..200).rev() {
        let batch: Vec<_> = ids.iter().map(|id| station_reading(id, minute, minute as f64 / 10.0)).collect();
        app.post_readings(&json!(batch)).await;
        if app.metric("isobar_ws_clients_dropped_total").await == Some(1.0) {
            break;
        }
    }
    assert_eq!(app.metric("isobar_ws_clients_dropped_total").await, Some(1.0));
    assert_eq!(close_code(&mut ws, 10).await, Some(1013));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.metric("isobar_ws_connections").await, Some(0.0));
}

/// Sends a close frame and answers the server's close code and how long until the server
/// dropped the TCP connection (RFC 6455 §7.1.1: the server closes it first; clients wait
/// for that).
async fn close_and_time_the_disconnect(mut ws: crate::helpers::Ws) -> (Option<u16>, Duration) {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let started = Instant::now();
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() }))).await.unwrap();
    let code = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected the server's close frame, got {other:?}"),
        }
    };
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() else { panic!("plain TCP") };
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "the server closes the connection after the handshake: {read:?}");
    (code, started.elapsed())
}

#[actix_rt::test]
async fn a_client_close_is_answered_with_1000_and_the_connection_dropped_within_milliseconds() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("BYE1", 5, 4.0)).await;
    let mut feed = app.ws("/ws/weather/BYE1").await;
    assert_eq!(next_json(&mut feed).await["type"], "snapshot");
    let request = crate::graphql::tungstenite_request(&app);
    let mut graphql = tokio_tungstenite::connect_async(request).await.expect("graphql ws connects").0;
    send_json(&mut graphql, json!({"type": "connection_init"})).await;
    assert_eq!(next_json(&mut graphql).await["type"], "connection_ack");

    // actix-web's default lingered a second after each close, waiting for the client to
    // drop the connection while the client waited for the server (0.8-1.0 s per close).
    for (path, ws) in [("/v1/ws", app.ws("/v1/ws").await), ("/ws/weather/BYE1", feed), ("/graphql", graphql)] {
        let (code, took) = close_and_time_the_disconnect(ws).await;
        assert_eq!(code, Some(1000), "{path}");
        assert!(took < Duration::from_millis(250), "{path}: the close took {took:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.metric("isobar_ws_connections").await, Some(0.0));
}

#[actix_rt::test]
async fn a_client_that_reconnects_with_its_last_seq_gets_what_it_missed_or_is_told_nothing_was() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("RESUME1", 30, 1.0)).await;
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["RESUME1"]})).await;
    let snapshot = next_json(&mut ws).await;
    assert_eq!((snapshot["type"].as_str(), snapshot["data"]["temperature"].as_f64()), (Some("snapshot"), Some(1.0)));
    let first = snapshot["seq"].as_u64().expect("a snapshot carries the seq of what it shows");
    app.post_readings(&station_reading("RESUME1", 20, 2.0)).await;
    let update = next_json(&mut ws).await;
    assert_eq!((update["type"].as_str(), update["seq"].as_u64()), (Some("update"), Some(first + 1)));
    drop(ws);

    // Two updates while the client is away.
    app.post_readings(&station_reading("RESUME1", 10, 3.0)).await;
    app.post_readings(&station_reading("RESUME1", 5, 4.0)).await;
    let last_seen = first + 1;
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["RESUME1"], "since": {"RESUME1": last_seen}})).await;
    let caught_up = next_json(&mut ws).await;
    assert_eq!(caught_up["type"], "snapshot");
    assert_eq!(caught_up["seq"].as_u64(), Some(last_seen + 2));
    assert_eq!(caught_up["missed"], 2, "{caught_up}");
    assert_eq!(caught_up["data"]["temperature"].as_f64(), Some(4.0));
    drop(ws);

    // Nothing new: no snapshot to re-read, just where it stands.
    let mut ws = app.ws(&format!("/ws/weather/RESUME1?since={}", last_seen + 2)).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "resumed", "location_id": "RESUME1", "seq": last_seen + 2}));
    app.post_readings(&station_reading("RESUME1", 1, 5.0)).await;
    let update = next_json(&mut ws).await;
    assert_eq!((update["seq"].as_u64(), update["data"]["temperature"].as_f64()), (Some(last_seen + 3), Some(5.0)));
    drop(ws);

    // A seq from a history this location no longer has (its state was lost): a fresh
    // snapshot, said to be one.
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["RESUME1"], "since": {"RESUME1": 1000}})).await;
    let fresh = next_json(&mut ws).await;
    assert_eq!((fresh["type"].as_str(), fresh["reset"].as_bool()), (Some("snapshot"), Some(true)), "{fresh}");
    assert_eq!(fresh["seq"].as_u64(), Some(last_seen + 3));

    // A malformed since is an error message, and the connection stays open.
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["RESUME1"], "since": {"RESUME1": -1}})).await;
    let error = next_json(&mut ws).await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("invalid_message")));
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");
    let (status, problem) = app.get_json("/ws/weather/RESUME1?since=yesterday").await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (400, Some("since")), "{problem}");
    assert_eq!(problem["detail"], "invalid since: must be the last seq seen, a whole number; got \"yesterday\"");
}
