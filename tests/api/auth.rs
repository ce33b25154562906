//! Who may read and write: API keys (made with `isobar keys`, kept in a real Redis or in
//! the config), their scopes, the sources a write key may write as, its station limit,
//! and what operators alone see.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, station_reading};
use crate::servers::Redis;

const BIN: &str = env!("CARGO_BIN_EXE_isobar");

/// Runs `isobar keys …` against `redis_url`; answers stdout.
fn keys_command(redis_url: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .env("ISOBAR__REDIS__URL", redis_url)
        .env_remove("RUST_LOG")
        .output()
        .expect("isobar keys runs");
    assert!(out.status.success(), "isobar keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn create_key(redis_url: &str, name: &str, scope: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--name", name, "--scope", scope];
    args.extend_from_slice(extra);
    keys_command(redis_url, &args).trim().to_owned()
}

/// A config key: the key `isb_{name}` itself, and its entry for `auth.keys`.
fn configured(name: &str, scope: &str, sources: &[&str]) -> (String, Value) {
    let key = format!("isb_{name}");
    let entry = json!({"name": name, "sha256": isobar::auth::hash(&key), "scope": scope, "sources": sources});
    (key, entry)
}

async fn post_with(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = app.client.post(app.url("/v1/readings")).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    if status == 401 {
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"isobar\"");
    }
    assert_eq!(
        r.headers()["content-type"],
        if status == 202 { "application/json" } else { "application/problem+json" }
    );
    (status, r.json().await.unwrap())
}

#[actix_rt::test]
async fn writes_need_a_write_key_bound_to_its_sources_and_the_providers_names_are_reserved() {
    let (writer, w) = configured("writer", "write", &[]);
    let (lab, l) = configured("lab", "write", &["lab", "station"]);
    let (reader, r) = configured("reader", "read", &[]);
    let app = spawn_app_with(json!({"auth": {"loopback_writes": false, "keys": [w, l, r]}})).await;

    let (status, body) = post_with(&app, None, &station_reading("AUTH1", 1, 5.0)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("writing readings needs an API key of scope write (Authorization: Bearer <key>)"))
    );
    let (status, body) = post_with(&app, Some("isb_nobody"), &station_reading("AUTH1", 1, 5.0)).await;
    assert_eq!((status, body["detail"].as_str()), (401, Some("unknown or revoked API key")));
    let (status, body) = post_with(&app, Some(&reader), &station_reading("AUTH1", 1, 5.0)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (403, Some("key \"reader\" has scope read; writing readings needs a write key"))
    );

    let mut as_provider = station_reading("AUTH1", 1, 5.0);
    as_provider["source"] = json!("open-meteo");
    let (status, body) = post_with(&app, Some(&writer), &as_provider).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (403, Some("source \"open-meteo\" is reserved for isobar's own pollers; write as your own source name"))
    );
    let mut as_lab = station_reading("AUTH1", 1, 5.0);
    as_lab["source"] = json!("lab");
    let (status, body) = post_with(&app, Some(&writer), &as_lab).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (403, Some("key \"writer\" may write as station only, not as \"lab\""))
    );
    // Nothing of a refused request was taken.
    assert_eq!(app.get_json("/v1/locations/AUTH1/current").await.0, 404);

    let (status, body) = post_with(&app, Some(&lab), &as_lab).await;
    assert_eq!((status, body), (202, json!({"accepted": 1, "rejected": []})));
    let (status, _) = post_with(&app, Some(&writer), &station_reading("AUTH1", 2, 6.0)).await;
    assert_eq!(status, 202);
    assert_eq!(app.get_json("/v1/locations/AUTH1/current").await.1["sources_count"], 2);
}

#[actix_rt::test]
async fn a_write_from_loopback_without_a_key_is_allowed_by_default_but_not_as_a_provider() {
    let app = spawn_app_with(json!({})).await;
    assert_eq!(post_with(&app, None, &station_reading("LOCAL1", 1, 5.0)).await.0, 202);
    let mut replay = station_reading("LOCAL1", 2, 5.0);
    replay["source"] = json!("replay");
    let (status, body) = post_with(&app, None, &replay).await;
    assert_eq!((status, body["status"].clone()), (403, json!(403)));
}

