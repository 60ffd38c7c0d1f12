//! The statistics of a study run over several seeds, as pure functions: the mean of per-seed
//! accuracies with a Student-t interval, and an exact paired sign-flip (permutation) test that
//! pools the seeds *per test example*.
//!
//! Why this test. Every seed evaluates the same test examples, so the seeds' outcomes on one
//! example are correlated (a hard image is hard for every seed's models). Pooling all
//! example-seed pairs into one McNemar test (or a Cochran–Mantel–Haenszel test with the seeds as
//! strata) would count the same example S times as if independent. Instead the statistic of
//! example i is d_i = Σ_s (a_correct[s, i] − b_correct[s, i]), and under H0 ("a and b are
//! exchangeable on each example") swapping the a/b labels of example i flips the sign of d_i as a
//! whole, across every seed at once. The test statistic is T = Σ_i d_i (S·n times the pooled
//! accuracy difference); its null distribution is that of Σ_i ±|d_i| with fair independent signs:
//! an integer convolution over at most S·n values, so the p-value is exact, with no Monte Carlo.
//! For S = 1, d_i ∈ {−1, 0, 1} and the test *is* the exact McNemar test.
//!
//! What it does not cover: the test conditions on the trained models. The spread of the
//! per-seed differences (training noise) is reported beside it as a t-interval over the seeds,
//! which with S = 3 has only 2 degrees of freedom (t = 4.30) and is therefore wide.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; |relative error| < 1e-13 here).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the regularized incomplete beta (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Student-t CDF with `df` degrees of freedom. Near t = 0 it goes through P(|T| < |t|) =
/// I_y(½, df/2) with y = t²/(df + t²), so small |t| keeps full precision (a quantile near ½
/// needs it); in the tails through 0.5·I_x(df/2, ½) with x = df/(df + t²).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let y = t * t / (df + t * t);
    if y < 0.5 {
        0.5 + 0.5 * t.signum() * inc_beta(0.5, df / 2.0, y)
    } else {
        let tail = 0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t));
        if t >= 0.0 {
            1.0 - tail
        } else {
            tail
        }
    }
}

