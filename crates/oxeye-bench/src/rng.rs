//! A small deterministic pseudo-random generator (SplitMix64) and the distributions the fleet needs.
//!
//! Determinism matters more than quality here: the same seed must give the same workload byte for byte, so
//! every server in a run (and every run of the benchmark) sees the same samples.

/// SplitMix64 state. Not cryptographic.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform integer in [0, bound); `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound
    }

    /// A standard normal variate (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let first = self.unit().max(f64::MIN_POSITIVE);
        let second = self.unit();
        (-2.0 * first.ln()).sqrt() * (std::f64::consts::TAU * second).cos()
    }

    /// A Poisson variate with mean `lambda` (Knuth's method below 30, a rounded normal above).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut count = 0u64;
            let mut product = self.unit();
            while product > limit {
                count += 1;
                product *= self.unit();
            }
            return count;
        }
        let draw = lambda + lambda.sqrt() * self.normal();
        draw.round().max(0.0) as u64
    }
}

/// The standard normal cumulative distribution function (Abramowitz and Stegun 7.1.26 for erf; error
/// below 1.5e-7, plenty for bucket probabilities).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let sign = if z < 0.0 { -1.0 } else { 1.0 };
    let magnitude = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * magnitude);
    let polynomial =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - polynomial * (-magnitude * magnitude).exp();
    0.5 * (1.0 + sign * erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence() {
        let mut first = Rng::new(42);
        let mut second = Rng::new(42);
        let left: Vec<u64> = (0..16).map(|_| first.next_u64()).collect();
        let right: Vec<u64> = (0..16).map(|_| second.next_u64()).collect();
        assert_eq!(left, right);
        assert_ne!(Rng::new(43).next_u64(), left[0]);
    }

    #[test]
    fn poisson_mean_is_close_to_lambda() {
        let mut rng = Rng::new(7);
        for lambda in [0.3, 4.0, 100.0] {
            let draws = 20_000;
            let total: u64 = (0..draws).map(|_| rng.poisson(lambda)).sum();
            let mean = total as f64 / draws as f64;
            assert!((mean - lambda).abs() < lambda * 0.05 + 0.02, "lambda {lambda} mean {mean}");
        }
    }

    #[test]
    fn normal_cdf_matches_known_points() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((normal_cdf(-1.96) - 0.024_997_9).abs() < 1e-6);
    }
}
