//! Privacy-loss accounting for a project's ledger.
//!
//! Every release is pure ε-DP (Laplace and exponential mechanisms). A project keeps two running
//! totals, both valid bounds on the loss of everything released so far:
//!
//! * **basic composition**: Σ εᵢ, an (Σ εᵢ, 0)-DP guarantee; tight for a few large queries;
//! * **zero-concentrated DP**: each ε-DP release is (ε²/2)-zCDP and ρ adds up, which OpenDP turns
//!   into an (ε, δ)-DP guarantee at the project's δ; far tighter for many small queries.
//!
//! The released data satisfy both at once, so the project's loss is the smaller ε at its δ. That
//! is the number shown to researchers and charged against the budget. The conversions are OpenDP's
//! own (`make_pureDP_to_zCDP`, `make_zCDP_to_approxDP`, `make_fix_delta`), not formulas of ours.

use opendp::combinators::{make_fix_delta, make_pureDP_to_zCDP, make_zCDP_to_approxDP};
use opendp::core::{Function, Measurement, PrivacyMap};
use opendp::domains::AtomDomain;
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::AbsoluteDistance;

use std::sync::{Mutex, PoisonError};

use super::{Error, Result};

/// What a project has spent so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spent {
    /// Σ ε of every release (basic composition).
    pub epsilon_sum: f64,
    /// Σ ρ of every release (zCDP).
    pub rho: f64,
}

impl Spent {
    /// The ledger after one more pure ε-DP release.
    pub fn plus(self, epsilon: f64) -> Result<Self> {
        Ok(Self {
            epsilon_sum: self.epsilon_sum + epsilon,
            rho: self.rho + rho_of_pure(epsilon)?,
        })
    }

    /// The (ε, δ)-DP loss of everything released so far, at `delta`: the better of the two bounds.
    /// Where OpenDP cannot convert ρ (it overflows for very large ρ, far beyond any real budget)
    /// the zCDP bound is taken as infinite, which is vacuous but sound: Σ ε then binds.
    pub fn epsilon_at(&self, delta: f64) -> Result<f64> {
        let zcdp = zcdp_epsilon(self.rho, delta).unwrap_or(f64::INFINITY);
        Ok(self.epsilon_sum.min(zcdp))
    }
}

/// ρ of an ε-DP release, by OpenDP's cast (ρ = ε²/2, Bun & Steinke 2016).
fn rho_of_pure(epsilon: f64) -> Result<f64> {
    super::opendp_section::run(|| {
        let pure = constant_loss::<MaxDivergence>(MaxDivergence, epsilon)?;
        Ok(make_pureDP_to_zCDP(pure)?.map(&1.0)?)
    })
}

/// The ε at which a ρ-zCDP guarantee holds with probability 1 − δ (OpenDP's conversion, the
/// tight bound of Canonne, Kamath and Steinke 2020).
fn zcdp_epsilon(rho: f64, delta: f64) -> Result<f64> {
    if rho <= 0.0 {
        return Ok(0.0);
    }
    super::opendp_section::run(|| {
        let zcdp = constant_loss(ZeroConcentratedDivergence, rho)?;
        let (epsilon, _) = make_fix_delta(&make_zCDP_to_approxDP(zcdp)?, delta)?.map(&1.0)?;
        Ok(epsilon)
    })
}

/// A measurement whose only content is its privacy loss: OpenDP's combinators then convert a
/// ledger total exactly as they would convert a real measurement's.
fn constant_loss<M>(
    measure: M,
    loss: f64,
) -> Result<Measurement<AtomDomain<i32>, AbsoluteDistance<f64>, M, i32>>
where
    M: opendp::core::Measure<Distance = f64> + 'static,
{
    if !(loss.is_finite() && loss >= 0.0) {
        return Err(Error::OpenDp(format!("invalid privacy loss {loss}")));
    }
    Ok(Measurement::new(
        AtomDomain::default(),
        AbsoluteDistance::default(),
        measure,
        Function::new(|x: &i32| *x),
        PrivacyMap::new(move |_| loss),
    )?)
}

/// The largest ε the next release may have so that the project's loss stays within `budget`.
/// The loss grows with ε, so a bisection finds it; 0 when nothing fits. One OpenDP section for
/// the whole bisection, not one per conversion.
pub fn largest_next_epsilon(spent: Spent, budget: f64, delta: f64) -> Result<f64> {
    super::opendp_section::run(|| bisect_next_epsilon(spent, budget, delta))
}