/// The Student-t quantile for p in (0, 1) (bisection on [`t_cdf`] to 1e-12).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    let (mut lo, mut hi) = (-1e6, 1e6);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Mean of `values` with its two-sided t-interval at `confidence` (S − 1 degrees of freedom):
/// `(mean, low, high)`. One value gives the degenerate `(v, v, v)`: the caller uses an interval
/// over examples instead (Wilson), and nothing at all gives NaN.
pub fn mean_t_interval(values: &[f64], confidence: f64) -> (f64, f64, f64) {
    let s = values.len();
    if s == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / s as f64;
    if s == 1 {
        return (mean, mean, mean);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (s - 1) as f64;
    let half = t_quantile(0.5 + confidence / 2.0, (s - 1) as f64) * (var / s as f64).sqrt();
    (mean, mean - half, mean + half)
}

/// The smallest p-value [`sign_flip_exact`] reports: the convolution runs in f64, whose tails
/// underflow below this.
pub const P_FLOOR: f64 = 1e-300;

/// Exact two-sided p-value of the paired sign-flip test on per-example differences `d` (see the
/// module doc): P(|Σ ε_i |d_i|| ≥ |Σ d_i|) with independent fair signs ε_i. Zeros carry no
/// information and drop out; no non-zero difference gives p = 1. For d_i ∈ {−1, 0, 1} this equals
/// the exact McNemar test ([`super::stats::mcnemar_exact`]).
pub fn sign_flip_exact(d: &[i64]) -> f64 {
    let observed: i64 = d.iter().sum();
    let mags: Vec<usize> = d.iter().filter(|&&x| x != 0).map(|x| x.unsigned_abs() as usize).collect();
    let total: usize = mags.iter().sum();
    if total == 0 {
        return 1.0;
    }
    // dist[v + total] = P(Σ so far = v); the support widens by each |d_i|.
    let width = 2 * total + 1;
    let mut dist = vec![0.0f64; width];
    let mut next = vec![0.0f64; width];
    dist[total] = 1.0;
    let mut reach = 0usize;
    for &m in &mags {
        let (lo, hi) = (total - reach, total + reach);
        next[lo - m..=hi + m].iter_mut().for_each(|x| *x = 0.0);
        for v in lo..=hi {
            let p = dist[v];
            if p != 0.0 {
                next[v + m] += 0.5 * p;
                next[v - m] += 0.5 * p;
            }
        }
        reach += m;
        std::mem::swap(&mut dist, &mut next);
    }
    let bound = observed.unsigned_abs() as usize;
    let p: f64 = dist.iter().enumerate().filter(|(i, _)| i.abs_diff(total) >= bound).map(|(_, p)| p).sum();
    p.clamp(P_FLOOR, 1.0)
}

/// Per-example differences pooled over seeds: `pairs[s]` holds seed s's `(index, a_correct,
/// b_correct)`; the result is d_i = Σ_s (a − b) for every index seen in any seed, in index order.
pub fn pooled_differences<'a>(pairs: impl IntoIterator<Item = &'a [(usize, bool, bool)]>) -> Vec<i64> {
    let mut d = std::collections::BTreeMap::<usize, i64>::new();
    for seed in pairs {
        for &(i, a, b) in seed {
            *d.entry(i).or_default() += a as i64 - b as i64;
        }
    }
    d.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::super::stats::mcnemar_exact;
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        for (df, q) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (4.0, 2.776_445_105),
            (10.0, 2.228_138_852),
            (30.0, 2.042_272_456),
        ] {
            let t = t_quantile(0.975, df);
            assert!((t - q).abs() < 1e-6, "df {df}: {t} vs {q}");
        }
        assert!((t_quantile(0.995, 2.0) - 9.924_843_201).abs() < 1e-6);
        assert!(t_quantile(0.5, 3.0).abs() < 1e-9);
        // Large df approaches the normal quantile.
        assert!((t_quantile(0.975, 1e6) - super::super::stats::Z95).abs() < 1e-4);
    }

    #[test]
    fn t_interval_by_hand() {
        // mean 0.6, sd 0.1, S = 3: half-width 4.302653 · 0.1 / √3 = 0.248414.
        let (m, lo, hi) = mean_t_interval(&[0.5, 0.6, 0.7], 0.95);
        assert!(
            (m - 0.6).abs() < 1e-12 && (hi - m - 0.248_414).abs() < 1e-5 && (m - lo - 0.248_414).abs() < 1e-5,
            "{lo} {hi}"
        );
        assert_eq!(mean_t_interval(&[0.4], 0.95), (0.4, 0.4, 0.4));
        assert!(mean_t_interval(&[], 0.95).0.is_nan());
        // Identical seeds: a zero-width interval.
        assert_eq!(mean_t_interval(&[0.3, 0.3], 0.95), (0.3, 0.3, 0.3));
    }

    #[test]
    fn sign_flip_by_hand() {
        // d = (2, 1, 1): the 8 sign patterns give 4, 2, 2, 0, 0, −2, −2, −4; |T| ≥ 4 in 2 of 8.
        assert!((sign_flip_exact(&[2, 1, 1]) - 0.25).abs() < 1e-15);
        // d = (3, 1, 1, 1): only all-plus and all-minus reach |T| = 6: 2/16.
        assert!((sign_flip_exact(&[3, 1, 1, 1, 0, 0]) - 0.125).abs() < 1e-15);
        // T = 1 is the least extreme value of (2, −1): p = 1.
        assert_eq!(sign_flip_exact(&[2, -1]), 1.0);
        assert_eq!(sign_flip_exact(&[0, 0]), 1.0);
        assert_eq!(sign_flip_exact(&[]), 1.0);
        // Symmetric in the direction.
        assert_eq!(sign_flip_exact(&[3, 2, -1, 2]), sign_flip_exact(&[-3, -2, 1, -2]));
    }

    #[test]
    fn one_seed_is_the_exact_mcnemar_test() {
        for (b, c) in [(10, 2), (2, 10), (5, 0), (5, 5), (68, 12), (22, 22), (16, 20), (300, 250), (1, 0)] {
            let mut d = vec![1i64; b];
            d.extend(std::iter::repeat_n(-1, c));
            d.extend([0, 0, 0]);
            let (p, q) = (sign_flip_exact(&d), mcnemar_exact(b, c));
            assert!((p - q).abs() <= 1e-12 * q.max(1e-300) + 1e-15, "{b}/{c}: {p} vs {q}");
        }
        // The report's committed value: full/RoLI vs RanLI clean, 68 vs 12 discordant.
        let mut d = vec![1i64; 68];
        d.extend(std::iter::repeat_n(-1, 12));
        assert!((sign_flip_exact(&d) - 1.2e-10).abs() < 0.05e-10, "{}", sign_flip_exact(&d));
    }

    #[test]
    fn matches_brute_force_enumeration() {
        let cases: [&[i64]; 5] = [
            &[2, -1, 1, 0, 3, -2],
            &[1, 1, 1, 2, 2, -3, 1],
            &[3, 3, 3, -1, 2, 1, 1, 1, -2],
            &[-2, -2, -1, 0, 0, 1],
            &[5],
        ];
        for d in cases {
            let nz: Vec<i64> = d.iter().copied().filter(|&x| x != 0).collect();
            let t = d.iter().sum::<i64>().abs();
            let hits = (0u32..1 << nz.len())
                .filter(|mask| {
                    nz.iter()
                        .enumerate()
                        .map(|(i, x)| if mask >> i & 1 == 1 { x.abs() } else { -x.abs() })
                        .sum::<i64>()
                        .abs()
                        >= t
                })
                .count();
            let want = hits as f64 / (1u64 << nz.len()) as f64;
            assert!((sign_flip_exact(d) - want).abs() < 1e-14, "{d:?}: {} vs {want}", sign_flip_exact(d));
        }
    }

    #[test]
    fn differences_pool_per_example_across_seeds() {
        let s0: &[(usize, bool, bool)] = &[(0, true, false), (1, false, true), (2, true, true)];
        let s1: &[(usize, bool, bool)] = &[(0, true, false), (1, true, false), (3, false, true)];
        assert_eq!(pooled_differences([s0, s1]), vec![2, 0, 0, -1]);
        // Example 1 discordant in both seeds in opposite directions cancels: one example, one sign.
        // A large, lopsided pooled test stays finite and above the floor.
        let d: Vec<i64> = (0..3000).map(|i| if i % 3 == 0 { -1 } else { 2 }).collect();
        let p = sign_flip_exact(&d);
        assert!((P_FLOOR..1e-100).contains(&p), "{p}");
    }
}
