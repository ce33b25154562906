//! Gradient-boosted regression trees on absolute error (Friedman's LAD TreeBoost), one
//! model per horizon for the first [`BOOSTED_HORIZONS`] hours.
//!
//! Each tree is grown on a random half of the origins and of the features, to the signs
//! of the residuals (the gradient of absolute error), splitting on histograms of binned
//! features; each leaf then moves by the median residual of its origins: the forecasts
//! are scored by mean absolute error, whose best constant is the median. Trees find what the ridge's
//! straight lines cannot: a sea breeze that sets in only on a warm afternoon with the
//! wind off the land, a clear night that cools only while the air is calm and dry.
//!
//! Hand-written like the ridge and the network, on the histogram trees of [`tree`](super::tree),
//! which keep six horizons of trees within the training budget (BENCHMARKS.md). `gbdt`
//! 0.1.3 has the absolute loss too, on its own row structures.

use serde::{Deserialize, Serialize};

use super::features::FEATURES;
use super::tree::{Binned, Complete, Growing, Leaf, Node, Shape, Tree, median};

/// Hours ahead the boosted trees forecast: the nowcasting range, where the hour's
/// persistence is hardest to beat and trees gain most over the ridge.
pub const BOOSTED_HORIZONS: u8 = 6;

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct Boosting {
    pub trees: usize,
    /// Splits from the root to a leaf.
    pub depth: usize,
    pub learning_rate: f32,
    /// The fewest origins a leaf may hold.
    pub min_leaf: usize,
    pub seed: u64,
}

impl Default for Boosting {
    fn default() -> Self {
        Self { trees: 100, depth: 5, learning_rate: 0.1, min_leaf: 40, seed: 17 }
    }
}

/// One horizon's trees over scaled features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boosted {
    base: f32,
    learning_rate: f32,
    /// Every tree's nodes in depth-first order (a split's left child follows it).
    trees: Vec<Vec<Node>>,
}

/// The sign of a residual, the gradient of absolute error: 0 where it is 0 (which
/// `f32::signum` makes 1).
fn sign(residual: f32) -> f32 {
    if residual > 0.0 {
        1.0
    } else if residual < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Boosted {
    /// Fits the trees to `targets`; `None` when there is nothing to fit.
    pub fn fit(rows: &[[f32; FEATURES]], targets: &[f32], settings: Boosting) -> Option<Self> {
        let n = rows.len().min(targets.len());
        if n == 0 {
            return None;
        }
        let binned = Binned::of(&rows[..n], FEATURES);
        let shape = Shape { depth: settings.depth, min_leaf: settings.min_leaf, per_split: 0, leaf: Leaf::Median };
        let base = median(&mut targets[..n].to_vec());
        let mut predicted = vec![base; n];
        let mut residuals = vec![0.0f32; n];
        let mut rng = fastrand::Rng::with_seed(settings.seed);
        let mut sample: Vec<u32> = Vec::with_capacity(n);
        let mut features: Vec<usize> = Vec::with_capacity(FEATURES);
        let mut trees = Vec::with_capacity(settings.trees);
        for _ in 0..settings.trees {
            for ((r, y), p) in residuals.iter_mut().zip(targets).zip(&predicted) {
                *r = y - p;
            }
            sample.clear();
            sample.extend((0..n as u32).filter(|_| rng.bool()));
            // Half the features, drawn afresh for each tree: half the cost, and trees
            // that do not all lean on the last hour's change.
            features.clear();
            features.extend((0..FEATURES).filter(|_| rng.bool()));
            let growing = Growing { binned: &binned, values: &residuals, gradient: sign, features: &features, shape };
            let (nodes, split_bins) = growing.tree(&mut sample, &mut rng);
            let tree = Complete::of(&nodes, &split_bins, settings.depth);
            for (p, bins) in predicted.iter_mut().zip(binned.bins()) {
                *p += settings.learning_rate * tree.leaf(bins);
            }
            trees.push(nodes);
        }
        Some(Self { base, learning_rate: settings.learning_rate, trees })
    }

    /// The change forecast for one row of scaled features.
    pub fn predict(&self, row: &[f32; FEATURES]) -> f32 {
        self.base + self.learning_rate * self.trees.iter().map(|t| Tree(t).leaf(row)).sum::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change that depends on two features together (a product no straight line
    /// finds), with a fifth of the targets 5 too high: inside the quadrant the trees
    /// answer the median to within a tenth; outside it they stay under 0.5 (a mean would
    /// be 1 from the outliers alone; trees that see only one of the two features, as half
    /// of them do, keep some of the quadrant's lift).
    #[test]
    fn learns_an_interaction_and_answers_the_median() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..4000 {
            let mut row = [0.0f32; FEATURES];
            row.iter_mut().for_each(|v| *v = rng.f32() * 2.0 - 1.0);
            let truth = if row[0] > 0.0 && row[1] > 0.0 { 2.0 } else { 0.0 };
            // Mostly exact, sometimes far off: the median ignores the outliers.
            let noise = if rng.f32() < 0.2 { 5.0 } else { 0.0 };
            rows.push(row);
            targets.push(truth + noise);
        }
        let model = Boosted::fit(&rows, &targets, Boosting::default()).unwrap();
        let mut probe = [0.0f32; FEATURES];
        probe[0] = 0.5;
        probe[1] = 0.5;
        assert!((model.predict(&probe) - 2.0).abs() < 0.1, "{}", model.predict(&probe));
        probe[1] = -0.5;
        assert!(model.predict(&probe).abs() < 0.5, "{}", model.predict(&probe));
        probe[0] = -0.5;
        assert!(model.predict(&probe).abs() < 0.5, "{}", model.predict(&probe));
    }

    /// Kept compactly, and read back to the same forecasts.
    #[test]
    fn a_model_is_kept_as_arrays_and_read_back() {
        let rows: Vec<[f32; FEATURES]> = (0..500).map(|i| [(i % 50) as f32; FEATURES]).collect();
        let targets: Vec<f32> = rows.iter().map(|r| if r[0] > 20.0 { 1.0 } else { -1.0 }).collect();
        let settings = Boosting { trees: 2, depth: 1, ..Boosting::default() };
        let model = Boosted::fit(&rows, &targets, settings).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        assert!(json.contains(r#""trees":[[[0,20.0,2],-2.0,0.0],"#), "{json}");
        let back: Boosted = serde_json::from_str(&json).unwrap();
        for row in &rows {
            assert_eq!(back.predict(row), model.predict(row));
        }
    }

    #[test]
    fn nothing_to_fit_is_none() {
        assert!(Boosted::fit(&[], &[], Boosting::default()).is_none());
    }
}
