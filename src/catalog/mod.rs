//! The bundled city catalog: 69k GeoNames cities (population ≥ 5000 or seats), compiled
//! into the binary from `data/cities.tsv` (GeoNames, geonames.org, CC BY 4.0).
//!
//! Read-only after start-up and shared by the service layer and the `Directory`: lookup
//! by id, search by name prefix (accent- and case-insensitive; exact name first, then by
//! population), and nearest city to a point. [`Stations`] holds the locations known
//! from readings; [`search`] ranks both in one list.

pub mod stations;

use std::collections::HashMap;

pub use self::stations::Stations;

use crate::domain::{Location, LocationId, LocationKind};

const CITIES_TSV: &str = include_str!("../../data/cities.tsv");

/// Mean Earth radius used for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

struct City {
    geonameid: u32,
    name: Box<str>,
    country: Box<str>,
    latitude: f64,
    longitude: f64,
    population: u64,
    timezone: Box<str>,
}

/// The city catalog. Build once with [`Catalog::bundled`] and share behind an `Arc`.
pub struct Catalog {
    cities: Vec<City>,
    /// (folded name, index into `cities`), sorted: prefix search is a range of this.
    names: Vec<(Box<str>, u32)>,
    by_id: HashMap<u32, u32>,
    /// City indexes per 1° × 1° cell (row = latitude + 90, column = longitude + 180):
    /// nearest-city lookups visit a few cells instead of every city.
    grid: Vec<Vec<u32>>,
}

const GRID_COLUMNS: i32 = 360;
const GRID_ROWS: i32 = 180;

fn cell_of(latitude: f64, longitude: f64) -> (i32, i32) {
    let row = ((latitude + 90.0).floor() as i32).clamp(0, GRID_ROWS - 1);
    let column = ((longitude + 180.0).floor() as i32).rem_euclid(GRID_COLUMNS);
    (row, column)
}

/// How well a name matched a query, best first: ranks search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchRank {
    Exact,
    Prefix,
    /// A station near a city whose name matched ("new york" finds KJFK).
    Near,
}

/// How far from a matched city a station is still "near" it.
pub const NEAR_KM: f64 = 50.0;

/// Lower-case ASCII form of a name, so that "zurich" finds "Zürich".
pub fn fold(name: &str) -> String {
    deunicode::deunicode(name).to_lowercase()
}

impl Catalog {
    /// Parses the catalog compiled into the binary.
    pub fn bundled() -> Self {
        Self::parse(CITIES_TSV)
    }

    fn parse(tsv: &str) -> Self {
        let mut cities = Vec::with_capacity(70_000);
        for line in tsv.lines().filter(|l| !l.starts_with('#')) {
            let mut f = line.split('\t');
            let mut next = || f.next().unwrap_or_default();
            let (id, name, country, lat, lon, pop, tz) = (next(), next(), next(), next(), next(), next(), next());
            let (Ok(geonameid), Ok(latitude), Ok(longitude)) = (id.parse(), lat.parse(), lon.parse()) else {
                continue;
            };
            cities.push(City {
                geonameid,
                name: name.into(),
                country: country.into(),
                latitude,
                longitude,
                population: pop.parse().unwrap_or(0),
                timezone: tz.into(),
            });
        }
        let mut names: Vec<(Box<str>, u32)> =
            cities.iter().enumerate().map(|(i, c)| (fold(&c.name).into_boxed_str(), i as u32)).collect();
        names.sort_unstable();
        let by_id = cities.iter().enumerate().map(|(i, c)| (c.geonameid, i as u32)).collect();
        let mut grid = vec![Vec::new(); (GRID_ROWS * GRID_COLUMNS) as usize];
        for (i, c) in cities.iter().enumerate() {
            let (row, column) = cell_of(c.latitude, c.longitude);
            grid[(row * GRID_COLUMNS + column) as usize].push(i as u32);
        }
        Self { cities, names, by_id, grid }
    }

    pub fn len(&self) -> usize {
        self.cities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cities.is_empty()
    }

    /// The city with this GeoNames id, if the id is one.
    pub fn get(&self, id: &LocationId) -> Option<Location> {
        let geonameid: u32 = id.as_str().parse().ok()?;
        self.by_id.get(&geonameid).map(|i| self.location(*i as usize))
    }