#[actix_rt::test]
async fn a_key_may_create_its_limit_of_stations_in_redis_and_the_next_new_one_is_refused() {
    let redis = Redis::start();
    let app = spawn_app_with(json!({"redis": {"url": redis.url()}, "auth": {"loopback_writes": false}})).await;
    let key = create_key(&redis.url(), "fleet", "write", &[]);
    assert!(key.starts_with("isb_") && key.len() == 68, "{key}");
    tokio::time::sleep(Duration::from_millis(700)).await; // the instance reloads its keys

    // 1,000 new stations in one request: the key's whole allowance.
    let batch: Vec<Value> = (0..1000).map(|i| station_reading(&format!("FLEET{i:04}"), 1, 5.0)).collect();
    let (status, body) = post_with(&app, Some(&key), &json!(batch)).await;
    assert_eq!((status, body["accepted"].clone()), (202, json!(1000)));
    // Readings for its existing stations go on.
    assert_eq!(post_with(&app, Some(&key), &station_reading("FLEET0007", 2, 6.0)).await.0, 202);
    // The 1,001st new station is refused, naming the limit.
    let (status, body) = post_with(&app, Some(&key), &station_reading("FLEET1000", 1, 5.0)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (
            403,
            Some(
                "key \"fleet\" may create at most 1000 stations (auth.max_stations_per_key) and has created 1000; \
                 these readings would add 1"
            )
        )
    );
    assert_eq!(app.get_json("/v1/locations/FLEET1000/current").await.0, 404);
    // Keys are stored as hashes only.
    let stored = redis_values(&redis).await;
    assert!(stored.iter().all(|v| !v.contains(&key)), "the key itself is nowhere in Redis");
    assert!(stored.iter().any(|v| v.contains(&isobar::auth::hash(&key))));
}

/// Every string value in Redis (keys, hash fields and values, set members).
pub async fn redis_values(redis: &Redis) -> Vec<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut out = keys.clone();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap_or_default()],
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap(),
            _ => Vec::new(),
        };
        out.extend(values);
    }
    out
}

#[actix_rt::test]
async fn a_key_revoked_with_the_command_is_refused_by_every_instance_within_a_second() {
    let redis = Redis::start();
    let settings = json!({"redis": {"url": redis.url()}, "auth": {"loopback_writes": false}});
    let (a, b) = (spawn_app_with(settings.clone()).await, spawn_app_with(settings).await);
    let key = create_key(&redis.url(), "temp", "write", &[]);
    let listed: Value = serde_json::from_str(keys_command(&redis.url(), &["list"]).trim()).unwrap();
    assert_eq!(listed["name"], "temp");
    assert_eq!(listed["scope"], "write");
    assert!(listed.get("sha256").is_none(), "list shows no hash");
    for app in [&a, &b] {
        let ok = crate::helpers::eventually(2, || async {
            post_with(app, Some(&key), &station_reading("REVOKE1", 1, 5.0)).await.0 == 202
        })
        .await;
        assert!(ok, "both instances honour the new key");
    }

    keys_command(&redis.url(), &["revoke", "temp"]);
    let revoked = Instant::now();
    for app in [&a, &b] {
        loop {
            let (status, _) = post_with(app, Some(&key), &station_reading("REVOKE1", 2, 5.0)).await;
            if status == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "still accepted {:?} after the revocation",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[actix_rt::test]
async fn metrics_and_the_readiness_detail_are_for_an_admin_key_or_loopback() {
    let (admin, entry) = configured("ops", "admin", &[]);
    let (reader, r) = configured("reader", "read", &[]);
    // The test client is on loopback; through a trusted proxy it is a remote client.
    let app =
        spawn_app_with(json!({"http": {"trusted_proxies": ["127.0.0.1/32"]}, "auth": {"keys": [entry, r]}})).await;
    let (admin, reader) = (admin.as_str(), reader.as_str());
    let get = |path, key, from| text_as(&app, path, from, key);
    let remote = "203.0.113.7";
    let (status, body) = get("/metrics", None, remote).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(get("/metrics", Some(reader), remote).await.0, 403);
    let (status, body) = get("/metrics", Some(admin), remote).await;
    assert!(status == 200 && body.contains("isobar_http_requests_total"), "{status}");
    assert_eq!(get("/metrics", None, "127.0.0.1").await.0, 200, "loopback behind the proxy");

    let (status, body) = get("/ready", None, remote).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, json!({"status": "ready"})));
    let (status, body) = get("/ready", Some(admin), remote).await;
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, detail["status"].clone()), (200, json!("ready")));
    assert!(detail["dependencies"].is_array(), "{detail}");
    // A spoofed X-Forwarded-For from a peer that is not a trusted proxy counts for nothing.
    let direct = spawn_app_with(json!({})).await;
    let r = direct.client.get(direct.url("/metrics")).header("x-forwarded-for", remote).send().await.unwrap();
    assert_eq!(r.status(), 200, "the peer is loopback, whatever the header says");
}

