//! Exact t-SNE (van der Maaten & Hinton 2008) with scikit-learn's defaults — perplexity 30,
//! early exaggeration 12 for 250 iterations, learning rate `max(N / 12 / 4, 50)`, momentum
//! 0.5 then 0.8, delta-bar-delta gains — from a seeded random start, so the same points and
//! seed give the same map on every platform. O(N²) per iteration: meant for the ≤ a few
//! thousand points a plot shows.

#[derive(Debug, Clone, PartialEq)]
pub struct TsneConfig {
    pub perplexity: f64,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 1000,
            seed: 42,
        }
    }
}

const EXAGGERATION: f64 = 12.0;
const EXAGGERATION_ITERATIONS: usize = 250;
const MACHINE_EPSILON: f64 = f64::EPSILON;

/// Symmetric affinities `P` (row-major `n × n`) of `n` points of dimension `d`: conditional
/// Gaussians whose bandwidth matches `perplexity`, symmetrised and normalised to sum 1.
pub fn joint_probabilities(points: &[f32], n: usize, d: usize, perplexity: f64) -> Vec<f64> {
    let mut dist = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let s: f64 = (0..d)
                .map(|k| (points[i * d + k] as f64 - points[j * d + k] as f64).powi(2))
                .sum();
            dist[i * n + j] = s;
            dist[j * n + i] = s;
        }
    }
    let target = perplexity.min((n.saturating_sub(1)) as f64).max(1.0).ln();
    let mut cond = vec![0.0f64; n * n];
    for i in 0..n {
        let row = &dist[i * n..(i + 1) * n];
        let (mut beta, mut lo, mut hi) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
        let mut p = vec![0.0f64; n];
        for _ in 0..100 {
            let mut sum = 0.0;
            for j in 0..n {
                p[j] = if j == i { 0.0 } else { (-row[j] * beta).exp() };
                sum += p[j];
            }
            if sum == 0.0 {
                sum = 1e-8;
            }
            let mut weighted = 0.0;
            for j in 0..n {
                p[j] /= sum;
                weighted += row[j] * p[j];
            }
            let entropy = sum.ln() + beta * weighted;
            let diff = entropy - target;
            if diff.abs() <= 1e-5 {
                break;
            }
            if diff > 0.0 {
                lo = beta;
                beta = if hi.is_infinite() {
                    beta * 2.0
                } else {
                    (beta + hi) / 2.0
                };
            } else {
                hi = beta;
                beta = if lo.is_infinite() {
                    beta / 2.0
                } else {
                    (beta + lo) / 2.0
                };
            }
        }
        cond[i * n..(i + 1) * n].copy_from_slice(&p);
    }
    let mut joint = vec![0.0f64; n * n];
    let mut total = 0.0;
    for i in 0..n {
        for j in 0..n {
            let v = cond[i * n + j] + cond[j * n + i];
            joint[i * n + j] = v;
            total += v;
        }
    }
    let total = total.max(MACHINE_EPSILON);
    for (k, v) in joint.iter_mut().enumerate() {
        *v = if k / n == k % n {
            0.0
        } else {
            (*v / total).max(MACHINE_EPSILON)
        };
    }
    joint
}

/// A 2-D map of `n` points of dimension `d` (row-major), as `n` (x, y) pairs.
pub fn tsne(points: &[f32], n: usize, d: usize, config: &TsneConfig) -> Vec<[f64; 2]> {
    if n < 2 {
        return vec![[0.0, 0.0]; n];
    }
    let p = joint_probabilities(points, n, d, config.perplexity);
    let mut rng = SplitMix(config.seed);
    let mut y: Vec<f64> = (0..2 * n).map(|_| 1e-4 * rng.normal()).collect();
    let mut update = vec![0.0f64; 2 * n];
    let mut gains = vec![1.0f64; 2 * n];
    let learning_rate = (n as f64 / EXAGGERATION / 4.0).max(50.0);
    let mut grad = vec![0.0f64; 2 * n];
    let mut q = vec![0.0f64; n * n];
    for it in 0..config.iterations {
        let (exaggeration, momentum) = if it < EXAGGERATION_ITERATIONS {
            (EXAGGERATION, 0.5)
        } else {
            (1.0, 0.8)
        };
        // Student-t kernel and its normaliser.
        let mut sum_q = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let dx = y[2 * i] - y[2 * j];
                let dy = y[2 * i + 1] - y[2 * j + 1];
                let k = 1.0 / (1.0 + dx * dx + dy * dy);
                q[i * n + j] = k;
                q[j * n + i] = k;
                sum_q += 2.0 * k;
            }
        }
        let sum_q = sum_q.max(MACHINE_EPSILON);
        grad.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..n {
            let (mut gx, mut gy) = (0.0, 0.0);
            for j in 0..n {
                if i == j {
                    continue;
                }
                let k = q[i * n + j];
                let m = (exaggeration * p[i * n + j] - k / sum_q) * k;
                gx += m * (y[2 * i] - y[2 * j]);
                gy += m * (y[2 * i + 1] - y[2 * j + 1]);
            }
            grad[2 * i] = 4.0 * gx;
            grad[2 * i + 1] = 4.0 * gy;
        }
        for k in 0..2 * n {
            let same_sign = update[k] * grad[k] > 0.0;
            gains[k] = if same_sign {
                gains[k] * 0.8
            } else {
                gains[k] + 0.2
            }
            .max(0.01);
            update[k] = momentum * update[k] - learning_rate * gains[k] * grad[k];
            y[k] += update[k];
        }
    }
    (0..n).map(|i| [y[2 * i], y[2 * i + 1]]).collect()
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Box–Muller.
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}
