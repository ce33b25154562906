//! `Upstream`: the HTTP client of one provider, shared by its poller's concurrent fetches.
//!
//! It owns everything about talking to the provider politely and robustly: the response
//! cache (until `Cache-Control: max-age` / `Expires`, else the provider's TTL; with
//! `If-Modified-Since` → 304 revalidation), a rate limit (requests spaced evenly),
//! retries with exponential backoff and jitter for transient failures, `Retry-After` on
//! 429 (which also pauses every other request to the provider), and a circuit breaker
//! that stops calling a provider after repeated failures and lets one trial through after
//! a cool-down. It reports every attempt to the metrics. It never panics on what the
//! provider sends: every body is parsed into a `serde_json::Value` or becomes an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, EXPIRES, IF_MODIFIED_SINCE, LAST_MODIFIED, RETRY_AFTER};
use serde_json::Value;
use tracing::warn;

use futures_util::future::BoxFuture;

use super::{ProviderSettings, SourceError};
use crate::telemetry::Metrics;

/// Where responses are shared with the other instances (Redis, when configured).
pub trait SharedCache: Send + Sync {
    /// The value stored under `key`, if any (errors count as a miss).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    /// Stores `value` under `key` for `ttl`.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<(), String>>;
}

/// Largest upstream body accepted.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Cached responses kept at most; the oldest expire first when full.
const MAX_CACHE_ENTRIES: usize = 10_000;

pub struct Upstream {
    provider: &'static str,
    /// With Redis configured, responses are shared with the other instances.
    shared: Option<Arc<dyn SharedCache>>,
    client: reqwest::Client,
    settings: ProviderSettings,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    cache: HashMap<String, Cached>,
    /// Earliest time the next request may start (rate limit and Retry-After).
    next_slot: Option<Instant>,
    consecutive_failures: u32,
    /// Set while the circuit is open; requests fail fast until then.
    open_until: Option<Instant>,
    /// The cool-down passed: trial requests go through, and one more failure re-opens
    /// the circuit at once.
    half_open: bool,
}

struct Cached {
    body: Arc<Value>,
    expires: Instant,
    last_modified: Option<String>,
}

/// A usable response body.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Arc<Value>,
    /// Served from the cache without a request.
    pub from_cache: bool,
    /// How long the body stays fresh.
    pub fresh_for: Duration,
}

impl Upstream {
    pub fn new(provider: &'static str, settings: ProviderSettings, user_agent: &str, metrics: Arc<Metrics>) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        metrics.upstream_circuit_open.with_label_values(&[provider]).set(0);
        metrics.upstream_cache_hits.with_label_values(&[provider]);
        Self { provider, shared: None, client, settings, state: Mutex::new(State::default()), metrics }
    }

    /// Shares the response cache through Redis, so several instances fetch once.
    pub fn with_shared_cache(mut self, shared: Option<Arc<dyn SharedCache>>) -> Self {
        self.shared = shared;
        self
    }

