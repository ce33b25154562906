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
//! Hand-written like the ridge and the network, about two hundred lines: binned
//! histograms (a child's counted for the smaller side only, the other's by subtraction)
//! keep six horizons of trees within the training budget (BENCHMARKS.md). `gbdt` 0.1.3
//! has the absolute loss too, on its own row structures.

use serde::{Deserialize, Serialize};

use super::features::FEATURES;

/// Hours ahead the boosted trees forecast: the nowcasting range, where the hour's
/// persistence is hardest to beat and trees gain most over the ridge.
pub const BOOSTED_HORIZONS: u8 = 6;
/// The deepest a tree may grow (its nodes are numbered in 16 bits).
const MAX_DEPTH: usize = 12;
/// Bins per feature (a power of two: a bin is masked into range, not bounds-checked).
const BINS: usize = 64;
/// Values per feature its bins' edges are drawn from (spread over the rows).
const EDGE_SAMPLE: usize = 2048;

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

/// A node: a split (a row whose feature is at most the threshold goes on to the next
/// node, any other to node `right`) or a leaf's value. Kept as `[feature, threshold, right]`
/// or the bare value: a place's trees are up to 37,800 nodes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
enum Node {
    /// Feature, threshold, right.
    Split(u8, f32, u16),
    Leaf(f32),
}

/// One horizon's trees over scaled features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boosted {
    base: f32,
    learning_rate: f32,
    /// Every tree's nodes in depth-first order (a split's left child follows it).
    trees: Vec<Vec<Node>>,
}

/// The features binned: per feature, the upper edges of its bins, and each row's bins.
struct Binned {
    edges: Vec<Vec<f32>>,
    bins: Vec<[u8; FEATURES]>,
}

impl Binned {
    fn of(rows: &[[f32; FEATURES]]) -> Self {
        let mut edges = Vec::with_capacity(FEATURES);
        let mut column = Vec::with_capacity(rows.len());
        for f in 0..FEATURES {
            column.clear();
            let step = rows.len().div_ceil(EDGE_SAMPLE).max(1);
            column.extend(rows.iter().step_by(step).map(|r| r[f]).filter(|v| v.is_finite()));
            column.sort_by(f32::total_cmp);
            let mut cuts: Vec<f32> = (1..BINS).filter_map(|k| column.get(k * column.len() / BINS).copied()).collect();
            cuts.dedup();
            edges.push(cuts);
        }
        let bins = rows
            .iter()
            .map(|row| {
                let mut b = [0u8; FEATURES];
                for (f, (bin, cuts)) in b.iter_mut().zip(&edges).enumerate() {
                    // The first bin whose upper edge is at or above the value.
                    *bin = cuts.partition_point(|&c| c < row[f]) as u8;
                }
                b
            })
            .collect();
        Self { edges, bins }
    }

    /// The threshold of a split after `bin`: values at most it go left.
    fn threshold(&self, feature: usize, bin: usize) -> f32 {
        self.edges[feature][bin]
    }
}

/// Per feature and bin: the sum of the gradients' signs and the count.
type Histogram = Vec<[(f32, u32); BINS]>;

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

/// The histogram of `rows` over the tree's `features` (the others stay empty).
fn histogram_of(binned: &Binned, residuals: &[f32], rows: &[u32], features: &[usize]) -> Histogram {
    let mut h = vec![[(0.0, 0); BINS]; FEATURES];
    for &i in rows {
        let (bins, s) = (&binned.bins[i as usize], sign(residuals[i as usize]));
        for &f in features {
            let cell = &mut h[f][usize::from(bins[f]) & (BINS - 1)];
            cell.0 += s;
            cell.1 += 1;
        }
    }
    h
}

