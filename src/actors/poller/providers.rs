//! The fetch flow of each provider: which requests, in which order, through its
//! `Upstream`; parsing is the pure code in `crate::sources`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use super::upstream::Upstream;
use crate::domain::{Location, LocationId};
use crate::sources::{ProviderData, SourceError, met_norway, nws, open_meteo, openweathermap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenMeteo,
    MetNorway,
    Nws,
    OpenWeatherMap,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenMeteo => open_meteo::NAME,
            Self::MetNorway => met_norway::NAME,
            Self::Nws => nws::NAME,
            Self::OpenWeatherMap => openweathermap::NAME,
        }
    }

    /// Locations per request.
    pub fn max_batch(self) -> usize {
        match self {
            Self::OpenMeteo => open_meteo::MAX_BATCH,
            _ => 1,
        }
    }

    /// Whether the provider serves this location at all.
    pub fn covers(self, location: &Location) -> bool {
        match self {
            Self::Nws => location.country == "US",
            _ => true,
        }
    }
}

/// What one fetch produced, per location, and how long it stays fresh.
pub type FetchResult = (Vec<(LocationId, Result<ProviderData, SourceError>)>, Duration);

/// NWS grid metadata of a location: stable, so looked up once.
#[derive(Clone)]
struct NwsGrid {
    forecast_hourly: String,
    station: String,
}

pub struct Provider {
    pub kind: ProviderKind,
    pub upstream: Upstream,
    api_key: String,
    nws_grids: Mutex<HashMap<LocationId, NwsGrid>>,
}

impl Provider {
    pub fn new(kind: ProviderKind, upstream: Upstream, api_key: String) -> Self {
        Self { kind, upstream, api_key, nws_grids: Mutex::new(HashMap::new()) }
    }

    pub async fn fetch(&self, targets: &[Arc<Location>]) -> FetchResult {
        match self.kind {
            ProviderKind::OpenMeteo => self.open_meteo(targets).await,
            _ => {
                let mut out = Vec::with_capacity(targets.len());
                let mut fresh_for = Duration::MAX;
                for target in targets {
                    let (result, fresh) = match self.kind {
                        ProviderKind::MetNorway => self.met_norway(target).await,
                        ProviderKind::Nws => self.nws(target).await,
                        _ => self.openweathermap(target).await,
                    };
                    fresh_for = fresh_for.min(fresh);
                    out.push((target.id.clone(), result.map_err(|e| self.explain(e))));
                }
                (out, fresh_for)
            }
        }
    }

    /// Turns provider-specific refusals into errors that name the setting to fix.
    fn explain(&self, error: SourceError) -> SourceError {
        match (self.kind, &error) {
            (ProviderKind::MetNorway, SourceError::Refused { status: 403, .. }) => SourceError::Misconfigured(
                "MET Norway refused the User-Agent (HTTP 403): set sources.contact (ISOBAR__SOURCES__CONTACT) to your e-mail or URL so requests identify you".into(),
            ),
            (ProviderKind::OpenWeatherMap, SourceError::Refused { status: 401, .. }) => SourceError::Misconfigured(
                "OpenWeatherMap rejected the API key (HTTP 401): check sources.openweathermap.api_key (a new key can take a while to activate)".into(),
            ),
            (ProviderKind::Nws, SourceError::Refused { status: 404, .. }) => {
                SourceError::NotCovered("NWS serves US points only".into())
            }
            _ => error,
        }
    }

    async fn open_meteo(&self, targets: &[Arc<Location>]) -> FetchResult {
        let points: Vec<(f64, f64)> = targets.iter().map(|l| (l.latitude, l.longitude)).collect();
        let ids: Vec<LocationId> = targets.iter().map(|l| l.id.clone()).collect();
        let url = open_meteo::forecast_url(self.upstream.base_url(), &points);
        match self.upstream.get_json(&url).await.and_then(|f| Ok((open_meteo::parse(&f.body, &ids)?, f.fresh_for))) {
            Ok((data, fresh)) => (ids.into_iter().zip(data.into_iter().map(Ok)).collect(), fresh),
            Err(e) => {
                let e = self.explain(e);
                (ids.into_iter().map(|id| (id, Err(e.clone()))).collect(), Duration::ZERO)
            }
        }
    }

