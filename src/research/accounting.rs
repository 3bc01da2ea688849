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
    if spent.epsilon_at(delta)? >= budget {
        return Ok(0.0);
    }
    let fits = |eps: f64| -> Result<bool> { Ok(spent.plus(eps)?.epsilon_at(delta)? <= budget) };
    // One release above the budget never fits: its Σ ε bound exceeds the budget, and its zCDP
    // bound is at least ε √(2 ln(1/δ)) > ε for every δ a project may have (≤ 1e-3).
    // Basic composition alone already allows budget − Σ ε; zCDP may allow more.
    let (mut lo, mut hi) = ((budget - spent.epsilon_sum).max(0.0), budget);
    // 40 halvings: the answer to within 1e-12 of the budget, for a few milliseconds.
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
