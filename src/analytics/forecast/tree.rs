//! Regression trees grown on histograms of binned features, shared by the boosted trees
//! ([`boost`](super::boost)) and the random forest ([`forest`](super::forest)).
//!
//! Each feature's values are cut into [`BINS`] bins by quantiles; a node's histogram holds,
//! per feature and bin, the sum of what the rows contribute (the signs of the residuals
//! for boosting, the targets themselves for the forest) and their count, and the best
//! split is the one that most reduces the squared error of those sums. A child's
//! histogram is counted for the smaller side only; the other side's is the parent's less
//! it. That keeps a tree's cost to a few passes over the rows, where an exact tree
//! (smartcore's) sorts every node's rows on every feature it tries.

use serde::{Deserialize, Serialize};

use super::features::FEATURES;

/// The deepest a tree may grow (its nodes are numbered in 16 bits).
pub const MAX_DEPTH: usize = 12;
/// Bins per feature (a power of two: a bin is masked into range, not bounds-checked).
const BINS: usize = 64;
/// Values per feature its bins' edges are drawn from (spread over the rows).
const EDGE_SAMPLE: usize = 2048;

/// A node: a split (a row whose feature is at most the threshold goes on to the next
/// node, any other to node `right`) or a leaf's value. Kept as `[feature, threshold, right]`
/// or the bare value: a place's trees are tens of thousands of nodes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// Feature, threshold, right.
    Split(u8, f32, u16),
    Leaf(f32),
}

/// The features binned: per feature, the upper edges of its bins, and each row's bins.
pub struct Binned {
    edges: Vec<Vec<f32>>,
    bins: Vec<[u8; FEATURES]>,
}

impl Binned {
    /// Bins the first `features` features of `rows` (the others stay in bin 0).
    pub fn of(rows: &[[f32; FEATURES]], features: usize) -> Self {
        let features = features.min(FEATURES);
        let mut edges = Vec::with_capacity(features);
        let mut column = Vec::with_capacity(rows.len());
        for f in 0..features {
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

    /// Each row's bins.
    pub fn bins(&self) -> &[[u8; FEATURES]] {
        &self.bins
    }

    /// The threshold of a split after `bin`: values at most it go left.
    fn threshold(&self, feature: usize, bin: usize) -> f32 {
        self.edges[feature][bin]
    }
}

/// Per feature (in the order of the features it was counted over) and bin: the sum of
/// the rows' contributions and their count.
type Histogram = Vec<[(f32, u32); BINS]>;

/// What a leaf answers: the median of its rows' values (for absolute error) or their mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leaf {
    Median,
    Mean,
}

/// How one tree grows.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Splits from the root to a leaf.
    pub depth: usize,
    /// The fewest rows a leaf may hold.
    pub min_leaf: usize,
    /// Features tried at each split, drawn afresh at each node from the tree's (0: all of
    /// them).
    pub per_split: usize,
    pub leaf: Leaf,
}

/// What growing a tree reads: the binned rows, their values and what each contributes
/// to a histogram (its `gradient`).
pub struct Growing<'a, G> {
    pub binned: &'a Binned,
    /// Per row: what a leaf answers from (a residual, or a target).
    pub values: &'a [f32],
    pub gradient: G,
    /// The features this tree may split on.
    pub features: &'a [usize],
    pub shape: Shape,
}

/// What growing a tree writes as it goes.
struct Scratch<'r> {
    nodes: Vec<Node>,
    /// Per node: a split's last bin on the left (0 for a leaf).
    split_bins: Vec<u8>,
    /// The features a node tries.
    tried: Vec<usize>,
    /// A node's histogram over the features it tries, when drawn per split.
    histogram: Histogram,
    rng: &'r mut fastrand::Rng,
}

