//! Locations: search, nearest, describe, current conditions, history, forecast.

use std::time::{Duration as StdDuration, SystemTime};

use actix_web::http::header::{self, HttpDate};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::actors::directory::{Describe, SearchStations};
use crate::actors::location::{GetCurrent, GetForecast, GetHistory, RENDER_TTL};
use crate::actors::persister::QueryHistory;
use crate::analytics::history::{downsample, parse_step};
use crate::domain::{Location, LocationId, Reading, SourceName, Units};
use crate::http::error::Problem;
use crate::http::{ApiError, AppState};

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
const MAX_QUERY_CHARS: usize = 100;
/// Slack on the retention bound of /history, for clients whose clock is a little ahead.
const RETENTION_SLACK: Duration = Duration::minutes(1);

#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Name prefix (case- and accent-insensitive); a station id also matches.
    q: Option<String>,
    /// 1-100, default 10.
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    locations: Vec<Location>,
}

/// Search the catalog and the known stations by name prefix: exact names first, then by
/// population.
#[utoipa::path(get, path = "/v1/locations", tag = "locations", params(SearchQuery),
    responses((status = 200, body = SearchResponse), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn search(state: web::Data<AppState>, query: web::Query<SearchQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return Err(ApiError::invalid_param("q", "is required: a name prefix such as \"New Y\""));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid_param("q", format!("must be at most {MAX_QUERY_CHARS} characters")));
    }
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::invalid_param("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
        },
    };
    let stations = state.directory.send(SearchStations { query: q.to_owned(), limit }).await?;
    let mut hits = state.catalog.search(q, limit);
    // Both lists are ranked; merge keeping rank order (stations before cities in a tie,
    // since a station id match is the more specific answer).
    hits.extend(stations);
    hits.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| (a.1.kind as u8).cmp(&(b.1.kind as u8)).reverse())
            .then_with(|| b.1.population.cmp(&a.1.population))
    });
    let locations = hits.into_iter().take(limit).map(|(_, l)| l).collect();
    Ok(HttpResponse::Ok().json(SearchResponse { locations }))
}

