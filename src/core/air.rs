//! The air quality watch: a per-location [`Analysis`] that, when a reading brings
//! pollutants, computes the US AQI from the location's last 24 hours of readings (as
//! `/air-quality` does) and tells subscribers when the category changes or a new hour of
//! pollutants is in.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{AirQualityUpdate, Analysis, LocationEvent, LocationState};
use crate::analytics::aqi::{Category, Pollutant, category_at, from_readings};
use crate::domain::Reading;

#[derive(Debug, Default)]
pub struct AirQualityWatch {
    /// What was last told: the category and the newest hour it was computed from.
    told: Option<(Category, DateTime<Utc>)>,
}

impl Analysis for AirQualityWatch {
    fn on_reading(&mut self, reading: &Reading, state: &LocationState, out: &mut Vec<LocationEvent>) {
        if !Pollutant::ALL.iter().any(|p| reading.values.get(p.quantity()).is_some()) {
            return;
        }
        let now = Utc::now();
        // Every reading of the last day the ring holds, those a fast clock put a little
        // ahead of ours included.
        let recent = state.history(now - chrono::Duration::hours(24), DateTime::<Utc>::MAX_UTC);
        let Ok(seen) = category_at(&recent, now) else {
            return;
        };
        if self.told == Some(seen) {
            return;
        }
        let Ok(air_quality) = from_readings(&recent, now) else {
            return;
        };
        self.told = Some(seen);
        out.push(LocationEvent::AirQuality(Arc::new(AirQualityUpdate {
            location_id: reading.location_id.clone(),
            air_quality,
            message: Default::default(),
        })));
    }
}