/// The best split of a node by its histogram: (feature, last bin on the left), when one
/// leaves `min_leaf` rows on each side and gains.
fn best_split(binned: &Binned, h: &Histogram, features: &[usize], min_leaf: u32) -> Option<(usize, usize)> {
    let (total, n) = h[*features.first()?].iter().fold((0.0, 0), |(s, n), c| (s + c.0, n + c.1));
    let parent = total * total / n as f32;
    let mut best: Option<(f32, usize, usize)> = None;
    for (f, hf) in features.iter().map(|&f| (f, &h[f])) {
        let (mut sl, mut nl) = (0.0, 0);
        // A split after the last edge would leave nothing on the right.
        for (b, cell) in hf.iter().enumerate().take(binned.edges[f].len()) {
            sl += cell.0;
            nl += cell.1;
            let nr = n - nl;
            if nl < min_leaf || nr < min_leaf {
                continue;
            }
            let sr = total - sl;
            let gain = sl * sl / nl as f32 + sr * sr / nr as f32 - parent;
            if gain > best.map_or(1e-6, |b| b.0) {
                best = Some((gain, f, b));
            }
        }
    }
    best.map(|(_, f, b)| (f, b))
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

impl Boosted {
    /// Fits the trees to `targets`; `None` when there is nothing to fit.
    pub fn fit(rows: &[[f32; FEATURES]], targets: &[f32], settings: Boosting) -> Option<Self> {
        let n = rows.len().min(targets.len());
        if n == 0 {
            return None;
        }
        let settings = Boosting { depth: settings.depth.min(MAX_DEPTH), ..settings };
        let binned = Binned::of(&rows[..n]);
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
            let mut nodes = Vec::new();
            let growing = Growing { binned: &binned, residuals: &residuals, features: &features, settings };
            let root = (settings.depth > 0).then(|| histogram_of(&binned, &residuals, &sample, &features));
            growing.grow(&mut sample, root, 0, &mut nodes);
            let tree = Tree(&nodes);
            for (p, bins) in predicted.iter_mut().zip(&binned.bins) {
                *p += settings.learning_rate * tree.leaf_by_bins(bins, &binned);
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

/// What growing a tree reads: the binned rows and the residuals.
struct Growing<'a> {
    binned: &'a Binned,
    residuals: &'a [f32],
    /// The features this tree may split on.
    features: &'a [usize],
    settings: Boosting,
}

impl Growing<'_> {
    /// Grows the node holding `rows` at `depth` (with their histogram when it may split),
    /// appending it and its subtree to `nodes` in depth-first order.
    fn grow(&self, rows: &mut [u32], histogram: Option<Histogram>, depth: usize, nodes: &mut Vec<Node>) {
        let min_leaf = self.settings.min_leaf;
        let split = histogram
            .as_ref()
            .filter(|_| rows.len() >= 2 * min_leaf)
            .and_then(|h| best_split(self.binned, h, self.features, min_leaf as u32).map(|s| (s, h)));
        let Some(((feature, bin), parent)) = split else {
            let mut values: Vec<f32> = rows.iter().map(|&i| self.residuals[i as usize]).collect();
            nodes.push(Node::Leaf(median(&mut values)));
            return;
        };
        // Partition: the rows going left first.
        let mut left = 0;
        for k in 0..rows.len() {
            if usize::from(self.binned.bins[rows[k] as usize][feature]) <= bin {
                rows.swap(left, k);
                left += 1;
            }
        }
        let (l, r) = rows.split_at_mut(left);
        // The children's histograms, when they may split: the smaller side's counted, the
        // other's the parent's less it.
        let (hl, hr) = if depth + 1 < self.settings.depth {
            let small =
                histogram_of(self.binned, self.residuals, if l.len() <= r.len() { l } else { r }, self.features);
            let mut large = parent.clone();
            for (lf, sf) in large.iter_mut().zip(&small) {
                for (cell, s) in lf.iter_mut().zip(sf) {
                    cell.0 -= s.0;
                    cell.1 -= s.1;
                }
            }
            if l.len() <= r.len() { (Some(small), Some(large)) } else { (Some(large), Some(small)) }
        } else {
            (None, None)
        };
        let at = nodes.len();
        nodes.push(Node::Split(feature as u8, self.binned.threshold(feature, bin), 0));
        self.grow(l, hl, depth + 1, nodes);
        let right = nodes.len() as u16;
        if let Node::Split(_, _, slot) = &mut nodes[at] {
            *slot = right;
        }
        self.grow(r, hr, depth + 1, nodes);
    }
}

/// A tree's nodes, walked.
struct Tree<'a>(&'a [Node]);

impl Tree<'_> {
    fn leaf(&self, row: &[f32; FEATURES]) -> f32 {
        self.walk(|feature, threshold| row[feature] <= threshold)
    }

    /// The leaf of a training row, by its bins (the same side as its value).
    fn leaf_by_bins(&self, bins: &[u8; FEATURES], binned: &Binned) -> f32 {
        self.walk(|feature, threshold| {
            let bin = usize::from(bins[feature]);
            binned.edges[feature].get(bin).is_some_and(|&edge| edge <= threshold)
        })
    }

    fn walk(&self, left: impl Fn(usize, f32) -> bool) -> f32 {
        let mut at = 0;
        loop {
            match self.0.get(at) {
                Some(Node::Split(feature, threshold, right)) => {
                    at = if left(usize::from(*feature), *threshold) { at + 1 } else { usize::from(*right) };
                }
                Some(Node::Leaf(value)) => return *value,
                None => return 0.0,
            }
        }
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
