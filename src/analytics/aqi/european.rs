//! The European Air Quality Index (EEA) as a second scale: six levels from good to
//! extremely poor, each pollutant's level from its 1-hour mean, the index the poorest of
//! them. Bands of the revision aligned with the WHO 2021 guidelines (ETC HE Report
//! 2024/17, Table 5.2, in use from 2025), colours of the EEA's index viewer. CO is not
//! part of it.

use serde::Serialize;
use utoipa::ToSchema;

use super::Pollutant;

/// The six levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EuropeanLevel {
    Good,
    Fair,
    Moderate,
    Poor,
    VeryPoor,
    ExtremelyPoor,
}

const LEVELS: [EuropeanLevel; 6] = [
    EuropeanLevel::Good,
    EuropeanLevel::Fair,
    EuropeanLevel::Moderate,
    EuropeanLevel::Poor,
    EuropeanLevel::VeryPoor,
    EuropeanLevel::ExtremelyPoor,
];

impl EuropeanLevel {
    pub fn name(self) -> &'static str {
        ["Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor"][self as usize]
    }

    /// The EEA viewer's colour, `#RRGGBB`.
    pub fn colour(self) -> &'static str {
        ["#50F0E6", "#50CCAA", "#F0E641", "#FF5050", "#960032", "#7D2181"][self as usize]
    }
}

/// The upper bound (µg/m³, inclusive) of each level but the last.
fn bands(pollutant: Pollutant) -> Option<[f64; 5]> {
    match pollutant {
        Pollutant::Pm25 => Some([5.0, 15.0, 50.0, 90.0, 140.0]),
        Pollutant::Pm10 => Some([15.0, 45.0, 120.0, 195.0, 270.0]),
        Pollutant::No2 => Some([10.0, 25.0, 60.0, 100.0, 150.0]),
        Pollutant::O3 => Some([60.0, 100.0, 120.0, 160.0, 180.0]),
        Pollutant::So2 => Some([20.0, 40.0, 125.0, 190.0, 275.0]),
        Pollutant::Co => None,
    }
}

/// A pollutant's level at a 1-hour mean of `ugm3`; `None` for CO or a value that is not
/// a concentration.
pub fn level(pollutant: Pollutant, ugm3: f64) -> Option<EuropeanLevel> {
    if !ugm3.is_finite() || ugm3 < 0.0 {
        return None;
    }
    let bands = bands(pollutant)?;
    Some(LEVELS[bands.iter().take_while(|&&upper| ugm3 > upper).count()])
}

/// The European index of a location's newest hour.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EuropeanIndex {
    pub level: EuropeanLevel,
    pub level_name: String,
    /// The EEA's colour of the level, `#RRGGBB`.
    pub colour: String,
    /// The pollutant whose level is the index's.
    pub dominant: Pollutant,
    pub pollutants: Vec<EuropeanPollutant>,
}

/// One pollutant's part of the European index.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EuropeanPollutant {
    pub pollutant: Pollutant,
    /// Its 1-hour mean, µg/m³.
    pub concentration: f64,
    pub level: EuropeanLevel,
}

/// The index of the pollutants' 1-hour means (µg/m³); `None` when none of the five has
/// one. The first pollutant listed wins a tie.
pub fn index(hour: &[(Pollutant, Option<f64>)]) -> Option<EuropeanIndex> {
    let pollutants: Vec<EuropeanPollutant> = hour
        .iter()
        .filter_map(|&(pollutant, c)| {
            let concentration = c?;
            Some(EuropeanPollutant { pollutant, concentration, level: level(pollutant, concentration)? })
        })
        .collect();
    let top = pollutants.iter().reduce(|best, p| if p.level > best.level { p } else { best })?;
    let (level, dominant) = (top.level, top.pollutant);
    Some(EuropeanIndex {
        level,
        level_name: level.name().to_owned(),
        colour: level.colour().to_owned(),
        dominant,
        pollutants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_band_ends_at_its_upper_bound_for_every_pollutant() {
        for p in Pollutant::ALL {
            let Some(bands) = bands(p) else {
                assert_eq!(p, Pollutant::Co);
                assert_eq!(level(p, 1.0), None);
                continue;
            };
            assert_eq!(level(p, 0.0), Some(EuropeanLevel::Good));
            for (k, upper) in bands.iter().enumerate() {
                assert_eq!(level(p, *upper), Some(LEVELS[k]), "{p:?} at {upper}");
                assert_eq!(level(p, upper + 0.01), Some(LEVELS[k + 1]), "{p:?} above {upper}");
            }
        }
        assert_eq!(level(Pollutant::Pm25, -1.0), None);
        assert_eq!(level(Pollutant::Pm25, f64::NAN), None);
    }

    #[test]
    fn the_index_is_the_poorest_pollutants_level() {
        // PM2.5 at 23 µg/m³ is moderate, NO2 at 70 poor, ozone at 80 fair; CO does not count.
        let hour = [
            (Pollutant::Pm25, Some(23.0)),
            (Pollutant::Co, Some(9000.0)),
            (Pollutant::O3, Some(80.0)),
            (Pollutant::No2, Some(70.0)),
            (Pollutant::So2, None),
        ];
        let index = index(&hour).unwrap();
        assert_eq!(
            (index.level, index.level_name.as_str(), index.colour.as_str()),
            (EuropeanLevel::Poor, "Poor", "#FF5050")
        );
        assert_eq!(index.dominant, Pollutant::No2);
        let levels: Vec<(Pollutant, EuropeanLevel)> = index.pollutants.iter().map(|p| (p.pollutant, p.level)).collect();
        assert_eq!(
            levels,
            [
                (Pollutant::Pm25, EuropeanLevel::Moderate),
                (Pollutant::O3, EuropeanLevel::Fair),
                (Pollutant::No2, EuropeanLevel::Poor)
            ]
        );
        assert_eq!(super::index(&[(Pollutant::Co, Some(100.0))]), None);
    }
}
