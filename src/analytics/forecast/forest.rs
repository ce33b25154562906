//! A random forest of regression trees (Breiman): each tree grown deep on a bootstrap
//! sample of the rows, trying a random few features at each split, and the forest's
//! answer the mean of its trees'.
//!
//! The trees are [`tree`](super::tree)'s histogram trees, on squared error with mean
//! leaves. smartcore's `RandomForestRegressor` (used here before) grows the same forest
//! with exact splits, sorting every node's rows on each feature it tries; with these the
//! forest has twice the trees and training still costs less (BENCHMARKS.md: the budget
//! is 2 s for all four models).

use serde::{Deserialize, Serialize};

use super::features::FEATURES;
use super::tree::{Binned, Growing, Leaf, Node, Shape, Tree};

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct Forestry {
    pub trees: usize,
    /// Splits from the root to a leaf.
    pub depth: usize,
    /// Features tried at each split.
    pub per_split: usize,
    /// The fewest rows a leaf may hold.
    pub min_leaf: usize,
    /// The most rows a tree's bootstrap sample draws (all of them, up to this many).
    pub max_samples: usize,
    pub seed: u64,
}

impl Default for Forestry {
    fn default() -> Self {
        Self { trees: 24, depth: 12, per_split: 10, min_leaf: 5, max_samples: 12_288, seed: 11 }
    }
}

/// The trees, over scaled features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forest {
    /// Every tree's nodes in depth-first order (a split's left child follows it).
    grove: Vec<Vec<Node>>,
}

impl Forest {
    /// Fits the trees to `targets` on the first `features` features of `rows`; `None`
    /// when there is nothing to fit.
    pub fn fit(rows: &[[f32; FEATURES]], targets: &[f32], features: usize, settings: Forestry) -> Option<Self> {
        let n = rows.len().min(targets.len());
        if n == 0 || settings.trees == 0 {
            return None;
        }
        let features: Vec<usize> = (0..features.min(FEATURES)).collect();
        let binned = Binned::of(&rows[..n], features.len());
        let shape = Shape {
            depth: settings.depth,
            min_leaf: settings.min_leaf,
            per_split: settings.per_split,
            leaf: Leaf::Mean,
        };
        let growing = Growing { binned: &binned, values: &targets[..n], gradient: |y| y, features: &features, shape };
        let mut rng = fastrand::Rng::with_seed(settings.seed);
        let mut sample: Vec<u32> = Vec::with_capacity(n);
        let grove = (0..settings.trees)
            .map(|_| {
                sample.clear();
                sample.extend((0..n.min(settings.max_samples)).map(|_| rng.u32(..n as u32)));
                growing.tree(&mut sample, &mut rng).0
            })
            .collect();
        Some(Self { grove })
    }

    /// The forecast for one row of scaled features.
    pub fn predict(&self, row: &[f32; FEATURES]) -> f32 {
        self.grove.iter().map(|t| Tree(t).leaf(row)).sum::<f32>() / self.grove.len().max(1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step in one feature plus a product of two others, with noise: the forest's mean
    /// is within 0.15 of the truth at probes well inside each region, and a feature past
    /// the first `features` is never split on (moving it moves nothing).
    #[test]
    fn learns_a_step_and_an_interaction_and_ignores_features_it_is_not_given() {
        let mut rng = fastrand::Rng::with_seed(3);
        let truth = |row: &[f32; FEATURES]| {
            (if row[0] > 0.0 { 1.0 } else { -1.0 }) + if row[1] > 0.0 && row[2] > 0.0 { 2.0 } else { 0.0 }
        };
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..6000 {
            let mut row = [0.0f32; FEATURES];
            row.iter_mut().for_each(|v| *v = rng.f32() * 2.0 - 1.0);
            targets.push(truth(&row) + (rng.f32() - 0.5) * 0.4);
            rows.push(row);
        }
        let forest = Forest::fit(&rows, &targets, 10, Forestry { per_split: 3, ..Forestry::default() }).unwrap();
        for (a, b, c) in [(0.5, 0.5, 0.5), (-0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (-0.5, 0.5, -0.5)] {
            let mut probe = [0.0f32; FEATURES];
            (probe[0], probe[1], probe[2]) = (a, b, c);
            let answer = forest.predict(&probe);
            assert!((answer - truth(&probe)).abs() < 0.15, "{probe:?}: {answer}");
            probe[10] = 0.9;
            assert_eq!(forest.predict(&probe), answer);
        }
        let json = serde_json::to_string(&forest).unwrap();
        let back: Forest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict(&rows[0]), forest.predict(&rows[0]));
    }

    #[test]
    fn nothing_to_fit_is_none() {
        assert!(Forest::fit(&[], &[], 10, Forestry::default()).is_none());
    }
}
