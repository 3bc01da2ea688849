//! Timing shared by the bench commands: wall and process CPU time of one stage, from a quiet disk.

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