/// [`get_as`]'s status and body.
async fn text_as(app: &TestApp, path: &str, from: &str, key: Option<&str>) -> (u16, String) {
    let r = get_as(app, path, from, key).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// GET `path` as client `from` (through the trusted proxy on loopback), with an optional key.
async fn get_as(app: &TestApp, path: &str, from: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).header("x-forwarded-for", from);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[actix_rt::test]
async fn an_anonymous_burst_past_the_per_ip_limit_gets_429_with_retry_after_and_the_ratelimit_fields() {
    let app = spawn_app_with(json!({
        "http": {"trusted_proxies": ["127.0.0.1"]},
        "auth": {"anonymous_rate_per_sec": 2, "burst_secs": 2}
    }))
    .await;
    let path = "/v1/locations?q=london&limit=1";
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = get_as(&app, path, "198.51.100.1", None).await;
        seen.push((r.status().as_u16(), header(&r, "ratelimit-policy").to_owned(), header(&r, "ratelimit").to_owned()));
    }
    let policy = "\"per-ip\";q=4;w=2".to_owned();
    assert_eq!(
        seen,
        [
            (200, policy.clone(), "\"per-ip\";r=3;t=1".to_owned()),
            (200, policy.clone(), "\"per-ip\";r=2;t=1".to_owned()),
            (200, policy.clone(), "\"per-ip\";r=1;t=2".to_owned()),
            (200, policy.clone(), "\"per-ip\";r=0;t=2".to_owned()),
        ]
    );
    let r = get_as(&app, path, "198.51.100.1", None).await;
    assert_eq!(r.status(), 429);
    assert_eq!((header(&r, "retry-after"), header(&r, "content-type")), ("1", "application/problem+json"));
    assert_eq!((header(&r, "ratelimit-policy"), header(&r, "ratelimit")), (policy.as_str(), "\"per-ip\";r=0;t=1"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "this client address (without an API key) may send 2 requests per second (4 at once); retry after 1 s"
    );
    // Another client, and the machine itself, are not held back.
    assert_eq!(get_as(&app, path, "198.51.100.2", None).await.status(), 200);
    assert_eq!(app.get(path).await.status(), 200);
    // The rate comes back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_as(&app, path, "198.51.100.1", None).await.status(), 200);
}

#[actix_rt::test]
async fn a_key_with_a_rate_of_its_own_is_limited_by_it() {
    let (key, mut entry) = configured("slow", "read", &[]);
    entry["rate_per_sec"] = json!(1);
    let app = spawn_app_with(json!({"auth": {"burst_secs": 1, "keys": [entry]}})).await;
    let r = get_as(&app, "/v1/locations?q=paris", "127.0.0.1", Some(&key)).await;
    assert_eq!((r.status().as_u16(), header(&r, "ratelimit-policy")), (200, "\"per-key\";q=1;w=1"));
    let r = get_as(&app, "/v1/locations?q=paris", "127.0.0.1", Some(&key)).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "key \"slow\" may send 1 requests per second (1 at once); retry after 1 s");
}

