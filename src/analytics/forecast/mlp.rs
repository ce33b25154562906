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
    pub batch: usize,
    pub learning_rate: f32,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Self { epochs: 16, batch: 32, learning_rate: 0.003, seed: 13 }
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
    /// Trains on `samples(i)` for i in 0..n, drawing `per_epoch` of them at random each
    /// epoch; `None` when there are none.
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
        let steps = per_epoch.div_ceil(training.batch);
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
        let mut out = self.b2;
        for (j, h) in hidden.iter_mut().enumerate() {
            let row = &self.w1[j * FEATURES..(j + 1) * FEATURES];
            let z = self.b1[j] + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
            *h = z.tanh();
            out += self.w2[j] * *h;
        }
        out
    }

    pub fn predict(&self, x: &[f32; FEATURES]) -> f32 {
        self.forward(x, &mut [0.0; HIDDEN])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
