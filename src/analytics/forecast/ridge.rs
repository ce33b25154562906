//! Ridge linear regression, one per horizon, by its normal equations (optionally on
//! absolute error, see [`Ridge::fit_absolute`]).
//!
//! Written out rather than taken from smartcore: a fit here is one Gram matrix of 43
//! features and one Cholesky solve (about 3 ms for a year of hours), where smartcore's
//! generic ridge takes about 20 ms per horizon, and 24 horizons are fitted per training.

use crate::analytics::linalg::cholesky_solve;

/// Rows summed into the Gram matrix at a time.
const BLOCK: usize = 4;

/// Weights and intercept of one horizon's model, over scaled features (as many as the
/// rows it was fitted on).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ridge {
    weights: Vec<f64>,
    intercept: f64,
}

impl Ridge {
    /// Least squares with an L2 penalty `alpha` on the weights (not on the intercept).
    /// `None` when there is nothing to fit.
    pub fn fit<const N: usize>(rows: &[[f32; N]], targets: &[f32], alpha: f64) -> Option<Self> {
        Self::fit_weighted(rows, targets, None, alpha)
    }

    /// Least absolute deviations with the same penalty, by iteratively reweighted least
    /// squares: the forecasts are scored by mean absolute error, whose best constant is
    /// the median, and hourly changes are often exactly zero. Residuals under `floor`
    /// weigh as much as `floor`.
    pub fn fit_absolute<const N: usize>(
        rows: &[[f32; N]],
        targets: &[f32],
        alpha: f64,
        floor: f64,
        iterations: usize,
    ) -> Option<Self> {
        let mut model = Self::fit(rows, targets, alpha)?;
        let mut weights = vec![1.0; rows.len()];
        for _ in 0..iterations {
            for ((w, row), &y) in weights.iter_mut().zip(rows).zip(targets) {
                *w = 1.0 / f64::from(y - model.predict(row)).abs().max(floor);
            }
            model = Self::fit_weighted(rows, targets, Some(&weights), alpha)?;
        }
        Some(model)
    }

    fn fit_weighted<const N: usize>(
        rows: &[[f32; N]],
        targets: &[f32],
        weights: Option<&[f64]>,
        alpha: f64,
    ) -> Option<Self> {
        let n = rows.len().min(targets.len());
        if n == 0 {
            return None;
        }
        let weight = |i: usize| weights.and_then(|w| w.get(i)).copied().unwrap_or(1.0);
        let total: f64 = (0..n).map(weight).sum();
        let mean_y = targets[..n].iter().enumerate().map(|(i, &y)| weight(i) * f64::from(y)).sum::<f64>() / total;
        let mut mean_x = [0.0f64; N];
        for (i, row) in rows[..n].iter().enumerate() {
            for (m, &x) in mean_x.iter_mut().zip(row) {
                *m += weight(i) * f64::from(x);
            }
        }
        // The penalty is per unit of weight, as with equal weights.
        let alpha = alpha * total / n as f64;
        mean_x.iter_mut().for_each(|m| *m /= total);
        let mut gram = vec![0.0f64; N * N];
        let mut xy = [0.0f64; N];
        let sums = Sums { rows: &rows[..n], targets: &targets[..n], weights, mean_x: &mean_x, mean_y };
        sums.add_to(&mut gram, &mut xy);
        for i in 0..N {
            gram[i * N + i] += alpha;
            for j in 0..i {
                gram[i * N + j] = gram[j * N + i];
            }
        }
        let weights = cholesky_solve(&mut gram, &xy)?;
        let intercept = mean_y - weights.iter().zip(&mean_x).map(|(w, m)| w * m).sum::<f64>();
        Some(Self { weights, intercept })
    }

    pub fn predict(&self, row: &[f32]) -> f32 {
        (self.intercept + self.weights.iter().zip(row).map(|(w, &x)| w * f64::from(x)).sum::<f64>()) as f32
    }
}

/// What the Gram matrix of the centred, weighted rows and their X'y are summed from.
struct Sums<'a, const N: usize> {
    rows: &'a [[f32; N]],
    targets: &'a [f32],
    weights: Option<&'a [f64]>,
    mean_x: &'a [f64; N],
    mean_y: f64,
}