    async fn met_norway(&self, l: &Location) -> (Result<ProviderData, SourceError>, Duration) {
        let url = met_norway::forecast_url(self.upstream.base_url(), l.latitude, l.longitude);
        match self.upstream.get_json(&url).await {
            Ok(f) => (met_norway::parse(&f.body, &l.id, Utc::now()), f.fresh_for),
            Err(e) => (Err(e), Duration::ZERO),
        }
    }

    async fn nws(&self, l: &Location) -> (Result<ProviderData, SourceError>, Duration) {
        let base = self.upstream.base_url().to_owned();
        let known = self.nws_grids.lock().unwrap_or_else(|p| p.into_inner()).get(&l.id).cloned();
        let grid = match known {
            Some(grid) => grid,
            None => match self.nws_grid(&base, l).await {
                Ok(grid) => {
                    self.nws_grids.lock().unwrap_or_else(|p| p.into_inner()).insert(l.id.clone(), grid.clone());
                    grid
                }
                Err(e) => return (Err(e), Duration::ZERO),
            },
        };
        let observation = self.upstream.get_json(&nws::observation_url(&base, &grid.station)).await;
        let forecast = self.upstream.get_json(&grid.forecast_hourly).await;
        let fresh_for = [&observation, &forecast]
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|f| f.fresh_for))
            .min()
            .unwrap_or(Duration::ZERO);
        let reading = observation.and_then(|f| nws::parse_observation(&f.body, &l.id));
        let run = forecast.and_then(|f| nws::parse_forecast_hourly(&f.body, Utc::now()));
        let result = match (reading, run) {
            (Err(e), Err(_)) => Err(e),
            (reading, run) => Ok(ProviderData { reading: reading.ok(), forecast: run.ok() }),
        };
        (result, fresh_for)
    }

    async fn nws_grid(&self, base: &str, l: &Location) -> Result<NwsGrid, SourceError> {
        let point = self.upstream.get_json(&nws::points_url(base, l.latitude, l.longitude)).await?;
        let point = nws::parse_point(&point.body)?;
        let stations = self.upstream.get_json(&nws::rebase(base, &point.stations)).await?;
        Ok(NwsGrid {
            forecast_hourly: nws::rebase(base, &point.forecast_hourly),
            station: nws::parse_stations(&stations.body)?,
        })
    }

    async fn openweathermap(&self, l: &Location) -> (Result<ProviderData, SourceError>, Duration) {
        let base = self.upstream.base_url();
        let current =
            self.upstream.get_json(&openweathermap::current_url(base, l.latitude, l.longitude, &self.api_key)).await;
        if let Err(e) = &current
            && !e.retryable()
        {
            return (Err(e.clone()), Duration::ZERO);
        }
        let forecast =
            self.upstream.get_json(&openweathermap::forecast_url(base, l.latitude, l.longitude, &self.api_key)).await;
        let fresh_for = [&current, &forecast]
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|f| f.fresh_for))
            .min()
            .unwrap_or(Duration::ZERO);
        let units = openweathermap::Units::Metric;
        let reading = current.and_then(|f| openweathermap::parse_current(&f.body, &l.id, units));
        let run = forecast.and_then(|f| openweathermap::parse_forecast(&f.body, units, Utc::now()));
        let result = match (reading, run) {
            (Err(e), Err(_)) => Err(e),
            (reading, run) => Ok(ProviderData { reading: reading.ok(), forecast: run.ok() }),
        };
        (result, fresh_for)
    }
}
