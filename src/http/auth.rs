//! Who is calling, and may they: the client's address, its API key, and the policy of
//! each kind of route (README, Security).
//!
//! - Credentials: `Authorization: Bearer KEY`; on WebSocket routes also `?api_key=KEY`
//!   (a browser cannot set headers on a WebSocket). A key that is not ours (unknown or
//!   revoked) is a 401 wherever it is presented.
//! - Writes (`POST /v1/readings`): a key of scope `write` or `admin`; without one, 401,
//!   unless the client is on loopback and `auth.loopback_writes` allows it. A `read` key:
//!   403. Which sources a key may write as, and how many stations it may create, the
//!   service checks ([`crate::service::Writer`]).
//! - Operations (`/metrics`, `POST /v1/locations/{id}/forecast/train`): an `admin` key
//!   or loopback. `/ready` answers everyone with
//!   its status, but names its dependencies only to them.
//! - Reads: anyone, unless `auth.anonymous_reads` is off (then any key).
//!
//! The client's address is the socket's peer, or, when the peer is one of
//! `http.trusted_proxies`, the nearest address in `X-Forwarded-For` that is not.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{HttpMessage, HttpRequest, ResponseError, web};
use ipnet::IpNet;
use tracing::info;

use crate::auth::limits::{Bucket, ConnectionSlots, Limit, RateLimits, Slot, Verdict};
use crate::auth::{KeyRecord, KeyRing, Scope};
use crate::config::AuthSettings;
use crate::http::{ApiError, AppState};
use crate::service::Writer;

/// What the HTTP layer knows of access control.
pub struct Access {
    pub keys: Arc<KeyRing>,
    pub limits: Arc<RateLimits>,
    /// Open WebSockets per client.
    pub sockets: ConnectionSlots,
    pub settings: AuthSettings,
    pub trusted_proxies: Vec<IpNet>,
    /// The loopback-write notice is logged once.
    loopback_noted: AtomicBool,
}

impl Access {
    pub fn new(
        keys: Arc<KeyRing>,
        limits: Arc<RateLimits>,
        settings: AuthSettings,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        Self {
            keys,
            limits,
            sockets: ConnectionSlots::default(),
            settings,
            trusted_proxies,
            loopback_noted: AtomicBool::new(false),
        }
    }

    /// Whom the caller's requests and connections count against: its key, or its address
    /// when it has none; `None` for loopback without a key (unless `auth.limit_loopback`).
    fn bucket(&self, caller: &Caller) -> Option<Bucket> {
        match (&caller.key, caller.ip) {
            (Some(key), _) => Some(Bucket::Key(key.name.clone())),
            (None, Some(ip)) if !ip.is_loopback() || self.settings.limit_loopback => Some(Bucket::Ip(ip)),
            (None, _) => None,
        }
    }

    /// A WebSocket slot for the caller: `Ok(None)` when it is not capped (loopback
    /// without a key), 429 when it holds its cap already.
    pub fn websocket_slot(&self, caller: &Caller) -> Result<Option<Slot>, ApiError> {
        let Some(bucket) = self.bucket(caller) else { return Ok(None) };
        let (cap, who) = match bucket {
            Bucket::Key(_) => (self.settings.max_ws_per_key, "auth.max_ws_per_key"),
            Bucket::Ip(_) => (self.settings.max_ws_per_ip, "auth.max_ws_per_ip"),
        };
        self.sockets.acquire(bucket, cap).map(Some).map_err(|cap| ApiError::TooManyRequests {
            detail: format!("{cap} WebSocket connections are open for this client already ({who}); close one first"),
            retry_after_secs: 5,
        })
    }

    /// The rate limit the caller counts against, if any.
    fn limit(&self, caller: &Caller) -> Option<(Bucket, Limit)> {
        let bucket = self.bucket(caller)?;
        let rate = match &caller.key {
            Some(key) => key.rate_per_sec.unwrap_or(self.settings.key_rate_per_sec),
            None => self.settings.anonymous_rate_per_sec,
        }
        .max(1);
        Some((bucket, Limit { rate, burst: rate.saturating_mul(self.settings.burst_secs.max(1)) }))
    }

    /// `http.trusted_proxies` entries: an address or a CIDR range each.
    pub fn parse_proxies(entries: &[String]) -> Result<Vec<IpNet>, String> {
        entries
            .iter()
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("http.trusted_proxies: {e:?} is not an IP address or CIDR range"))
            })
            .collect()
    }

    /// Whether the caller may write readings (POST /v1/readings, GraphQL's
    /// `submitReadings`): a key of scope write or admin, or loopback without a key when
    /// `auth.loopback_writes` allows it.
    pub fn may_write(&self, caller: &Caller) -> Result<(), ApiError> {
        match &caller.key {
            Some(key) if key.scope >= Scope::Write => Ok(()),
            Some(key) => Err(ApiError::Forbidden(format!(
                "key {:?} has scope read; writing readings needs a write key",
                key.name
            ))),
            None if caller.loopback() && self.settings.loopback_writes => {
                if !self.loopback_noted.swap(true, Ordering::Relaxed) {
                    info!("a write from loopback without an API key was allowed (auth.loopback_writes)");
                }
                Ok(())
            }
            None => Err(ApiError::Unauthorized(
                "writing readings needs an API key of scope write (Authorization: Bearer <key>)".into(),
            )),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, or from `X-Forwarded-For` behind a trusted proxy.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusted(peer) {
            return Some(peer);
        }
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
        let mut hops = forwarded.iter().flat_map(|v| v.split(',')).map(str::trim).collect::<Vec<_>>();
        hops.reverse();
        for hop in hops {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusted(ip) => continue,
                Ok(ip) => return Some(ip),
                // Garbage from beyond the trusted proxies: the last proxy is what we know.
                Err(_) => break,
            }
        }
        Some(peer)
    }
}