#[actix_rt::test]
async fn two_instances_sharing_redis_enforce_one_limit_together() {
    const RATE: f64 = 50.0;
    let redis = Redis::start();
    let settings = json!({
        "redis": {"url": redis.url()},
        "http": {"trusted_proxies": ["127.0.0.1"]},
        "auth": {"anonymous_rate_per_sec": RATE as u32, "burst_secs": 1}
    });
    let (a, b) = (spawn_app_with(settings.clone()).await, spawn_app_with(settings).await);
    let started = Instant::now();
    let mut allowed = 0;
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let app = if sent % 2 == 0 { &a } else { &b };
        let r = get_as(app, "/health", "198.51.100.77", None).await; // /health is never limited
        assert_eq!(r.status(), 200);
        let r = get_as(app, "/v1/locations?q=rome&limit=1", "198.51.100.77", None).await;
        sent += 1;
        match r.status().as_u16() {
            200 => allowed += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One GCRA limit: the burst (RATE, one second's worth) plus RATE per second since.
    let expected = RATE + RATE * elapsed;
    println!(
        "{sent} requests over {elapsed:.2} s through two instances: {allowed} allowed, one limit allows {expected:.0}"
    );
    assert!(sent as f64 > expected * 1.5, "the client sent well past the limit ({sent})");
    assert!((allowed as f64 - expected).abs() <= expected * 0.10, "{allowed} allowed, expected {expected:.0} ± 10 %");
}

#[actix_rt::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app_with(json!({})).await;
    for path in ["/health", "/v1/locations/NOPE_NOPE/current", "/nowhere"] {
        let r = app.get(path).await;
        let got: Vec<&str> =
            ["x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"]
                .iter()
                .map(|h| header(&r, h))
                .collect();
        assert_eq!(got, ["nosniff", "DENY", "no-referrer", "default-src 'none'; frame-ancestors 'none'"], "{path}");
    }
}

#[actix_rt::test]
async fn cors_answers_only_the_configured_origins() {
    let origin = "https://dash.example.com";
    let app = spawn_app_with(json!({"http": {"cors_origins": [origin]}})).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/readings"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(header(&preflight, "access-control-allow-origin"), origin);
    assert!(header(&preflight, "access-control-allow-methods").contains("POST"));
    let r = app.client.get(app.url("/health")).header("origin", origin).send().await.unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), origin);
    let other = app.client.get(app.url("/health")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), "");

    // None configured (the default): no browser origin is allowed.
    let closed = spawn_app_with(json!({})).await;
    let r = closed.client.get(closed.url("/health")).header("origin", origin).send().await.unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), "");
}

#[actix_rt::test]
async fn a_client_too_slow_with_its_request_head_or_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(json!({"http": {"request_head_timeout_secs": 1, "request_body_timeout_secs": 1}})).await;
    let address = app.url("").trim_start_matches("http://").to_owned();
    let answer = |request: &'static str| {
        let address = address.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
            socket.write_all(request.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut out)).await;
            (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
        }
    };
    // A head never finished.
    let (text, took) = answer("GET /health HTTP/1.1\r\nHost: x\r\n").await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A body that stops after 10 of its 100 bytes.
    let (text, took) = answer(
        "POST /v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"locati",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("the request body did not arrive within 1 s"), "{text:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[actix_rt::test]
async fn websocket_connections_are_capped_per_client_ip_and_a_closed_one_frees_its_slot() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app_with(json!({"http": {"trusted_proxies": ["127.0.0.1"]}, "auth": {"max_ws_per_ip": 2}})).await;
    let ws_url = app.url("/v1/ws").replace("http://", "ws://");
    let connect = |from: &'static str| {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("x-forwarded-for", from.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let mut first = connect("198.51.100.20").await.expect("first").0;
    let _second = connect("198.51.100.20").await.expect("second").0;
    match connect("198.51.100.20").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(
                body["detail"],
                "2 WebSocket connections are open for this client already (auth.max_ws_per_ip); close one first"
            );
        }
        other => panic!("a third connection: {:?}", other.map(|(_, r)| r.status())),
    }
    assert!(connect("198.51.100.21").await.is_ok(), "another client has slots of its own");
    first.close(None).await.unwrap();
    let freed = crate::helpers::eventually(3, || async { connect("198.51.100.20").await.is_ok() }).await;
    assert!(freed, "a closed connection frees its slot");
}

#[actix_rt::test]
async fn with_anonymous_reads_off_reads_need_a_key_and_a_browser_websocket_may_pass_it_as_api_key() {
    let (key, entry) = configured("browser", "read", &[]);
    let app = spawn_app_with(json!({"auth": {"anonymous_reads": false, "keys": [entry]}})).await;
    let (status, body) = app.get_json("/v1/locations?q=london").await;
    assert_eq!((status, body["detail"].as_str()), (401, Some("reads need an API key (Authorization: Bearer <key>)")));
    let r = app.client.get(app.url("/v1/locations?q=london")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Health and the API document stay open.
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/api/openapi.json").await.status(), 200);

    let ws = app.url("/v1/ws").replace("http://", "ws://");
    let refused = |url: String| async move {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
            Ok(_) => 101,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(refused(ws.clone()).await, 401, "no key");
    assert_eq!(refused(format!("{ws}?api_key=isb_nobody")).await, 401, "not ours");
    assert_eq!(refused(format!("{ws}?api_key={key}")).await, 101, "the key in the query");
    // Only WebSocket routes take the key from the query.
    let r = app.get(&format!("/v1/locations?q=london&api_key={key}")).await;
    assert_eq!(r.status(), 401);
}