impl<const N: usize> Sums<'_, N> {
    /// Adds the sums to `gram` (its upper triangle) and `xy`: with the 256-bit vector
    /// instructions where the processor has them (four f64 side by side instead of two),
    /// else with the baseline's. Each entry is summed in the same order either way (the
    /// lanes run across entries), so the two give the same bits.
    fn add_to(&self, gram: &mut [f64], xy: &mut [f64; N]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, checked on the line above.
            return unsafe { self.add_to_avx2(gram, xy) };
        }
        self.add(gram, xy)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn add_to_avx2(&self, gram: &mut [f64], xy: &mut [f64; N]) {
        self.add(gram, xy)
    }

    /// Four rows at a time: each entry is read and written once per four rows, not once
    /// per row (a short last block is padded with rows of weight 0).
    #[inline(always)]
    fn add(&self, gram: &mut [f64], xy: &mut [f64; N]) {
        let (rows, targets, mean_x, mean_y) = (self.rows, self.targets, self.mean_x, self.mean_y);
        let n = rows.len().min(targets.len());
        let weight = |i: usize| self.weights.and_then(|w| w.get(i)).copied().unwrap_or(1.0);
        let mut centred = [[0.0f64; N]; BLOCK];
        let (mut w, mut wy) = ([0.0f64; BLOCK], [0.0f64; BLOCK]);
        for start in (0..n).step_by(BLOCK) {
            for b in 0..BLOCK {
                let i = start + b;
                if i < n {
                    for (c, (&x, m)) in centred[b].iter_mut().zip(rows[i].iter().zip(mean_x)) {
                        *c = f64::from(x) - m;
                    }
                    w[b] = weight(i);
                    wy[b] = w[b] * (f64::from(targets[i]) - mean_y);
                } else {
                    (centred[b], w[b], wy[b]) = ([0.0; N], 0.0, 0.0);
                }
            }
            let [c0, c1, c2, c3] = &centred;
            for i in 0..N {
                xy[i] += c0[i] * wy[0] + c1[i] * wy[1] + c2[i] * wy[2] + c3[i] * wy[3];
                let (a0, a1, a2, a3) = (w[0] * c0[i], w[1] * c1[i], w[2] * c2[i], w[3] * c3[i]);
                let line = &mut gram[i * N..(i + 1) * N];
                for j in i..N {
                    line[j] += a0 * c0[j] + a1 * c1[j] + a2 * c2[j] + a3 * c3[j];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::forecast::features::FEATURES;

    #[test]
    fn recovers_a_linear_relation() {
        let mut rng = fastrand::Rng::with_seed(7);
        let rows: Vec<[f32; FEATURES]> = (0..500).map(|_| std::array::from_fn(|_| rng.f32() * 2.0 - 1.0)).collect();
        let targets: Vec<f32> = rows.iter().map(|r| 3.0 * r[0] - 2.0 * r[5] + 0.5).collect();
        let model = Ridge::fit(&rows, &targets, 1e-6).unwrap();
        let mut probe = [0.0; FEATURES];
        probe[0] = 1.0;
        probe[5] = 1.0;
        assert!((model.predict(&probe) - 1.5).abs() < 1e-3, "{}", model.predict(&probe));
    }

    /// The path the processor's vector instructions take gives the same sums as the
    /// baseline's. Both run the same code; what may differ is how the compiler lays it
    /// into lanes, which only an optimized build does (`cargo test --release`), so an
    /// ordinary test run checks only that the two paths stay the same code.
    #[test]
    fn the_sums_are_the_same_bits_with_or_without_wider_vectors() {
        let mut rng = fastrand::Rng::with_seed(3);
        let rows: Vec<[f32; FEATURES]> = (0..1001).map(|_| std::array::from_fn(|_| rng.f32() * 8.0 - 4.0)).collect();
        let targets: Vec<f32> = (0..1001).map(|_| rng.f32()).collect();
        let weights: Vec<f64> = (0..1001).map(|_| rng.f64() + 0.5).collect();
        let mean_x = [0.25; FEATURES];
        let sums = Sums { rows: &rows, targets: &targets, weights: Some(&weights), mean_x: &mean_x, mean_y: 0.5 };
        let (mut gram, mut xy) = (vec![0.0; FEATURES * FEATURES], [0.0; FEATURES]);
        let (mut baseline, mut baseline_xy) = (vec![0.0; FEATURES * FEATURES], [0.0; FEATURES]);
        sums.add_to(&mut gram, &mut xy);
        sums.add(&mut baseline, &mut baseline_xy);
        assert!(gram.iter().zip(&baseline).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(xy.iter().zip(&baseline_xy).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(gram[1] != 0.0 && gram[FEATURES] == 0.0, "the upper triangle only");
    }
}
