//! The process's panic hook survives research work on many threads at once. opendp 0.16 swaps the
//! process-wide hook for a silent one around each of its float operations; done by several threads
//! at once, that left the silent hook installed for good, and a later panic anywhere in the server
//! said nothing (a research test failed with no message, even with `--nocapture`). A test binary
//! of its own: the count of reported panics is the whole process's.

use nachtwacht::research::{largest_next_epsilon, Spent};

#[test]
fn a_panic_is_reported_after_research_accounting_ran_on_many_threads_at_once() {
    nachtwacht::base::panics::install();
    // Each bisection step converts a ledger through opendp's combinators: hundreds of float
    // operations, each of which swaps the panic hook and back.
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..3 {
                    let spent = Spent::default()
                        .plus(0.01 * f64::from(t * 3 + i + 1))
                        .unwrap();
                    let next = largest_next_epsilon(spent, 10.0, 1e-6).unwrap();
                    assert!(next > 0.0 && next <= 10.0, "{next}");
                }
            });
        }
    });
    let before = nachtwacht::base::panics::reported();
    let probe = std::thread::spawn(|| panic!("a probe panic, expected by this test"));
    assert!(probe.join().is_err());
    assert_eq!(
        nachtwacht::base::panics::reported(),
        before + 1,
        "the panic hook was not in place after the research work"
    );
}
