//! A small multilayer perceptron: the scaled features, one hidden layer of tanh units,
//! one linear output (the change to the target hour, in units of that horizon's spread).
//! Trained by Adam on the Huber loss, every horizon in one network (the horizon is a
//! feature), on f32.
//!
//! Hand-written on plain slices, about a hundred lines: `candle-nn` would do it with the
//! heaviest compile of any dependency, and a network this size gains nothing from it.

use super::features::FEATURES;

pub const HIDDEN: usize = 24;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mlp {
    /// HIDDEN rows of FEATURES weights, then HIDDEN biases.
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: f32,
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct Training {
    pub epochs: usize,
    /// The most samples an epoch draws.
    pub max_per_epoch: usize,
    pub batch: usize,
    pub learning_rate: f32,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Self { epochs: 16, max_per_epoch: 4096, batch: 32, learning_rate: 0.003, seed: 13 }
    }
}

/// Adam's running moments for one parameter vector.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n] }
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32], rate: f32, t: i32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        let (c1, c2) = (1.0 - B1.powi(t), 1.0 - B2.powi(t));
        for i in 0..params.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * grads[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * grads[i] * grads[i];
            params[i] -= rate * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

impl Mlp {
    /// Trains on `samples(i)` for i in 0..n, drawing `per_epoch` of them (at most
    /// `training.max_per_epoch`) at random each epoch; `None` when there are none.
    pub fn fit(
        n: usize,
        per_epoch: usize,
        samples: impl Fn(usize) -> ([f32; FEATURES], f32),
        training: Training,
    ) -> Option<Self> {
        if n == 0 {
            return None;
        }
        let mut rng = fastrand::Rng::with_seed(training.seed);
        let limit = (6.0 / (FEATURES + HIDDEN) as f32).sqrt();
        let mut net = Self {
            w1: (0..HIDDEN * FEATURES).map(|_| (rng.f32() * 2.0 - 1.0) * limit).collect(),
            b1: vec![0.0; HIDDEN],
            w2: (0..HIDDEN).map(|_| (rng.f32() * 2.0 - 1.0) * (6.0 / (HIDDEN + 1) as f32).sqrt()).collect(),
            b2: 0.0,
        };
        let (mut m1, mut mb1, mut m2, mut mb2) =
            (Moments::new(HIDDEN * FEATURES), Moments::new(HIDDEN), Moments::new(HIDDEN), Moments::new(1));
        let mut g1 = vec![0.0; HIDDEN * FEATURES];
        let mut hidden = [0.0f32; HIDDEN];
        let mut t = 0;
        let steps = per_epoch.min(training.max_per_epoch).div_ceil(training.batch);
        for epoch in 0..training.epochs {
            // Halve the rate over the last third.
            let rate =
                if epoch * 3 >= training.epochs * 2 { training.learning_rate / 2.0 } else { training.learning_rate };
            for _ in 0..steps {
                g1.iter_mut().for_each(|g| *g = 0.0);
                let (mut gb1, mut g2, mut gb2) = ([0.0; HIDDEN], [0.0; HIDDEN], [0.0f32]);
                for _ in 0..training.batch {
                    let (x, y) = samples(rng.usize(..n));
                    let out = net.forward(&x, &mut hidden);
                    // Huber loss (quadratic within one spread, linear beyond): a few large
                    // changes (fronts) do not pull every forecast toward them.
                    let d = (out - y).clamp(-1.0, 1.0) / training.batch as f32;
                    gb2[0] += d;
                    for j in 0..HIDDEN {
                        g2[j] += d * hidden[j];
                        let dh = d * net.w2[j] * (1.0 - hidden[j] * hidden[j]);
                        gb1[j] += dh;
                        let row = &mut g1[j * FEATURES..(j + 1) * FEATURES];
                        for (g, &xi) in row.iter_mut().zip(&x) {
                            *g += dh * xi;
                        }
                    }
                }
                t += 1;
                m1.step(&mut net.w1, &g1, rate, t);
                mb1.step(&mut net.b1, &gb1, rate, t);
                m2.step(&mut net.w2, &g2, rate, t);
                mb2.step(std::slice::from_mut(&mut net.b2), &gb2, rate, t);
            }
        }
        Some(net)
    }

    fn forward(&self, x: &[f32; FEATURES], hidden: &mut [f32; HIDDEN]) -> f32 {
        for ((h, row), b) in hidden.iter_mut().zip(self.w1.chunks_exact(FEATURES)).zip(&self.b1) {
            *h = b + dot(row, x);
        }
        // Apart from the sums, so that the activations are computed side by side.
        hidden.iter_mut().for_each(|h| *h = tanh(*h));
        self.b2 + dot(&self.w2, hidden)
    }

    pub fn predict(&self, x: &[f32; FEATURES]) -> f32 {
        self.forward(x, &mut [0.0; HIDDEN])
    }
}

/// The dot product of `a` and `b` (as far as both go), summed in eight lanes: one running
/// sum must add in order, one value at a time; eight can be added side by side.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ac, ar) = a.as_chunks::<8>();
    let (bc, br) = b.as_chunks::<8>();
    let mut lanes = [0.0f32; 8];
    for (x, y) in ac.iter().zip(bc) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

/// The hyperbolic tangent as a ratio of two polynomials on [-7.9, 7.9] (where it reaches
/// ±1 in f32), the approximation Eigen uses (`generic_fast_tanh_float`): within a few
/// units in the last place of the library's `tanhf`, which computes an `expm1f` per call
/// and was a seventh of a place's training time. Inlined, it is computed in vector lanes.
#[inline]
fn tanh(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.760_768_4e-16,
        2.000_188e-13,
        -8.604_672e-11,
        5.122_297_3e-8,
        1.485_722_35e-5,
        6.372_619_3e-4,
        4.893_524_6e-3,
    ];
    const BETA: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_7e-3, 4.893_525e-3];
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = ALPHA.iter().fold(0.0, |p, &a| p * x2 + a);
    let q = BETA.iter().fold(0.0, |q, &b| q * x2 + b);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the library's `tanhf` every 0.001 from -10 to 10 (and NaN stays NaN).
    #[test]
    fn tanh_is_the_librarys_to_a_few_units_in_the_last_place() {
        let mut worst = 0.0f32;
        for k in -10_000..=10_000 {
            let x = k as f32 / 1000.0;
            worst = worst.max((tanh(x) - x.tanh()).abs());
        }
        assert!(worst < 1e-6, "{worst}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(20.0), 1.0);
        assert_eq!(tanh(-20.0), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn dot_sums_every_product() {
        let a: Vec<f32> = (0..43).map(|i| i as f32).collect();
        let b = [2.0f32; 43];
        assert_eq!(dot(&a, &b), 2.0 * (42.0 * 43.0 / 2.0));
        assert_eq!(dot(&a[..3], &b), 6.0);
    }

    #[test]
    fn learns_a_smooth_nonlinear_function() {
        let mut rng = fastrand::Rng::with_seed(3);
        let data: Vec<([f32; FEATURES], f32)> = (0..2000)
            .map(|_| {
                let x: [f32; FEATURES] = std::array::from_fn(|_| rng.f32() * 2.0 - 1.0);
                (x, (2.0 * x[0]).sin() + x[1] * x[2])
            })
            .collect();
        let training = Training { epochs: 40, ..Training::default() };
        let net = Mlp::fit(data.len(), data.len(), |i| data[i], training).unwrap();
        let mse = data.iter().map(|(x, y)| (net.predict(x) - y).powi(2)).sum::<f32>() / data.len() as f32;
        let variance = data.iter().map(|(_, y)| y * y).sum::<f32>() / data.len() as f32;
        assert!(mse < variance * 0.2, "mse {mse} of variance {variance}");
    }
}
