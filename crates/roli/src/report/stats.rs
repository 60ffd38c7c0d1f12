//! The two statistics of the report, as pure functions: the Wilson score interval for one
//! accuracy, and the exact McNemar test for two models scored on the same examples.
//!
//! Why these: test subsets here are small (hundreds to a few thousand examples), where the
//! normal-approximation interval misbehaves near 0 and 1, and RoLI vs RanLI is a *paired*
//! comparison, so the discordant examples carry all the information (field.md §3.4).

/// z of a two-sided 95% interval (the 0.975 normal quantile).
pub const Z95: f64 = 1.959_963_984_540_054;

/// The standard normal quantile Φ⁻¹(p) for p in (0, 1) (Acklam's rational approximation,
/// relative error < 1.2e-9): turns a confidence level into the interval's z.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const LOW: f64 = 0.024_25;
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// z of a two-sided interval at `confidence` (0.95 → 1.95996).
pub fn z_for(confidence: f64) -> f64 {
    normal_quantile(0.5 + confidence / 2.0)
}

/// Wilson score interval `(low, high)` for `k` successes out of `n`, at normal quantile `z`.
/// `n = 0` gives the uninformative `(0, 1)`.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = k.min(n) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Exact two-sided McNemar p-value from the discordant counts: `b` examples only the first
/// model got right, `c` only the second. Under H0 each discordant example is a fair coin, so
/// p = min(1, 2·P[Binomial(b+c, ½) ≤ min(b, c)]). No discordant pairs gives p = 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Sum C(n, i)·2^-n for i ≤ k in log space, so n in the tens of thousands does not underflow.
    let mut log_term = -(n as f64) * std::f64::consts::LN_2;
    let mut log_sum = log_term;
    for i in 0..k {
        log_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        let (hi, lo) = if log_sum > log_term { (log_sum, log_term) } else { (log_term, log_sum) };
        log_sum = hi + (lo - hi).exp().ln_1p();
    }
    (2.0 * log_sum.exp()).min(1.0)
}

/// Paired outcome counts of two models on the same examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Paired {
    /// Examples both models evaluated.
    pub n: usize,
    /// Correct for the first model only.
    pub only_a: usize,
    /// Correct for the second model only.
    pub only_b: usize,
    /// Correct for the first model (of the `n`).
    pub a: usize,
    /// Correct for the second model (of the `n`).
    pub b: usize,
}

impl Paired {
    /// Counts from `(a_correct, b_correct)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut p = Paired::default();
        for (x, y) in pairs {
            p.n += 1;
            p.a += x as usize;
            p.b += y as usize;
            p.only_a += (x && !y) as usize;
            p.only_b += (!x && y) as usize;
        }
        p
    }

    /// Accuracy difference a − b over the shared examples.
    pub fn delta(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.a as f64 - self.b as f64) / self.n as f64
        }
    }

    /// Exact McNemar p-value of a vs b.
    pub fn p_value(&self) -> f64 {
        mcnemar_exact(self.only_a, self.only_b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_intervals() {
        let (lo, hi) = wilson(8, 10, Z95);
        assert!((lo - 0.4902).abs() < 5e-4 && (hi - 0.9433).abs() < 5e-4, "{lo} {hi}");
        // 0/10 and 10/10: the interval stays inside [0, 1] and is not degenerate.
        let (lo, hi) = wilson(0, 10, Z95);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 5e-4, "{lo} {hi}");
        let (lo, hi) = wilson(10, 10, Z95);
        assert!((lo - 0.7225).abs() < 5e-4 && (hi - 1.0).abs() < 1e-12, "{lo} {hi}");
        // 500/1000: symmetric around 0.5, half-width ≈ 1.96·sqrt(.25/1000) = 0.031.
        let (lo, hi) = wilson(500, 1000, Z95);
        assert!((0.5 - lo - (hi - 0.5)).abs() < 1e-12 && (hi - lo - 0.0619).abs() < 5e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn normal_quantiles() {
        assert!((z_for(0.95) - Z95).abs() < 1e-8, "{}", z_for(0.95));
        assert!((z_for(0.99) - 2.575_829_303_549).abs() < 1e-8);
        assert!((normal_quantile(0.001) + 3.090_232_306_168).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn mcnemar_matches_the_binomial_test() {
        // 2·(1 + 12 + 66)/4096.
        assert!((mcnemar_exact(10, 2) - 0.038_574).abs() < 1e-5, "{}", mcnemar_exact(10, 2));
        assert_eq!(mcnemar_exact(10, 2), mcnemar_exact(2, 10));
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // 2·2^-5 for 5 vs 0.
        assert!((mcnemar_exact(5, 0) - 0.0625).abs() < 1e-12);
        // Large n stays finite and tiny for a lopsided split, ~1 for a balanced one.
        let p = mcnemar_exact(30_000, 25_000);
        assert!(p > 0.0 && p < 1e-50, "{p}");
        assert!(mcnemar_exact(25_010, 25_000) > 0.9);
    }

    #[test]
    fn paired_counts_and_delta() {
        let p = Paired::from_pairs([(true, true), (true, false), (true, false), (false, true), (false, false)]);
        assert_eq!((p.n, p.a, p.b, p.only_a, p.only_b), (5, 3, 2, 2, 1));
        assert!((p.delta() - 0.2).abs() < 1e-12);
        assert!((p.p_value() - 1.0).abs() < 1e-12);
    }
}
