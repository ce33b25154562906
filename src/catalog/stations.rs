//! `Stations`: the locations first seen through readings (or registered at start, like
//! the replay's airports), beside the city catalog.
//!
//! The `Directory` alone writes it (it decides which locations exist); the service reads
//! it for lookups and search without messaging any actor.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{MatchRank, fold};
use crate::domain::{Location, LocationId};

/// A registered station with its id and name folded once for search.
struct Station {
    location: Arc<Location>,
    folded_id: String,
    folded_name: String,
}

#[derive(Default)]
pub struct Stations {
    by_id: RwLock<HashMap<LocationId, Station>>,
}

impl Stations {
    /// Registers (or replaces) a station. Called by the `Directory` only.
    pub fn insert(&self, location: Location) {
        let station = Station {
            folded_id: fold(location.id.as_str()),
            folded_name: fold(&location.name),
            location: Arc::new(location),
        };
        self.by_id.write().unwrap_or_else(|p| p.into_inner()).insert(station.location.id.clone(), station);
    }

    pub fn get(&self, id: &LocationId) -> Option<Arc<Location>> {
        self.by_id.read().unwrap_or_else(|p| p.into_inner()).get(id).map(|s| s.location.clone())
    }

    pub fn contains(&self, id: &LocationId) -> bool {
        self.by_id.read().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    /// Stations within `km` of a point, nearest first; at most `limit`.
    pub fn near(&self, latitude: f64, longitude: f64, km: f64, limit: usize) -> Vec<Location> {
        let stations = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let mut near: Vec<(f64, &Arc<Location>)> = stations
            .values()
            .map(|s| (super::haversine_km(latitude, longitude, s.location.latitude, s.location.longitude), &s.location))
            .filter(|(d, _)| *d <= km)
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        near.into_iter().take(limit).map(|(_, l)| (**l).clone()).collect()
    }

    /// Stations whose folded id or name equals or starts with the folded `query`, exact
    /// matches first, then by id; at most `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(MatchRank, Location)> {
        let query = fold(query);
        let stations = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let mut hits: Vec<(MatchRank, Location)> = stations
            .values()
            .filter_map(|s| {
                let (id, name) = (&s.folded_id, &s.folded_name);
                let rank = if *id == query || *name == query {
                    MatchRank::Exact
                } else if id.starts_with(&query) || name.starts_with(&query) {
                    MatchRank::Prefix
                } else {
                    return None;
                };
                Some((rank, (*s.location).clone()))
            })
            .collect();
        hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        hits.truncate(limit);
        hits
    }
}
