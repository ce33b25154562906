//! Blending providers' hourly forecasts into one series.
//!
//! Every hour (on the hour) that at least one run covers gets the mean of the runs that
//! cover it (wind direction: circular mean; weather code: the mode, ties to the more
//! severe code), and a `spread`: the population standard deviation across runs, `null`
//! where fewer than two runs give the quantity.

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};

use super::consensus::{circular_mean, weighted_mode};
use crate::domain::units::round2;
use crate::domain::{Forecast, ForecastHour, ForecastRun, Learned, LocationRef, Spread, Units};

pub fn blend(location: LocationRef, runs: &[ForecastRun], now: DateTime<Utc>) -> Forecast {
    let mut hours: BTreeMap<DateTime<Utc>, Vec<&ForecastHour>> = BTreeMap::new();
    for run in runs {
        for h in &run.hourly {
            if h.time.minute() == 0 && h.time.second() == 0 {
                hours.entry(h.time).or_default().push(h);
            }
        }
    }
    let hourly = hours
        .into_iter()
        .map(|(time, hs)| {
            let values = |f: fn(&ForecastHour) -> Option<f64>| hs.iter().filter_map(|h| f(h)).collect::<Vec<f64>>();
            let mean = |v: &[f64]| (!v.is_empty()).then(|| round2(v.iter().sum::<f64>() / v.len() as f64));
            let spread = |v: &[f64]| {
                (v.len() >= 2).then(|| {
                    let m = v.iter().sum::<f64>() / v.len() as f64;
                    round2((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
                })
            };
            let temperature = values(|h| h.temperature);
            let wind = values(|h| h.wind_speed);
            let precipitation = values(|h| h.precipitation);
            let directions: Vec<(f64, f64)> = values(|h| h.wind_direction).into_iter().map(|d| (d, 1.0)).collect();
            ForecastHour {
                time,
                temperature: mean(&temperature),
                humidity: mean(&values(|h| h.humidity)),
                precipitation: mean(&precipitation),
                precipitation_probability: mean(&values(|h| h.precipitation_probability)),
                wind_speed: mean(&wind),
                wind_direction: circular_mean(&directions).map(round2),
                weather_code: weighted_mode(hs.iter().filter_map(|h| Some((h.weather_code?, 1.0)))),
                spread: Some(Spread {
                    temperature: spread(&temperature),
                    wind_speed: spread(&wind),
                    precipitation: spread(&precipitation),
                }),
            }
        })
        .collect();
    let mut sources = runs.to_vec();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Forecast { location, generated_at: now, units: Units::Metric, hourly, sources, models: None }
}

/// The providers' blend with the models learned from the place's history: each hour the
/// models' ensemble forecasts takes the ensemble's temperature, humidity and wind speed
/// (the ensemble weighs the providers' blend among the models, by each one's skill), and
/// `models` lists every model's run.
pub fn with_learned(mut forecast: Forecast, learned: &Learned) -> Forecast {
    if let Some(ensemble) = learned.runs.iter().find(|r| r.model == "ensemble") {
        for hour in &ensemble.hourly {
            if hour.temperature.is_none() && hour.humidity.is_none() && hour.wind_speed.is_none() {
                continue;
            }
            let i = match forecast.hourly.binary_search_by_key(&hour.time, |h| h.time) {
                Ok(i) => i,
                Err(i) => {
                    forecast.hourly.insert(i, ForecastHour::empty(hour.time));
                    i
                }
            };
            let shown = &mut forecast.hourly[i];
            shown.temperature = hour.temperature.or(shown.temperature);
            shown.humidity = hour.humidity.or(shown.humidity);
            shown.wind_speed = hour.wind_speed.or(shown.wind_speed);
        }
    }
    forecast.models = Some(learned.clone());
    forecast
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LocationId, SourceName};

    fn hour(t: &str, temperature: f64, code: u8) -> ForecastHour {
        let mut h = ForecastHour::empty(t.parse().unwrap());
        h.temperature = Some(temperature);
        h.weather_code = Some(code);
        h
    }

    fn run(name: &str, hours: Vec<ForecastHour>) -> ForecastRun {
        ForecastRun {
            name: SourceName::parse(name).unwrap(),
            issued_at: "2026-11-26T06:00:00Z".parse().unwrap(),
            hourly: hours,
        }
    }

    #[test]
    fn averages_covering_runs_and_reports_their_spread() {
        let location = LocationRef {
            id: LocationId::parse("X").unwrap(),
            name: "X".into(),
            latitude: 0.0,
            longitude: 0.0,
            timezone: "UTC".into(),
        };
        let runs = [
            run("met-norway", vec![hour("2026-11-26T10:00:00Z", 8.0, 3), hour("2026-11-26T11:00:00Z", 9.0, 61)]),
            run("open-meteo", vec![hour("2026-11-26T10:00:00Z", 9.2, 61), hour("2026-11-26T10:30:00Z", 1.0, 0)]),
        ];
        let f = blend(location, &runs, "2026-11-26T09:30:00Z".parse().unwrap());
        assert_eq!(f.hourly.len(), 2);
        assert_eq!(f.hourly[0].temperature, Some(8.6));
        assert_eq!(f.hourly[0].spread.as_ref().unwrap().temperature, Some(0.6));
        assert_eq!(f.hourly[0].weather_code, Some(61));
        assert_eq!(f.hourly[1].temperature, Some(9.0));
        assert_eq!(f.hourly[1].spread.as_ref().unwrap().temperature, None);
        assert_eq!(f.sources.len(), 2);
    }
}