impl<G: Fn(f32) -> f32 + Copy> Growing<'_, G> {
    /// Grows a tree on `rows` (an index may repeat: a bootstrap sample) and returns its
    /// nodes in depth-first order (a split's left child follows it), and per node a
    /// split's last bin on the left (for [`Complete::of`]).
    pub fn tree(&self, rows: &mut [u32], rng: &mut fastrand::Rng) -> (Vec<Node>, Vec<u8>) {
        let shape = Shape { depth: self.shape.depth.min(MAX_DEPTH), ..self.shape };
        let growing = Growing { shape, ..*self };
        let root = (shape.depth > 0 && !growing.per_split()).then(|| growing.histogram(rows, self.features));
        let mut scratch = Scratch {
            nodes: Vec::new(),
            split_bins: Vec::new(),
            tried: Vec::with_capacity(self.features.len()),
            histogram: Vec::with_capacity(self.shape.per_split),
            rng,
        };
        growing.grow(rows, root, 0, &mut scratch);
        (scratch.nodes, scratch.split_bins)
    }

    /// Whether each node tries a few features of the tree's, drawn afresh. Its histogram
    /// is then counted over those alone: the children's cannot be the parent's less the
    /// other side's, as they try other features.
    fn per_split(&self) -> bool {
        self.shape.per_split > 0 && self.shape.per_split < self.features.len()
    }

    /// The histogram of `rows` over `features`.
    fn histogram(&self, rows: &[u32], features: &[usize]) -> Histogram {
        let mut h = vec![[(0.0, 0); BINS]; features.len()];
        self.count(rows, features, &mut h);
        h
    }

    /// Adds `rows` to `h`, one entry per feature of `features`.
    fn count(&self, rows: &[u32], features: &[usize], h: &mut Histogram) {
        for &i in rows {
            let (bins, g) = (&self.binned.bins[i as usize], (self.gradient)(self.values[i as usize]));
            for (hf, &f) in h.iter_mut().zip(features) {
                let cell = &mut hf[usize::from(bins[f]) & (BINS - 1)];
                cell.0 += g;
                cell.1 += 1;
            }
        }
    }

    /// Grows the node holding `rows` at `depth` (with their histogram over the tree's
    /// features, unless features are drawn per split), appending it and its subtree to
    /// the nodes in depth-first order.
    fn grow(&self, rows: &mut [u32], histogram: Option<Histogram>, depth: usize, s: &mut Scratch) {
        let min_leaf = self.shape.min_leaf;
        let split = if depth >= self.shape.depth || rows.len() < 2 * min_leaf {
            None
        } else if let Some(h) = &histogram {
            best_split(self.binned, h, self.features, min_leaf as u32)
        } else {
            // A partial shuffle: the first `per_split` features are a uniform draw.
            s.tried.clear();
            s.tried.extend_from_slice(self.features);
            for k in 0..self.shape.per_split.min(s.tried.len()) {
                let j = s.rng.usize(k..s.tried.len());
                s.tried.swap(k, j);
            }
            s.tried.truncate(self.shape.per_split);
            s.histogram.clear();
            s.histogram.resize(s.tried.len(), [(0.0, 0); BINS]);
            self.count(rows, &s.tried, &mut s.histogram);
            best_split(self.binned, &s.histogram, &s.tried, min_leaf as u32)
        };
        let Some((feature, bin)) = split else {
            s.nodes.push(Node::Leaf(self.leaf(rows)));
            s.split_bins.push(0);
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
        let (hl, hr) = match histogram {
            Some(mut large) if depth + 1 < self.shape.depth => {
                let small = self.histogram(if l.len() <= r.len() { l } else { r }, self.features);
                for (lf, sf) in large.iter_mut().zip(&small) {
                    for (cell, s) in lf.iter_mut().zip(sf) {
                        cell.0 -= s.0;
                        cell.1 -= s.1;
                    }
                }
                if l.len() <= r.len() { (Some(small), Some(large)) } else { (Some(large), Some(small)) }
            }
            _ => (None, None),
        };
        let at = s.nodes.len();
        s.nodes.push(Node::Split(feature as u8, self.binned.threshold(feature, bin), 0));
        // A bin's index fits: there are BINS (64) of them.
        s.split_bins.push(bin as u8);
        self.grow(l, hl, depth + 1, s);
        let right = s.nodes.len() as u16;
        if let Some(Node::Split(_, _, slot)) = s.nodes.get_mut(at) {
            *slot = right;
        }
        self.grow(r, hr, depth + 1, s);
    }

    fn leaf(&self, rows: &[u32]) -> f32 {
        match self.shape.leaf {
            Leaf::Median => {
                let mut values: Vec<f32> = rows.iter().map(|&i| self.values[i as usize]).collect();
                median(&mut values)
            }
            Leaf::Mean if rows.is_empty() => 0.0,
            Leaf::Mean => rows.iter().map(|&i| self.values[i as usize]).sum::<f32>() / rows.len() as f32,
        }
    }
}