    /// Cities whose folded name starts with the folded `query`, exact matches first, then by
    /// population (largest first); at most `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(MatchRank, Location)> {
        let q = fold(query);
        let start = self.names.partition_point(|(n, _)| n.as_ref() < q.as_str());
        let mut hits: Vec<(MatchRank, u64, u32)> = self.names[start..]
            .iter()
            .take_while(|(n, _)| n.starts_with(q.as_str()))
            .map(|(n, i)| {
                let rank = if n.len() == q.len() { MatchRank::Exact } else { MatchRank::Prefix };
                (rank, self.cities[*i as usize].population, *i)
            })
            .collect();
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        hits.into_iter().take(limit).map(|(rank, _, i)| (rank, self.location(i as usize))).collect()
    }

    /// The city closest to (`latitude`, `longitude`) and its distance in km.
    ///
    /// Visits grid cells in growing rings around the point's cell and stops once every
    /// cell of a ring lies farther away than the best city found (a cell's distance is
    /// bounded below by the distance to its nearest edge point).
    pub fn nearest(&self, latitude: f64, longitude: f64) -> Option<(Location, f64)> {
        let (row, column) = cell_of(latitude, longitude);
        let mut best: Option<(usize, f64)> = None;
        for ring in 0..=GRID_COLUMNS / 2 {
            let mut ring_min = f64::INFINITY;
            for r in (row - ring).max(0)..=(row + ring).min(GRID_ROWS - 1) {
                let on_edge_row = (r - row).abs() == ring;
                let columns: Vec<i32> = if on_edge_row {
                    (column - ring..=column + ring).collect()
                } else {
                    vec![column - ring, column + ring]
                };
                for c in columns {
                    let c = c.rem_euclid(GRID_COLUMNS);
                    let bound = cell_distance_bound(latitude, longitude, r, c);
                    ring_min = ring_min.min(bound);
                    if best.is_some_and(|(_, d)| bound >= d) {
                        continue;
                    }
                    for &i in &self.grid[(r * GRID_COLUMNS + c) as usize] {
                        let city = &self.cities[i as usize];
                        let d = haversine_km(latitude, longitude, city.latitude, city.longitude);
                        if best.is_none_or(|(_, b)| d < b) {
                            best = Some((i as usize, d));
                        }
                    }
                }
            }
            if best.is_some_and(|(_, d)| ring_min >= d) {
                break;
            }
        }
        best.map(|(i, d)| (self.location(i), d))
    }

    fn location(&self, index: usize) -> Location {
        let c = &self.cities[index];
        Location {
            // Every catalog id is digits only, which is always a valid location id.
            id: LocationId::parse(&c.geonameid.to_string()).unwrap_or_else(|_| unreachable!()),
            name: c.name.to_string(),
            country: c.country.to_string(),
            latitude: c.latitude,
            longitude: c.longitude,
            timezone: c.timezone.to_string(),
            population: Some(c.population),
            elevation: None,
            kind: LocationKind::City,
        }
    }
}

/// Cities and stations whose name (or station id) starts with `query`, in one ranking:
/// exact matches first, a station before a city in a tie (a station id match is the more
/// specific answer), then by population; at most `limit`.
pub fn search(catalog: &Catalog, stations: &Stations, query: &str, limit: usize) -> Vec<Location> {
    let mut hits = catalog.search(query, limit);
    let mut named = stations.search(query, limit);
    // Then the stations within NEAR_KM of the best matched city, nearest first.
    if let Some((_, city)) = hits.first() {
        let near = stations.near(city.latitude, city.longitude, NEAR_KM, limit);
        let fresh: Vec<Location> = near.into_iter().filter(|l| !named.iter().any(|(_, n)| n.id == l.id)).collect();
        named.extend(fresh.into_iter().map(|l| (MatchRank::Near, l)));
    }
    hits.extend(named);
    // Both lists are ranked; a stable sort keeps each one's order within a tie.
    hits.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| (a.1.kind as u8).cmp(&(b.1.kind as u8)).reverse())
            .then_with(|| b.1.population.cmp(&a.1.population))
    });
    hits.into_iter().take(limit).map(|(_, l)| l).collect()
}

/// A lower bound of the distance from a point to any point of grid cell (`row`, `column`).
fn cell_distance_bound(latitude: f64, longitude: f64, row: i32, column: i32) -> f64 {
    let (south, west) = ((row - 90) as f64, (column - 180) as f64);
    let lat = latitude.clamp(south, south + 1.0);
    // Longitude wraps: the nearer of the cell's edges, either way round.
    let delta = |edge: f64| {
        let d = (longitude - edge).rem_euclid(360.0);
        d.min(360.0 - d)
    };
    let inside = (longitude - west).rem_euclid(360.0) <= 1.0;
    let lon = if inside {
        longitude
    } else if delta(west) <= delta(west + 1.0) {
        west
    } else {
        west + 1.0
    };
    haversine_km(latitude, longitude, lat, lon) * 0.999
}