    /// The Redis key of a URL's response, from the URL without its secrets (`redacted`).
    fn shared_key(&self, redacted: &str) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        redacted.hash(&mut h);
        format!("isobar:upstream:{}:{:016x}", self.provider, h.finish())
    }

    /// A fresh response another instance stored: `(body, seconds left)` as JSON.
    async fn shared_get(&self, url: &str) -> Option<Fetched> {
        let redis = self.shared.as_ref()?;
        let redacted = redact_url(url);
        let raw = redis.get(&self.shared_key(&redacted)).await?;
        let stored: Value = serde_json::from_slice(&raw).ok()?;
        let (Some(stored_url), Some(expires_ms), Some(body)) = (
            stored.get("url").and_then(Value::as_str),
            stored.get("expires_ms").and_then(Value::as_i64),
            stored.get("body"),
        ) else {
            return None;
        };
        let left = expires_ms - chrono::Utc::now().timestamp_millis();
        if stored_url != redacted || left <= 0 {
            return None;
        }
        Some(Fetched { body: Arc::new(body.clone()), from_cache: true, fresh_for: Duration::from_millis(left as u64) })
    }

    async fn shared_put(&self, url: &str, fetched: &Fetched) {
        let Some(redis) = self.shared.as_ref() else { return };
        if fetched.fresh_for.is_zero() {
            return;
        }
        let expires_ms = chrono::Utc::now().timestamp_millis() + fetched.fresh_for.as_millis() as i64;
        let redacted = redact_url(url);
        let value = serde_json::json!({"url": &redacted, "expires_ms": expires_ms, "body": &*fetched.body}).to_string();
        if let Err(e) = redis.put(&self.shared_key(&redacted), value.into_bytes(), fetched.fresh_for).await {
            tracing::debug!(provider = self.provider, error = %e, "cannot share the response through Redis");
        }
    }

    pub fn base_url(&self) -> &str {
        &self.settings.base_url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another fetch panicked mid-update of plain data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the circuit is open now.
    pub fn circuit_open(&self) -> bool {
        let state = self.lock();
        state.half_open || state.open_until.is_some_and(|t| Instant::now() < t)
    }

    /// GET `url` as JSON, from the cache while fresh.
    pub async fn get_json(&self, url: &str) -> Result<Fetched, SourceError> {
        let revalidate = {
            let state = self.lock();
            match state.cache.get(url) {
                Some(c) if Instant::now() < c.expires => {
                    self.metrics.upstream_cache_hits.with_label_values(&[self.provider]).inc();
                    return Ok(Fetched {
                        body: c.body.clone(),
                        from_cache: true,
                        fresh_for: c.expires - Instant::now(),
                    });
                }
                Some(c) => c.last_modified.clone(),
                None => None,
            }
        };
        if revalidate.is_none()
            && let Some(shared) = self.shared_get(url).await
        {
            self.metrics.upstream_cache_hits.with_label_values(&[self.provider]).inc();
            let mut state = self.lock();
            state.cache.insert(
                url.to_owned(),
                Cached { body: shared.body.clone(), expires: Instant::now() + shared.fresh_for, last_modified: None },
            );
            return Ok(shared);
        }
        {
            let mut state = self.lock();
            match state.open_until {
                Some(t) if Instant::now() < t => {
                    self.metrics.upstream_requests.with_label_values(&[self.provider, "circuit_open"]).inc();
                    return Err(SourceError::CircuitOpen);
                }
                Some(_) => {
                    state.open_until = None;
                    state.half_open = true;
                }
                None => {}
            }
        }
        let mut attempt = 0;
        loop {
            self.wait_for_slot().await;
            let result = self.request(url, revalidate.as_deref()).await;
            match result {
                Ok(fetched) => {
                    if !fetched.from_cache {
                        self.shared_put(url, &fetched).await;
                    }
                    let mut state = self.lock();
                    state.consecutive_failures = 0;
                    if state.half_open || state.open_until.is_some() {
                        state.half_open = false;
                        state.open_until = None;
                        self.metrics.upstream_circuit_open.with_label_values(&[self.provider]).set(0);
                        tracing::info!(provider = self.provider, "circuit closed");
                    }
                    return Ok(fetched);
                }
                Err(error) if error.retryable() && attempt < self.settings.max_retries => {
                    attempt += 1;
                    let delay = match &error {
                        SourceError::RateLimited { retry_after: Some(d) } => {
                            (*d).min(Duration::from_secs(self.settings.max_retry_after_secs))
                        }
                        _ => self.backoff(attempt),
                    };
                    if let SourceError::RateLimited { .. } = error {
                        // Every request to this provider waits, not just this one.
                        let mut state = self.lock();
                        let until = Instant::now() + delay;
                        state.next_slot = Some(state.next_slot.map_or(until, |s| s.max(until)));
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    if error.retryable() {
                        self.record_failure();
                    }
                    return Err(error);
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff_base_ms.max(1);
        let exp = base.saturating_mul(1 << attempt.min(10));
        Duration::from_millis(exp + fastrand::u64(0..=base))
    }

    fn record_failure(&self) {
        let mut state = self.lock();
        state.consecutive_failures += 1;
        if state.half_open || state.consecutive_failures >= self.settings.circuit_failure_threshold {
            state.half_open = false;
            state.open_until = Some(Instant::now() + Duration::from_secs(self.settings.circuit_cooldown_secs));
            state.consecutive_failures = 0;
            self.metrics.upstream_circuit_open.with_label_values(&[self.provider]).set(1);
            warn!(provider = self.provider, cooldown_secs = self.settings.circuit_cooldown_secs, "circuit opened");
        }
    }

    /// Waits for this request's turn under the rate limit.
    async fn wait_for_slot(&self) {
        let gap = Duration::from_secs_f64(1.0 / self.settings.rate_limit_per_sec.max(0.001));
        let start = {
            let mut state = self.lock();
            let now = Instant::now();
            let start = state.next_slot.map_or(now, |s| s.max(now));
            state.next_slot = Some(start + gap);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }

    async fn request(&self, url: &str, if_modified_since: Option<&str>) -> Result<Fetched, SourceError> {
        let started = Instant::now();
        let mut request = self.client.get(url);
        if let Some(lm) = if_modified_since {
            request = request.header(IF_MODIFIED_SINCE, lm);
        }
        let result = self.exchange(request, url).await;
        let outcome = match &result {
            Ok(f) if f.from_cache => "not_modified",
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics.upstream_requests.with_label_values(&[self.provider, outcome]).inc();
        self.metrics
            .upstream_request_duration
            .with_label_values(&[self.provider])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn exchange(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Fetched, SourceError> {
        let mut response = request.send().await.map_err(|e| SourceError::Unavailable(describe(e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let fresh_for = freshness(&headers).unwrap_or(Duration::from_secs(self.settings.cache_ttl_secs));
        let last_modified = headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if status == StatusCode::NOT_MODIFIED {
            let mut state = self.lock();
            if let Some(c) = state.cache.get_mut(url) {
                c.expires = Instant::now() + fresh_for;
                return Ok(Fetched { body: c.body.clone(), from_cache: true, fresh_for });
            }
            return Err(SourceError::Malformed("304 Not Modified for a request that was not conditional".into()));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(SourceError::RateLimited { retry_after });
        }
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_BODY_BYTES => bytes.extend_from_slice(&chunk),
                Ok(Some(_)) => return Err(SourceError::Malformed(format!("body larger than {MAX_BODY_BYTES} bytes"))),
                Ok(None) => break,
                Err(e) => return Err(SourceError::Unavailable(format!("body interrupted: {}", describe(e)))),
            }
        }
        if status.is_server_error() {
            return Err(SourceError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        if status.is_client_error() {
            let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).trim().to_owned();
            return Err(SourceError::Refused { status: status.as_u16(), detail });
        }
        if status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
            let url = redact_url(url);
            warn!(provider = self.provider, url, "HTTP 203: the product is deprecated or in beta; data still used");
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| SourceError::Malformed(e.to_string()))?;
        let body = Arc::new(body);
        let mut state = self.lock();
        if state.cache.len() >= MAX_CACHE_ENTRIES {
            let now = Instant::now();
            state.cache.retain(|_, c| c.expires > now);
        }
        if state.cache.len() < MAX_CACHE_ENTRIES {
            state.cache.insert(
                url.to_owned(),
                Cached { body: body.clone(), expires: Instant::now() + fresh_for, last_modified },
            );
        }
        Ok(Fetched { body, from_cache: false, fresh_for })
    }
}

/// Query parameters that carry credentials: their values never leave the process.
const SECRET_PARAMS: [&str; 7] = ["appid", "key", "api_key", "apikey", "token", "access_token", "password"];

/// `url` with the value of every credential parameter replaced by `***`: what may be
/// logged, shown or stored.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_owned() };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// A reqwest error for a log line or a /ready detail, naming the kind of failure, without
/// its URL (which may carry a provider's key).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// How long a response may be reused: `Cache-Control: max-age`, else `Expires`.
fn freshness(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let max_age = headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(|v| {
        v.split(',').find_map(|d| d.trim().strip_prefix("max-age=").and_then(|s| s.trim().parse::<u64>().ok()))
    });
    if let Some(secs) = max_age {
        return Some(Duration::from_secs(secs));
    }
    let expires = headers.get(EXPIRES)?.to_str().ok()?;
    let at = chrono::DateTime::parse_from_rfc2822(expires).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn credentials_in_a_url_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://api.openweathermap.org/data/2.5/weather?lat=51.5&appid=s3cret&units=metric"),
            "https://api.openweathermap.org/data/2.5/weather?lat=51.5&appid=***&units=metric"
        );
        assert_eq!(redact_url("http://x/v1/current.json?KEY=s3cret&q=1,2"), "http://x/v1/current.json?KEY=***&q=1,2");
        assert_eq!(redact_url("http://x/forecast?lat=1"), "http://x/forecast?lat=1");
    }
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn settings(server: &MockServer) -> ProviderSettings {
        ProviderSettings {
            enabled: true,
            base_url: server.uri(),
            poll_interval_secs: 1,
            timeout_secs: 1,
            api_key: String::new(),
            cache_ttl_secs: 60,
            rate_limit_per_sec: 10.0,
            max_retries: 0,
            backoff_base_ms: 10,
            circuit_failure_threshold: 2,
            circuit_cooldown_secs: 1,
            max_retry_after_secs: 1,
        }
    }

    #[actix::test]
    async fn requests_are_spaced_by_the_rate_limit_and_cached_ones_are_free() {
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string("{}")).mount(&server).await;
        let upstream = Upstream::new("test", settings(&server), "isobar-test", Arc::new(Metrics::new()));
        let started = Instant::now();
        for i in 0..4 {
            upstream.get_json(&format!("{}/{i}", server.uri())).await.unwrap();
        }
        // 10 per second: the 4th request starts 300 ms after the first at the earliest.
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
        let again = upstream.get_json(&format!("{}/0", server.uri())).await.unwrap();
        assert!(again.from_cache);
        assert_eq!(server.received_requests().await.unwrap().len(), 4);
    }

    #[actix::test]
    async fn the_circuit_opens_then_half_opens_after_the_cooldown() {
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
        let upstream = Upstream::new("test", settings(&server), "isobar-test", Arc::new(Metrics::new()));
        let url = format!("{}/x", server.uri());
        assert!(matches!(upstream.get_json(&url).await, Err(SourceError::Unavailable(_))));
        assert!(matches!(upstream.get_json(&url).await, Err(SourceError::Unavailable(_))));
        assert_eq!(upstream.get_json(&url).await.unwrap_err(), SourceError::CircuitOpen);
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Half-open: one trial goes through; its failure re-opens the circuit at once.
        assert!(matches!(upstream.get_json(&url).await, Err(SourceError::Unavailable(_))));
        assert_eq!(upstream.get_json(&url).await.unwrap_err(), SourceError::CircuitOpen);
        server.reset().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string("{}")).mount(&server).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(upstream.get_json(&url).await.is_ok());
        assert!(!upstream.circuit_open());
    }

    #[test]
    fn freshness_prefers_max_age_then_expires() {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=600, s-maxage=60"));
        assert_eq!(freshness(&h), Some(Duration::from_secs(600)));
        let mut h = HeaderMap::new();
        let at = (chrono::Utc::now() + chrono::Duration::seconds(1800)).to_rfc2822();
        h.insert(EXPIRES, HeaderValue::from_str(&at).unwrap());
        let got = freshness(&h).unwrap().as_secs();
        assert!((1798..=1800).contains(&got), "{got}");
        h.insert(EXPIRES, HeaderValue::from_static("Mon, 20 Jul 2020 12:14:53 GMT"));
        assert_eq!(freshness(&h), Some(Duration::ZERO));
        assert_eq!(freshness(&HeaderMap::new()), None);
    }
}
