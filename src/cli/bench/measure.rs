//! Measuring, shared by the bench commands: wall and process CPU time of one stage (from a quiet
//! disk), and the one definition of a quantile every bench reports with.

use std::time::Instant;

/// CPU time of the whole process (every thread: the decode worker's writer runs on its own), in
/// seconds. Nothing else runs while a stage is timed.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Wall and CPU seconds of `f`. Starts from a quiet disk: the previous stage's writes are flushed
/// first, so no stage's fsyncs wait behind another stage's write-back.
pub fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64, f64)> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let (wall, cpu) = (Instant::now(), process_cpu_seconds());
    let out = f()?;
    Ok((
        out,
        wall.elapsed().as_secs_f64(),
        process_cpu_seconds() - cpu,
    ))
}

/// The index of the `p` quantile (0 ≤ p ≤ 1) among `len` sorted values, by nearest rank; `None`
/// when there are none.
pub fn quantile_index(len: usize, p: f64) -> Option<usize> {
    let last = len.checked_sub(1)?;
    Some(((last as f64 * p).round() as usize).min(last))
}

/// The `p` quantile of sorted values (0 for none).
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    quantile_index(sorted.len(), p).map_or(0.0, |i| sorted[i])
}

/// The median of `values`, in any order.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}