/// Great-circle distance in km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::bundled);

    #[test]
    fn bundles_every_city_of_the_dataset() {
        assert_eq!(CATALOG.len(), 69_472);
    }

    #[test]
    fn finds_new_york_city_by_geonames_id() {
        let nyc = CATALOG.get(&LocationId::parse("5128581").unwrap()).unwrap();
        assert_eq!(nyc.name, "New York City");
        assert_eq!(nyc.country, "US");
        assert_eq!(nyc.timezone, "America/New_York");
        assert_eq!(nyc.kind, LocationKind::City);
        assert!(CATALOG.get(&LocationId::parse("KJFK").unwrap()).is_none());
    }

    #[test]
    fn search_ranks_exact_name_first_then_population() {
        let hits = CATALOG.search("Paris", 3);
        let names: Vec<_> = hits.iter().map(|(_, l)| (l.name.as_str(), l.country.as_str())).collect();
        assert_eq!(hits[0].0, MatchRank::Exact);
        assert_eq!(names[0], ("Paris", "FR"));
        let pops: Vec<_> = CATALOG.search("lon", 10).iter().map(|(_, l)| l.population.unwrap()).collect();
        assert!(pops.windows(2).all(|w| w[0] >= w[1]), "{pops:?}");
        assert_eq!(CATALOG.search("lon", 1)[0].1.name, "London");
    }

    #[test]
    fn search_ignores_case_and_accents() {
        assert_eq!(CATALOG.search("zurich", 1)[0].1.name, "Zürich");
        assert_eq!(CATALOG.search("SÃO PAULO", 1)[0].1.name, "São Paulo");
        assert!(CATALOG.search("qqqqxz", 5).is_empty());
    }

    #[test]
    fn nearest_finds_the_closest_city_and_its_distance() {
        let (city, km) = CATALOG.nearest(40.639751, -73.778925).unwrap();
        assert_eq!((city.id.as_str(), city.name.as_str()), ("5139287", "Springfield Gardens"));
        assert_eq!((km * 100.0).round() / 100.0, 2.96);
        let (city, km) = CATALOG.nearest(40.7128, -74.0060).unwrap();
        assert_eq!(city.name, "New York City");
        assert_eq!((km * 100.0).round() / 100.0, 0.16);
    }

    #[test]
    fn the_grid_search_agrees_with_a_full_scan() {
        let full_scan = |lat: f64, lon: f64| {
            CATALOG
                .cities
                .iter()
                .enumerate()
                .map(|(i, c)| (i, haversine_km(lat, lon, c.latitude, c.longitude)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| CATALOG.cities[i].geonameid)
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let (lat, lon) = (rng.f64() * 180.0 - 90.0, rng.f64() * 360.0 - 180.0);
            let fast = CATALOG.nearest(lat, lon).map(|(l, _)| l.id.as_str().parse::<u32>().unwrap());
            assert_eq!(fast, full_scan(lat, lon), "at {lat},{lon}");
        }
        for (lat, lon) in [(89.9, 0.0), (-89.9, 179.9), (0.0, 179.99), (0.0, -179.99), (64.1, -21.9)] {
            let fast = CATALOG.nearest(lat, lon).map(|(l, _)| l.id.as_str().parse::<u32>().unwrap());
            assert_eq!(fast, full_scan(lat, lon), "at {lat},{lon}");
        }
    }

    #[test]
    fn a_city_brings_the_stations_near_it_after_the_names_that_match() {
        let stations = Stations::default();
        let station = |id: &str, name: &str, latitude: f64, longitude: f64| Location {
            id: LocationId::parse(id).unwrap(),
            name: name.into(),
            country: "US".into(),
            latitude,
            longitude,
            timezone: "America/New_York".into(),
            population: None,
            elevation: None,
            kind: LocationKind::Station,
        };
        stations.insert(station("KJFK", "John F Kennedy Intl", 40.639751, -73.778925));
        stations.insert(station("KEWR", "Newark Liberty Intl", 40.6925, -74.168667));
        stations.insert(station("KBOS", "Boston Logan", 42.3656, -71.0096));
        stations.insert(station("NEWYORK1", "new york roof", 40.7, -74.0));
        let found: Vec<String> = search(&CATALOG, &stations, "new york", 10).iter().map(|l| l.id.to_string()).collect();
        // The names that match (a station before a city on a tie, as before), then the
        // stations within 50 km of the city, nearest first.
        assert_eq!(found[..2], ["NEWYORK1".to_owned(), "5128581".to_owned()]);
        let near: Vec<&str> = found.iter().map(String::as_str).filter(|id| id.starts_with('K')).collect();
        assert_eq!(near, ["KEWR", "KJFK"]);
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // JFK to LHR is about 5,540 km.
        let d = haversine_km(40.6413, -73.7781, 51.4700, -0.4543);
        assert!((d - 5540.0).abs() < 10.0, "{d}");
    }
}
