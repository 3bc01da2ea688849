//! This process among several: a name that tells it apart from every other process sharing the
//! database or the data directory, and whether a process so named is gone.

/// This process's name: host, process id and a random part (a restarted process with the same
/// pid is another process). Holders of leases and owners of temporary files are named so.
pub fn name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// Whether `name` (a [`name`]) was a process on this machine that is gone: what it held or left
/// half-written is free at once, not only when it runs out or ages.
pub fn died_here(name: &str) -> bool {
    let mut parts = name.rsplitn(3, ':');
    let (_random, pid, host) = (parts.next(), parts.next(), parts.next());
    let this_host = self::name().rsplitn(3, ':').nth(2);
    match (host, pid.and_then(|p| p.parse::<i32>().ok())) {
        (Some(host), Some(pid)) if Some(host) == this_host && pid > 0 => {
            // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
            (unsafe { libc::kill(pid, 0) }) == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
        _ => false,
    }
}
