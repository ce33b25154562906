//! Locations: search, nearest, describe, current conditions, history, forecast. Each
//! handler parses its input, calls the service, and renders.

use std::time::SystemTime;

use actix_web::http::header::{self, HeaderValue, HttpDate};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::analytics::history::parse_step;
use crate::core::{Update, Validators};
use crate::domain::{Anomaly, Location, LocationId, Reading, SourceName, Units, Values};
use crate::http::error::Problem;
use crate::http::{ApiError, AppState};
use crate::service::{HistoryQuery as History, air_quality_hours_error, forecast_hours_error, search_limit_error};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Name prefix (case- and accent-insensitive); a station id also matches.
    #[param(required = true, value_type = String, pattern = r"\S", max_length = 100)]
    q: Option<String>,
    /// 1-100, default 10.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    locations: Vec<Location>,
}

/// Search the catalog and the known stations by name prefix: exact names first, then by
/// population.
#[utoipa::path(get, path = "/v1/locations", tag = "locations", security((), ("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = SearchResponse), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn search(state: web::Data<AppState>, query: web::Query<SearchQuery>) -> Result<HttpResponse, ApiError> {
    let limit = count(query.limit.as_deref(), search_limit_error)?;
    let locations = state.service.search(query.q.as_deref().unwrap_or_default(), limit)?;
    Ok(HttpResponse::Ok().json(SearchResponse { locations }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearestQuery {
    /// Latitude, -90..90.
    #[param(required = true, value_type = f64, minimum = -90, maximum = 90)]
    lat: Option<String>,
    /// Longitude, -180..180.
    #[param(required = true, value_type = f64, minimum = -180, maximum = 180)]
    lon: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NearestResponse {
    location: Location,
    distance_km: f64,
}

/// An optional whole-number parameter; `invalid` says what it must be.
fn count(raw: Option<&str>, invalid: fn() -> crate::service::ServiceError) -> Result<Option<usize>, ApiError> {
    raw.map(|raw| raw.parse::<usize>().map_err(|_| ApiError::from(invalid()))).transpose()
}

fn number(raw: Option<&str>, field: &'static str) -> Result<f64, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::invalid_param(field, "is required"))?;
    raw.trim().parse().map_err(|_| ApiError::invalid_param(field, format!("must be a number, got {raw:?}")))
}

/// The catalog city nearest to a point.
#[utoipa::path(get, path = "/v1/locations/nearest", tag = "locations", security((), ("bearer" = [])), params(NearestQuery),
    responses((status = 200, body = NearestResponse), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn nearest(state: web::Data<AppState>, query: web::Query<NearestQuery>) -> Result<HttpResponse, ApiError> {
    let lat = number(query.lat.as_deref(), "lat")?;
    let lon = number(query.lon.as_deref(), "lon")?;
    let (location, distance_km) = state.service.nearest(lat, lon)?;
    Ok(HttpResponse::Ok().json(NearestResponse { location, distance_km }))
}

/// One location.
#[utoipa::path(get, path = "/v1/locations/{id}", tag = "locations", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "GeoNames id (5128581) or station id (KJFK)", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")),
    responses((status = 200, body = Location), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    Ok(HttpResponse::Ok().json(state.service.location(&id).await?))
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct UnitsQuery {
    /// `metric` (default) or `imperial`.
    #[param(value_type = Option<Units>)]
    pub units: Option<String>,
}

pub fn units(raw: Option<&str>) -> Result<Units, ApiError> {
    Units::parse(raw).map_err(|e| ApiError::invalid_param("units", e.to_string()))
}

/// Consensus current conditions. Sends `ETag`, `Last-Modified` and `Cache-Control`;
/// answers a matching `If-None-Match` with 304.
#[utoipa::path(get, path = "/v1/locations/{id}/current", tag = "locations", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"), UnitsQuery),
    responses((status = 200, body = crate::domain::Current), (status = 304, description = "Not modified"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn current(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<UnitsQuery>,
) -> Result<HttpResponse, ApiError> {
    let units = units(query.units.as_deref())?;
    let update = state.service.current(&path).await?;
    Ok(render_current(&req, &update, units, &state.current_cache_control))
}

/// The /current response: the document as serialized once for this update, with ETag,
/// Last-Modified and Cache-Control, or a 304 for a matching If-None-Match.
fn render_current(req: &HttpRequest, update: &Update, units: Units, cache_control: &HeaderValue) -> HttpResponse {
    let validators = validators(update);
    let etag = match units {
        Units::Metric => &validators.metric_etag,
        Units::Imperial => &validators.imperial_etag,
    };
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == &**etag || tag.trim() == "*"));
    let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    for (name, value) in [(header::ETAG, etag), (header::LAST_MODIFIED, &validators.last_modified)] {
        // Made of ASCII digits, letters and punctuation: always a valid header value.
        if let Ok(value) = HeaderValue::from_maybe_shared(value.as_bytes().clone()) {
            response.insert_header((name, value));
        }
    }
    response.insert_header((header::CACHE_CONTROL, cache_control.clone()));
    if not_modified {
        return response.finish();
    }
    response.content_type("application/json").body(update.body(units).clone().into_bytes())
}

/// The update's validators, made once. The seq says which change this is; the version
/// that no other conditions share it (a restarted instance without a store counts seq
/// from 1 again).
fn validators(update: &Update) -> &Validators {
    update.validators.get_or_init(|| {
        let etag = |units: Units| format!("W/\"{}-{:016x}-{}\"", update.seq, update.version(), units.as_str()).into();
        Validators {
            metric_etag: etag(Units::Metric),
            imperial_etag: etag(Units::Imperial),
            last_modified: HttpDate::from(SystemTime::from(update.changed_at)).to_string().into(),
        }
    })
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// RFC 3339; default: the start of retention (`locations.history_hours` ago).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Mean per step (`30s`, `15m`, `1h`, `1d`; 1 s to 31 days); default: every reading.
    #[param(value_type = Option<String>, pattern = r"^[1-9][0-9]{0,6}[smhd]$")]
    pub step: Option<String>,
    /// `metric` (default) or `imperial`.
    #[param(value_type = Option<Units>)]
    pub units: Option<String>,
}

/// A stored reading as /history shows it.
#[derive(Serialize, ToSchema)]
pub struct ReadingView {
    #[schema(value_type = String)]
    location_id: LocationId,
    #[schema(value_type = String)]
    source: SourceName,
    observed_at: DateTime<Utc>,
    /// The quantities, in the requested units.
    #[serde(flatten)]
    values: Values,
    /// The anomalies that flag this reading (kept, marked, and left out of the consensus
    /// while active when their kind says so); absent when none does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    anomalies: Vec<ReadingFlag>,
}

/// An anomaly flagging one quantity of a stored reading; the whole anomaly is in
/// /anomalies under its id.
#[derive(Serialize, ToSchema)]
pub struct ReadingFlag {
    id: String,
    #[schema(value_type = String, example = "temperature")]
    quantity: crate::domain::Quantity,
    kind: crate::domain::AnomalyKind,
}

impl ReadingView {
    fn new(r: Reading, units: Units, flags: Vec<Anomaly>) -> Self {
        Self {
            values: r.values.in_units(units),
            location_id: r.location_id,
            source: r.source,
            observed_at: r.observed_at,
            anomalies: flags
                .into_iter()
                .map(|a| ReadingFlag { id: a.id, quantity: a.quantity, kind: a.kind })
                .collect(),
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
#[utoipa::path(get, path = "/v1/locations/{id}/history", tag = "locations", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"), HistoryQuery),
    responses((status = 200, body = HistoryResponse), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn history(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    Ok(HttpResponse::Ok().json(history_document(&state.service, &id, &query).await?))
}

/// /history's document: one path for REST and GraphQL.
pub async fn history_document(
    service: &crate::service::Service,
    id: &LocationId,
    query: &HistoryQuery,
) -> Result<HistoryResponse, ApiError> {
    let units = units(query.units.as_deref())?;
    let step_secs = match query.step.as_deref() {
        None => None,
        Some(raw) => Some(parse_step(raw).ok_or_else(|| {
            ApiError::invalid_param("step", format!("must be a duration such as 30s, 15m, 1h or 1d, got {raw:?}"))
        })?),
    };
    let request = History {
        from: timestamp(query.from.as_deref(), "from")?,
        to: timestamp(query.to.as_deref(), "to")?,
        step_secs,
    };
    let readings = service.history(id, request).await?;
    // Means over steps are no source's readings: nothing to mark.
    let flags = match step_secs {
        None => service.flags(id, &readings).await,
        Some(_) => vec![Vec::new(); readings.len()],
    };
    Ok(HistoryResponse {
        location_id: id.clone(),
        units,
        readings: readings.into_iter().zip(flags).map(|(r, f)| ReadingView::new(r, units, f)).collect(),
    })
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AnomaliesQuery {
    /// RFC 3339; anomalies that started at or after it. Default: 7 days before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; anomalies that started at or before it. Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `metric` (default) or `imperial`: the unit of `value` and `expected`.
    #[param(value_type = Option<Units>)]
    pub units: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AnomaliesResponse {
    #[schema(value_type = String)]
    location_id: LocationId,
    units: Units,
    /// Oldest first; active ones have no `ended_at`.
    anomalies: Vec<Anomaly>,
}

/// Anomalies found in the location's readings (spikes, flatlines, drift, …), active and
/// ended: from InfluxDB when it is configured, else the last `anomalies.history` the
/// location keeps in memory.
#[utoipa::path(get, path = "/v1/locations/{id}/anomalies", tag = "locations", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"), AnomaliesQuery),
    responses((status = 200, body = AnomaliesResponse), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "The anomaly store is unavailable; see Retry-After")))]
pub async fn anomalies(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AnomaliesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    Ok(HttpResponse::Ok().json(anomalies_document(&state.service, &id, &query).await?))
}

/// /anomalies' document: one path for REST and GraphQL.
pub async fn anomalies_document(
    service: &crate::service::Service,
    id: &LocationId,
    query: &AnomaliesQuery,
) -> Result<AnomaliesResponse, ApiError> {
    let units = units(query.units.as_deref())?;
    let (from, to) = (timestamp(query.from.as_deref(), "from")?, timestamp(query.to.as_deref(), "to")?);
    let anomalies = service.anomalies(id, from, to).await?;
    Ok(AnomaliesResponse {
        location_id: id.clone(),
        units,
        anomalies: anomalies.iter().map(|a| a.in_units(units)).collect(),
    })
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// 1-240, default 48.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 240)]
    pub hours: Option<String>,
    /// `metric` (default) or `imperial`.
    #[param(value_type = Option<Units>)]
    pub units: Option<String>,
    /// One model's run only: persistence, yesterday, climatology, ridge, random_forest,
    /// mlp, gradient_boosting, providers, providers_corrected or ensemble.
    #[param(value_type = Option<crate::analytics::forecast::Model>)]
    pub model: Option<String>,
}

/// Hourly forecast: each provider's run and their blend, whose `spread` is the standard
/// deviation across providers; with forecasting on, `models` has every model learned
/// from the location's own readings with its live skill, and the hours they forecast
/// show their skill-weighted ensemble (which weighs the providers' blend, and its
/// correction for the place, too).
#[utoipa::path(get, path = "/v1/locations/{id}/forecast", tag = "locations", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"), ForecastQuery),
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
    Ok(HttpResponse::Ok().json(forecast_document(&state.service, &id, &query).await?))
}

/// /forecast's document: one path for REST and GraphQL.
pub async fn forecast_document(
    service: &crate::service::Service,
    id: &LocationId,
    query: &ForecastQuery,
) -> Result<crate::domain::Forecast, ApiError> {
    let units = units(query.units.as_deref())?;
    let hours = count(query.hours.as_deref(), forecast_hours_error)?;
    Ok(service.forecast(id, hours, query.model.as_deref(), units).await?)
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AirQualityQuery {
    /// The hourly AQI forecast for this many hours after the current one, 1-48 (default:
    /// none).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 48)]
    pub hours: Option<String>,
}

/// The location's air quality now: the US AQI (EPA, 2024) from the hourly means of the
/// pollutants its sources reported in the last 24 hours (PM2.5 and PM10 by NowCast),
/// with each pollutant's sub-index, the dominant pollutant, the category, its colour and
/// EPA's advice; the European index (EEA) beside it; each source's latest pollutants; the
/// providers' own indices; and with `?hours=`, the hourly AQI forecast from the
/// providers' pollutant forecasts.
#[utoipa::path(get, path = "/v1/locations/{id}/air-quality", tag = "locations", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"),
           AirQualityQuery),
    responses((status = 200, body = crate::analytics::aqi::AirQuality),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "Unknown location, or no recent pollutant readings")))]
pub async fn air_quality(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AirQualityQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    Ok(HttpResponse::Ok().json(air_quality_document(&state.service, &id, &query).await?))
}

/// /air-quality's document: one path for REST and GraphQL.
pub async fn air_quality_document(
    service: &crate::service::Service,
    id: &LocationId,
    query: &AirQualityQuery,
) -> Result<crate::analytics::aqi::AirQuality, ApiError> {
    let hours = count(query.hours.as_deref(), air_quality_hours_error)?;
    Ok(service.air_quality(id, hours).await?)
}

/// What a training fitted.
#[derive(Serialize, ToSchema)]
pub struct TrainedBody {
    pub location_id: String,
    pub trained: Vec<crate::domain::TrainedSummary>,
}

/// Fits the location's learned forecast models now (they are also refitted on a
/// schedule, `forecast.retrain_hours`). Operators only: an admin key, or loopback.
#[utoipa::path(post, path = "/v1/locations/{id}/forecast/train", tag = "locations", security(("bearer" = []), ()),
    params(("id" = String, Path, description = "Location id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")),
    responses((status = 200, body = TrainedBody),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json", description = "Not on loopback and no admin key"),
              (status = 403, body = Problem, content_type = "application/problem+json", description = "Not an admin key"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "Unknown location, forecasting off, or no readings learned"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "Too little history to train on")))]
pub async fn train(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = AppState::parse_id(&path)?;
    let trained = state.service.train(&id).await?;
    Ok(HttpResponse::Ok().json(TrainedBody { location_id: id.to_string(), trained }))
}