#[derive(Deserialize, IntoParams)]
pub struct NearestQuery {
    /// Latitude, -90..90.
    lat: Option<String>,
    /// Longitude, -180..180.
    lon: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NearestResponse {
    location: Location,
    distance_km: f64,
}

fn coordinate(raw: Option<&str>, field: &'static str, bound: f64) -> Result<f64, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::invalid_param(field, "is required"))?;
    let value: f64 =
        raw.trim().parse().map_err(|_| ApiError::invalid_param(field, format!("must be a number, got {raw:?}")))?;
    if !(-bound..=bound).contains(&value) {
        return Err(ApiError::invalid_param(field, format!("must be between -{bound} and {bound}")));
    }
    Ok(value)
}

/// The catalog city nearest to a point.
#[utoipa::path(get, path = "/v1/locations/nearest", tag = "locations", params(NearestQuery),
    responses((status = 200, body = NearestResponse), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn nearest(state: web::Data<AppState>, query: web::Query<NearestQuery>) -> Result<HttpResponse, ApiError> {
    let lat = coordinate(query.lat.as_deref(), "lat", 90.0)?;
    let lon = coordinate(query.lon.as_deref(), "lon", 180.0)?;
    let (location, km) =
        state.catalog.nearest(lat, lon).ok_or_else(|| ApiError::NotFound("the catalog is empty".into()))?;
    Ok(HttpResponse::Ok().json(NearestResponse { location, distance_km: (km * 10.0).round() / 10.0 }))
}

/// One location.
#[utoipa::path(get, path = "/v1/locations/{id}", tag = "locations",
    params(("id" = String, Path, description = "GeoNames id (5128581) or station id (KJFK)")),
    responses((status = 200, body = Location), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    let location = state.directory.send(Describe { id: id.clone() }).await?;
    location.map(|l| HttpResponse::Ok().json(l)).ok_or_else(|| ApiError::NotFound(format!("unknown location {id}")))
}

#[derive(Deserialize, IntoParams)]
pub struct UnitsQuery {
    /// `metric` (default) or `imperial`.
    units: Option<String>,
}

/// Consensus current conditions. Sends `ETag`, `Last-Modified` and `Cache-Control`;
/// answers a matching `If-None-Match` with 304.
#[utoipa::path(get, path = "/v1/locations/{id}/current", tag = "locations",
    params(("id" = String, Path, description = "Location id"), UnitsQuery),
    responses((status = 200, body = crate::domain::Current), (status = 304, description = "Not modified"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn current(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<UnitsQuery>,
) -> Result<HttpResponse, ApiError> {
    let units = Units::parse(query.units.as_deref()).map_err(|e| ApiError::invalid_param("units", e.to_string()))?;
    let max_age = state.settings.http.current_max_age_secs;
    // Hot path: the view the location actor published, while fresh; no actor involved.
    if units == Units::Metric
        && LocationId::is_valid(&path)
        && let Some(view) = state.views.get(&path).filter(|v| v.computed_at.elapsed() < RENDER_TTL)
    {
        return Ok(render_current(&req, view.seq, units, view.changed_at, view.body.clone(), max_age));
    }
    let id = AppState::parse_id(&path)?;
    let wait = cold_wait(&state);
    let view = state.ask(&id, || GetCurrent { units, wait }).await?.ok_or_else(|| {
        if wait.is_some() {
            ApiError::Unavailable {
                detail: format!(
                    "no current conditions for location {id} yet: the providers have not answered within {} ms; retry shortly",
                    state.settings.sources.cold_wait_ms
                ),
                retry_after_secs: COLD_RETRY_AFTER_SECS,
            }
        } else {
            ApiError::NotFound(format!(
                "no current conditions for location {id} yet: no source has reported it (POST /v1/readings, or enable a source that covers it)"
            ))
        }
    })?;
    Ok(render_current(&req, view.seq, units, view.changed_at, view.body, max_age))
}

/// The /current response: the body as serialized by the actor, with ETag, Last-Modified
/// and Cache-Control, or a 304 for a matching If-None-Match.
fn render_current(
    req: &HttpRequest,
    seq: u64,
    units: Units,
    changed_at: DateTime<Utc>,
    body: bytestring::ByteString,
    max_age_secs: u64,
) -> HttpResponse {
    let etag = format!("W/\"{seq}-{}\"", units.as_str());
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, format!("max-age={max_age_secs}")))
        .insert_header((header::LAST_MODIFIED, HttpDate::from(SystemTime::from(changed_at))));
    if not_modified {
        return response.finish();
    }
    response.content_type("application/json").body(body.into_bytes())
}

#[derive(Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// RFC 3339; default: the start of retention (`locations.history_hours` ago).
    from: Option<String>,
    /// RFC 3339; default: now.
    to: Option<String>,
    /// Mean per step (`30s`, `15m`, `1h`, `1d`); default: every reading.
    step: Option<String>,
    /// `metric` (default) or `imperial`.
    units: Option<String>,
}

/// Most points one /history answer may hold when a step is given.
const MAX_HISTORY_STEPS: i64 = 10_000;

/// A stored reading as /history shows it.
#[derive(Serialize, ToSchema)]
pub struct ReadingView {
    #[schema(value_type = String)]
    location_id: LocationId,
    #[schema(value_type = String)]
    source: SourceName,
    observed_at: DateTime<Utc>,
    temperature: Option<f64>,
    humidity: Option<f64>,
    pressure: Option<f64>,
    wind_speed: Option<f64>,
    wind_direction: Option<f64>,
    visibility: Option<f64>,
    precipitation: Option<f64>,
}

impl ReadingView {
    fn new(r: Reading, units: Units) -> Self {
        Self {
            temperature: r.temperature.map(|v| units.temperature(v)),
            humidity: r.humidity,
            pressure: r.pressure.map(|v| units.pressure(v)),
            wind_speed: r.wind_speed.map(|v| units.speed(v)),
            wind_direction: r.wind_direction,
            visibility: r.visibility.map(|v| units.distance(v)),
            precipitation: r.precipitation.map(|v| units.precipitation(v)),
            location_id: r.location_id,
            source: r.source,
            observed_at: r.observed_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HistoryResponse {
    #[schema(value_type = String)]
    location_id: LocationId,
    units: Units,
    readings: Vec<ReadingView>,
}

fn timestamp(raw: Option<&str>, field: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::invalid_param(field, format!("must be an RFC 3339 timestamp, got {raw:?}")))
    })
    .transpose()
}

/// Stored readings, oldest first.
#[utoipa::path(get, path = "/v1/locations/{id}/history", tag = "locations",
    params(("id" = String, Path, description = "Location id"), HistoryQuery),
    responses((status = 200, body = HistoryResponse), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn history(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    let units = Units::parse(query.units.as_deref()).map_err(|e| ApiError::invalid_param("units", e.to_string()))?;
    let now = Utc::now();
    let hours = state.settings.locations.history_hours;
    let earliest = now - Duration::hours(hours as i64);
    let from = timestamp(query.from.as_deref(), "from")?.unwrap_or(earliest);
    let to = timestamp(query.to.as_deref(), "to")?.unwrap_or(now);
    if from > to {
        return Err(ApiError::invalid_param("from", "must not be after to"));
    }
    let step_secs = match query.step.as_deref() {
        None => None,
        Some(raw) => Some(parse_step(raw).ok_or_else(|| {
            ApiError::invalid_param("step", format!("must be a duration such as 30s, 15m, 1h or 1d, got {raw:?}"))
        })?),
    };
    if let Some(step) = step_secs
        && (to - from).num_seconds() / step as i64 > MAX_HISTORY_STEPS
    {
        return Err(ApiError::invalid_param(
            "step",
            format!("gives more than {MAX_HISTORY_STEPS} points for this range"),
        ));
    }
    let in_influx = !state.settings.influx.url.trim().is_empty();
    if !in_influx && from < earliest - RETENTION_SLACK {
        return Err(ApiError::invalid_param(
            "from",
            format!(
                "is beyond retention: history is kept for {hours} h, so from must be at or after {}",
                earliest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    let readings = if in_influx {
        if state.directory.send(Describe { id: id.clone() }).await?.is_none() {
            return Err(ApiError::NotFound(format!("unknown location {id}")));
        }
        match state.persister.send(QueryHistory { id: id.clone(), from, to, step_secs }).await? {
            Some(Ok(readings)) => readings,
            Some(Err(e)) => {
                return Err(ApiError::Unavailable {
                    detail: format!("history store unavailable: {e}"),
                    retry_after_secs: 5,
                });
            }
            None => Vec::new(),
        }
    } else {
        let readings = state.ask(&id, || GetHistory { from, to }).await?;
        match step_secs {
            Some(step) => downsample(&readings, step),
            None => readings,
        }
    };
    Ok(HttpResponse::Ok().json(HistoryResponse {
        location_id: id,
        units,
        readings: readings.into_iter().map(|r| ReadingView::new(r, units)).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct ForecastQuery {
    /// 1-240, default 48.
    hours: Option<String>,
    /// `metric` (default) or `imperial`.
    units: Option<String>,
}

/// Hourly forecast: each provider's run and their blend, whose `spread` is the standard
/// deviation across providers.
#[utoipa::path(get, path = "/v1/locations/{id}/forecast", tag = "locations",
    params(("id" = String, Path, description = "Location id"), ForecastQuery),
    responses((status = 200, body = crate::domain::Forecast),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "No provider has answered yet; see Retry-After")))]
pub async fn forecast(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ForecastQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    let units = Units::parse(query.units.as_deref()).map_err(|e| ApiError::invalid_param("units", e.to_string()))?;
    let hours = match query.hours.as_deref() {
        None => DEFAULT_FORECAST_HOURS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_FORECAST_HOURS).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_param(
                    "hours",
                    format!("must be an integer from 1 to {MAX_FORECAST_HOURS}"),
                ));
            }
        },
    };
    let wait = cold_wait(&state);
    let forecast = state.ask(&id, || GetForecast { wait }).await?.ok_or_else(|| {
        if wait.is_some() {
            ApiError::Unavailable {
                detail: format!("no forecast for location {id} yet: the providers have not answered; retry shortly"),
                retry_after_secs: COLD_RETRY_AFTER_SECS,
            }
        } else {
            ApiError::NotFound(format!(
                "no forecast for location {id}: forecasts come from upstream providers, and none is enabled"
            ))
        }
    })?;
    Ok(HttpResponse::Ok().json(forecast.window(Utc::now(), hours).in_units(units)))
}

const DEFAULT_FORECAST_HOURS: usize = 48;
const MAX_FORECAST_HOURS: usize = 240;
/// Retry-After of a 503 for a location whose providers have not answered yet.
const COLD_RETRY_AFTER_SECS: u64 = 5;

/// How long a request for a location without data waits for the providers' first answer:
/// only when a provider is enabled.
fn cold_wait(state: &AppState) -> Option<StdDuration> {
    state.settings.sources.any_provider().then(|| StdDuration::from_millis(state.settings.sources.cold_wait_ms))
}
