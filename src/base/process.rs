//! This process among several: a name that tells it apart from every other process sharing the
//! database or the data directory, and whether a process so named is gone; and how this process
//! asks the kernel for its memory.

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`), whatever the
/// machine's setting. The ingest allocates and frees bundle bodies and packet buffers all the
/// time; with huge pages the allocator's fresh memory faults in 2 MiB at a time, each zeroed by the
/// kernel. In the ingest benchmark's herd that zeroing (`clear_page_erms` under mimalloc's page
/// extension) was a quarter of the server's CPU samples, 1 % without huge pages
/// (docs/benchmarks.md). Returns the error of a kernel that does not know the flag (before 3.15).
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory of ours.
    match unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn transparent_huge_pages_are_off_once_disabled() {
        super::disable_transparent_huge_pages().expect("a kernel with PR_SET_THP_DISABLE");
        // SAFETY: PR_GET_THP_DISABLE takes integer arguments only and returns the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}