/// The best split of a node by its histogram over `features`: (feature, last bin on the
/// left), when one leaves `min_leaf` rows on each side and gains.
fn best_split(binned: &Binned, h: &Histogram, features: &[usize], min_leaf: u32) -> Option<(usize, usize)> {
    let (total, n) = h.first()?.iter().fold((0.0, 0), |(s, n), c| (s + c.0, n + c.1));
    let parent = total * total / n as f32;
    let mut best: Option<(f32, usize, usize)> = None;
    for (&f, hf) in features.iter().zip(h) {
        let (mut sl, mut nl) = (0.0, 0);
        // A split after the last edge would leave nothing on the right.
        for (b, cell) in hf.iter().enumerate().take(binned.edges[f].len()) {
            // A split after an empty bin is the one after the bin before it.
            if cell.1 == 0 {
                continue;
            }
            sl += cell.0;
            nl += cell.1;
            let nr = n - nl;
            // The right side only shrinks from here.
            if nr < min_leaf {
                break;
            }
            if nl < min_leaf {
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

/// The median of `values` (the upper of the middle two), 0 when empty.
pub fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// A tree's nodes, walked.
pub struct Tree<'a>(pub &'a [Node]);

impl Tree<'_> {
    pub fn leaf(&self, row: &[f32; FEATURES]) -> f32 {
        self.walk(|feature, threshold| row.get(feature).is_some_and(|&value| value <= threshold))
    }

    /// Walks from the root: `left(feature, threshold)` says which way a split goes.
    fn walk(&self, left: impl Fn(usize, f32) -> bool) -> f32 {
        let mut at = 0;
        loop {
            match self.0.get(at) {
                Some(Node::Split(feature, threshold, right)) => {
                    let next = if left(usize::from(*feature), *threshold) { at + 1 } else { usize::from(*right) };
                    // Children follow their split: a file that points back would never end.
                    if next <= at {
                        return 0.0;
                    }
                    at = next;
                }
                Some(Node::Leaf(value)) => return *value,
                None => return 0.0,
            }
        }
    }
}

/// A tree laid out to walk the training rows by their bins without a branch to guess:
/// complete to its depth, node `k`'s children at `2k + 1` and `2k + 2`, and a leaf above
/// the last level a split that sends every row left, to a copy of itself. Walking a row is
/// `depth` steps of arithmetic, where [`Tree::leaf`] follows a branch per node whose way
/// depends on the row (and, per boosted tree, every origin is walked).
pub struct Complete {
    depth: usize,
    /// Per split: its feature and its last bin on the left.
    splits: Vec<(u8, u8)>,
    leaves: Vec<f32>,
}

impl Complete {
    /// Lays out `nodes` with their `split_bins` (as [`Growing::tree`] returns them), for a
    /// tree at most `depth` deep.
    pub fn of(nodes: &[Node], split_bins: &[u8], depth: usize) -> Self {
        let depth = depth.min(MAX_DEPTH);
        let mut complete = Self { depth, splits: vec![(0, u8::MAX); (1 << depth) - 1], leaves: vec![0.0; 1 << depth] };
        complete.place(nodes, split_bins, 0, 0, 0);
        complete
    }

    /// Places the subtree at `nodes[at]` as node `k`, `level` splits below the root.
    fn place(&mut self, nodes: &[Node], split_bins: &[u8], at: usize, k: usize, level: usize) {
        if level == self.depth {
            let value = match nodes.get(at) {
                Some(Node::Leaf(value)) => *value,
                _ => 0.0,
            };
            self.leaves[k + 1 - (1 << self.depth)] = value;
            return;
        }
        match nodes.get(at) {
            Some(&Node::Split(feature, _, right)) => {
                self.splits[k] = (feature, split_bins.get(at).copied().unwrap_or(u8::MAX));
                self.place(nodes, split_bins, at + 1, 2 * k + 1, level + 1);
                self.place(nodes, split_bins, usize::from(right), 2 * k + 2, level + 1);
            }
            // A leaf passes every row on left (the split stays at its last bin, u8::MAX).
            _ => self.place(nodes, split_bins, at, 2 * k + 1, level + 1),
        }
    }

    /// The leaf of a training row, by its bins: the same as its values reach, as the bins'
    /// edges rise strictly and a split's threshold is its last bin's upper edge.
    pub fn leaf(&self, bins: &[u8; FEATURES]) -> f32 {
        let mut k = 0;
        for _ in 0..self.depth {
            let (feature, last) = self.splits[k];
            let bin = bins.get(usize::from(feature)).copied().unwrap_or(0);
            k = 2 * k + 1 + usize::from(bin > last);
        }
        self.leaves[k + 1 - (1 << self.depth)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every training row reaches the same leaf by its bins as by its values, and a tree
    /// read from a damaged file (a split pointing back) ends instead of looping.
    #[test]
    fn a_rows_bins_reach_the_leaf_its_values_reach() {
        let mut rng = fastrand::Rng::with_seed(9);
        let rows: Vec<[f32; FEATURES]> =
            (0..3000).map(|_| std::array::from_fn(|f| (rng.f32() * 40.0).round() / (f + 1) as f32)).collect();
        let values: Vec<f32> = rows.iter().map(|r| r[0] - 2.0 * r[3] + if r[7] > 2.0 { 5.0 } else { 0.0 }).collect();
        let binned = Binned::of(&rows, FEATURES);
        let features: Vec<usize> = (0..FEATURES).collect();
        let shape = Shape { depth: 8, min_leaf: 5, per_split: 0, leaf: Leaf::Mean };
        let growing = Growing { binned: &binned, values: &values, gradient: |y| y, features: &features, shape };
        let mut sample: Vec<u32> = (0..rows.len() as u32).collect();
        let (nodes, split_bins) = growing.tree(&mut sample, &mut rng);
        assert!(nodes.len() > 100, "{}", nodes.len());
        let (tree, complete) = (Tree(&nodes), Complete::of(&nodes, &split_bins, 8));
        // Some leaves are above the last level (too few rows to split further).
        let leaves = nodes.iter().filter(|n| matches!(n, Node::Leaf(_))).count();
        assert!(leaves < 1 << 8, "{leaves}");
        for (row, bins) in rows.iter().zip(binned.bins()) {
            assert_eq!(complete.leaf(bins).to_bits(), tree.leaf(row).to_bits());
        }
        let looping = [Node::Split(0, 1.0, 0), Node::Leaf(3.0)];
        assert_eq!(Tree(&looping).leaf(&[2.0; FEATURES]), 0.0);
    }
}
