//! What the operations team watches: the metrics' state read at scrape time ([`observe`]) and
//! whether this process is ready to serve ([`readiness`]). Both read every stage, so this layer
//! sits above them; the web UI and the metrics listener of `server` answer with them.

pub mod backup;
pub mod check;
pub mod observe;
pub mod readiness;