fn bisect_next_epsilon(spent: Spent, budget: f64, delta: f64) -> Result<f64> {
    // The loss is within the budget when either bound is: Σ ε ≤ budget, or the zCDP bound at δ
    // is, which (the conversion growing with ρ) is ρ ≤ the largest ρ within the budget. That ρ
    // depends on the budget and δ alone, so it is found once per pair, not once per probe.
    let rho_max = largest_rho_within(budget, delta);
    if spent.epsilon_sum >= budget && spent.rho >= rho_max {
        return Ok(0.0);
    }
    let fits = |eps: f64| -> Result<bool> {
        let after = spent.plus(eps)?;
        Ok(after.epsilon_sum <= budget || after.rho <= rho_max)
    };
    // One release above the budget never fits: its Σ ε bound exceeds the budget, and its zCDP
    // bound is at least ε √(2 ln(1/δ)) > ε for every δ a project may have (≤ 1e-3).
    // Basic composition alone already allows budget − Σ ε; zCDP may allow more.
    let (mut lo, mut hi) = ((budget - spent.epsilon_sum).max(0.0), budget);
    // 40 halvings: the answer to within 1e-12 of the budget.
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The largest ρ whose (ε, δ) bound at `delta` is within `budget` (0 when none is, or when the
/// budget is too small for zCDP to matter), remembered per (budget, δ): each conversion is an
/// OpenDP search of its own, and a bisection over ε needs forty of them. Found by bisecting the bit patterns of non-negative floats, whose order is
/// their values' order, so the answer is exact: every ρ up to it fits, the next float does not.
fn largest_rho_within(budget: f64, delta: f64) -> f64 {
    // A few entries per project and the person cap; cleared if it ever grows past this.
    const MOST: usize = 1024;
    static KNOWN: Mutex<Vec<((u64, u64), f64)>> = Mutex::new(Vec::new());
    let key = (budget.to_bits(), delta.to_bits());
    let known = |k: &Vec<((u64, u64), f64)>| k.iter().find(|(at, _)| *at == key).map(|e| e.1);
    if let Some(rho) = known(&KNOWN.lock().unwrap_or_else(PoisonError::into_inner)) {
        return rho;
    }
    // Where OpenDP cannot convert ρ (it overflows far beyond any real budget, and refuses an
    // infinite one), ρ does not fit, as in `Spent::epsilon_at`.
    let fits = |rho: f64| zcdp_epsilon(rho, delta).is_ok_and(|eps| eps <= budget);
    // The bisection starts near the answer: every ρ within the textbook bound fits (ε ≤ ρ +
    // 2 √(ρ ln(1/δ)), Bun & Steinke; OpenDP's conversion is at least as tight). From 0 it would
    // probe the hundreds of binades of tiny ρ between, each conversion there taking OpenDP
    // seconds. √(L + b) − √L is written b / (√(L + b) + √L), which does not cancel.
    let ln_inv_delta = (1.0 / delta).ln();
    let lo = (budget / ((ln_inv_delta + budget).sqrt() + ln_inv_delta.sqrt())).powi(2);
    // A budget under about 1e-14 gains nothing measurable from zCDP: only Σ ε counts for it.
    let usable = lo.is_finite() && lo >= 1e-30;
    if !usable || !fits(lo) {
        return 0.0;
    }
    // One release of ε = budget has ρ = budget²/2 and a zCDP bound above ε (see above): a ρ that
    // does not fit. Doubled should that ever be wrong for some δ; an infinite ρ never fits.
    let mut hi = budget * budget / 2.0;
    while fits(hi) {
        hi *= 2.0;
    }
    let (mut lo_bits, mut hi_bits) = (lo.to_bits(), hi.to_bits());
    while hi_bits - lo_bits > 1 {
        let mid = lo_bits + (hi_bits - lo_bits) / 2;
        if fits(f64::from_bits(mid)) {
            lo_bits = mid;
        } else {
            hi_bits = mid;
        }
    }
    let rho = f64::from_bits(lo_bits);
    let mut k = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if k.len() >= MOST {
        k.clear();
    }
    if known(&k).is_none() {
        k.push((key, rho));
    }
    rho
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_release_costs_its_epsilon_and_rho_is_half_its_square() {
        let s = Spent::default().plus(0.5).unwrap();
        assert_eq!(s.epsilon_sum, 0.5);
        assert!((s.rho - 0.125).abs() < 1e-12, "{}", s.rho);
        // zCDP at δ = 1e-6 is far worse than 0.5 for a single release: the sum wins.
        assert_eq!(s.epsilon_at(1e-6).unwrap(), 0.5);
    }

    #[test]
    fn many_small_releases_cost_less_than_their_sum() {
        let mut s = Spent::default();
        for _ in 0..400 {
            s = s.plus(0.01).unwrap();
        }
        let eps = s.epsilon_at(1e-6).unwrap();
        assert!((s.epsilon_sum - 4.0).abs() < 1e-9);
        // ρ = 400 × 0.00005 = 0.02 → ε ≈ 1.0 at δ = 1e-6 (CKS20), a quarter of the sum.
        assert!(eps < 1.2 && eps > 0.6, "{eps}");
    }

    #[test]
    fn the_conversion_matches_the_textbook_bound_or_beats_it() {
        // ε ≤ ρ + 2 √(ρ ln(1/δ)) (Bun & Steinke); OpenDP's conversion is at least as tight.
        for rho in [0.001, 0.02, 0.157, 1.0] {
            let textbook = rho + 2.0 * (rho * (1e6_f64).ln()).sqrt();
            let ours = zcdp_epsilon(rho, 1e-6).unwrap();
            assert!(
                ours <= textbook + 1e-9 && ours > 0.0,
                "ρ {rho}: {ours} vs {textbook}"
            );
        }
    }

    /// The bisection before ρ was remembered: every probe converts the whole ledger.
    fn bisect_over_the_whole_loss(spent: Spent, budget: f64, delta: f64) -> f64 {
        if spent.epsilon_at(delta).unwrap() >= budget {
            return 0.0;
        }
        let fits = |eps: f64| spent.plus(eps).unwrap().epsilon_at(delta).unwrap() <= budget;
        let (mut lo, mut hi) = ((budget - spent.epsilon_sum).max(0.0), budget);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    #[test]
    fn the_remembered_rho_gives_the_answers_of_converting_every_probe() {
        // Each reference answer converts the ledger forty times (seconds in a debug build): a
        // few ledgers where each bound binds, near the edge and past it.
        let after = |eps: f64, n: usize| (0..n).fold(Spent::default(), |s, _| s.plus(eps).unwrap());
        let ledgers = [
            Spent::default(),
            after(0.3, 2),
            after(0.01, 300),
            after(0.05, 150),
            after(1.0, 1),
            after(0.25, 4),
        ];
        for (budget, delta) in [(1.0, 1e-6), (6.0, 1e-7)] {
            for spent in ledgers {
                let ours = largest_next_epsilon(spent, budget, delta).unwrap();
                let theirs = bisect_over_the_whole_loss(spent, budget, delta);
                assert_eq!(
                    ours.to_bits(),
                    theirs.to_bits(),
                    "{spent:?} within ({budget}, {delta}): {ours} vs {theirs}"
                );
            }
            // The remembered ρ is the exact edge: it fits, the next float does not.
            let rho = largest_rho_within(budget, delta);
            assert!(zcdp_epsilon(rho, delta).unwrap() <= budget);
            let next = f64::from_bits(rho.to_bits() + 1);
            assert!(
                zcdp_epsilon(next, delta).unwrap() > budget,
                "{rho} for {budget}"
            );
        }
    }

    #[test]
    fn a_budget_whose_square_underflows_still_has_an_answer() {
        for budget in [1e-13, 1e-153, 1e-200, 1e-320] {
            let next = largest_next_epsilon(Spent::default(), budget, 1e-6).unwrap();
            assert!(next > 0.0 && next <= budget, "{budget}: {next}");
        }
    }

    #[test]
    fn huge_budgets_fall_back_to_basic_composition() {
        // A benchmark project with ε = 1e9: ρ is far outside what the conversion handles.
        let s = Spent::default().plus(1e4).unwrap();
        assert_eq!(s.epsilon_at(1e-6).unwrap(), 1e4);
        let next = largest_next_epsilon(Spent::default(), 1e9, 1e-6).unwrap();
        assert!((next - 1e9).abs() / 1e9 < 1e-6, "{next}");
    }

    #[test]
    fn the_largest_next_release_exactly_fills_the_budget() {
        let spent = Spent::default().plus(0.3).unwrap();
        let next = largest_next_epsilon(spent, 1.0, 1e-6).unwrap();
        assert!((spent.plus(next).unwrap().epsilon_at(1e-6).unwrap() - 1.0).abs() < 1e-6);
        assert!(spent.plus(next * 1.001).unwrap().epsilon_at(1e-6).unwrap() > 1.0);
        let full = Spent {
            epsilon_sum: 1.0,
            rho: 0.5,
        };
        assert_eq!(largest_next_epsilon(full, 1.0, 1e-6).unwrap(), 0.0);
    }
}