/// Who made the request, for handlers (a request extension).
#[derive(Clone, Debug)]
pub struct Caller {
    pub ip: Option<IpAddr>,
    pub key: Option<Arc<KeyRecord>>,
}

impl Caller {
    pub fn loopback(&self) -> bool {
        self.ip.is_some_and(|ip| ip.is_loopback())
    }

    fn scope_at_least(&self, scope: Scope) -> bool {
        self.key.as_ref().is_some_and(|k| k.scope >= scope)
    }

    /// May see operational detail (`/metrics`, `/ready`'s dependencies).
    pub fn operator(&self) -> bool {
        self.scope_at_least(Scope::Admin) || (self.key.is_none() && self.loopback())
    }

    /// The writer the service checks readings against, once the route allowed the write.
    pub fn writer(&self, settings: &AuthSettings) -> Writer {
        match &self.key {
            Some(key) => Writer::Key {
                name: key.name.clone(),
                sources: key.writable_sources(),
                max_new_stations: settings.max_stations_per_key,
            },
            None => Writer::Local,
        }
    }
}

/// The credentials presented, if any: `Err` when they are malformed.
fn presented(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        let Some(key) = value.strip_prefix("Bearer ").map(str::trim).filter(|k| !k.is_empty()) else {
            return Err(ApiError::Unauthorized("the Authorization header must be `Bearer <API key>`".into()));
        };
        return Ok(Some(key.to_owned()));
    }
    let upgrade = req
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let websocket = req.path().starts_with("/ws/") || req.path() == "/v1/ws" || (req.path() == "/graphql" && upgrade);
    if websocket {
        let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string());
        if let Ok(query) = query
            && let Some(key) = query.get("api_key")
        {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}

/// What a route needs.
enum Need {
    Read,
    Write,
    Operator,
    /// Anyone (health, the API document, /ready's status).
    Nothing,
}

fn need(req: &ServiceRequest) -> Need {
    match (req.method(), req.path()) {
        (&Method::POST, "/v1/readings") => Need::Write,
        (_, "/metrics") => Need::Operator,
        (_, path) if path.starts_with("/v1/locations/") && path.ends_with("/forecast/train") => Need::Operator,
        (_, "/health" | "/ready" | "/api/openapi.json" | "/") => Need::Nothing,
        // The dashboard's files and the API's documentation page: static.
        (_, path) if path.starts_with("/assets/") || path.starts_with("/api/docs") => Need::Nothing,
        _ => Need::Read,
    }
}

/// Identifies the caller and applies the route's policy.
pub async fn authorize(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let caller = match check(&state, &req) {
        Ok(caller) => caller,
        Err(error) => return Ok(req.into_response(error.error_response()).map_into_right_body()),
    };
    let limited = if req.path() == "/health" { None } else { state.access.limit(&caller) };
    let Some((bucket, limit)) = limited else {
        req.extensions_mut().insert(caller);
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let policy = format!("\"{}\";q={};w={}", bucket.policy(), limit.burst, limit.window_secs());
    match state.access.limits.check(&bucket, limit).await {
        Verdict::Allowed { remaining, reset } => {
            req.extensions_mut().insert(caller);
            let mut response = next.call(req).await?;
            let status = format!("\"{}\";r={remaining};t={}", bucket.policy(), ceil_secs(reset));
            rate_headers(response.headers_mut(), &policy, &status);
            Ok(response.map_into_left_body())
        }
        Verdict::Denied { retry_after } => {
            let secs = ceil_secs(retry_after).max(1);
            let who = match &bucket {
                Bucket::Ip(_) => "this client address (without an API key)".to_owned(),
                Bucket::Key(name) => format!("key {name:?}"),
            };
            let error = ApiError::TooManyRequests {
                detail: format!(
                    "{who} may send {} requests per second ({} at once); retry after {secs} s",
                    limit.rate, limit.burst
                ),
                retry_after_secs: secs,
            };
            let mut response = error.error_response();
            let status = format!("\"{}\";r=0;t={secs}", bucket.policy());
            rate_headers(response.headers_mut(), &policy, &status);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers).
fn rate_headers(headers: &mut actix_web::http::header::HeaderMap, policy: &str, status: &str) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", status)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

fn check(state: &AppState, req: &ServiceRequest) -> Result<Caller, ApiError> {
    let access = &state.access;
    let ip = access.client_ip(req.request());
    let key = match presented(req)? {
        Some(raw) => {
            Some(access.keys.find(&raw).ok_or_else(|| ApiError::Unauthorized("unknown or revoked API key".into()))?)
        }
        None => None,
    };
    let caller = Caller { ip, key };
    match need(req) {
        Need::Nothing => {}
        Need::Read => {
            if caller.key.is_none() && !access.settings.anonymous_reads {
                return Err(ApiError::Unauthorized("reads need an API key (Authorization: Bearer <key>)".into()));
            }
        }
        Need::Write => access.may_write(&caller)?,
        Need::Operator => {
            if !caller.operator() {
                return Err(match caller.key {
                    Some(_) => ApiError::Forbidden("this needs an admin key".into()),
                    None => ApiError::Unauthorized("this needs an admin key (Authorization: Bearer <key>)".into()),
                });
            }
        }
    }
    Ok(caller)
}

/// The caller of a request that passed [`authorize`].
pub fn caller(req: &HttpRequest) -> Caller {
    req.extensions().get::<Caller>().cloned().unwrap_or(Caller { ip: None, key: None })
}
