//! Domain types shared by every layer: parsed once at the edge, trusted afterwards.
//!
//! Nothing here does I/O or knows about actors or HTTP.

pub mod air;
pub mod anomaly;
pub mod current;
pub mod forecast;
pub mod id;
pub mod location;
pub mod quantity;
pub mod reading;
pub mod units;

pub use air::{AirReport, POLLUTANTS, ReportedIndex};
pub use anomaly::{Anomaly, AnomalyKind, Band, Severity};
pub use current::{AirQualitySummary, Current, LocationRef, SourceContribution};
pub use forecast::{
    Forecast, ForecastHour, ForecastRun, LEARNED_QUANTITIES, Learned, LearnedStatus, ModelHour, ModelRun, ModelSkill,
    Spread, TrainedSummary,
};
pub use id::{InvalidLocationId, LOCATION_ID_PATTERN, LocationId};
pub use location::{Location, LocationKind};
pub use quantity::{PackedValues, QUANTITIES, Quantity, Values};
pub use reading::{FieldError, Reading, SourceName};
pub use units::Units;
