//! Plain ustar archives: what nachtwacht hands over (subject access exports, case archives, court
//! dossiers). Members are written in the order given, each 0600, with one modification time.

use std::io::Read;

/// The archive of `members` (name, bytes), in order.
pub fn tar(members: &[(String, Vec<u8>)], now_ms: i64) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime((now_ms / 1000).max(0) as u64);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    builder.into_inner()
}

/// Every regular member of an archive, in order, with its bytes. `max_bytes` bounds what is read
/// in total (an archive from elsewhere may be hostile).
pub fn untar(archive: &[u8], max_bytes: u64) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        total += entry.size();
        if total > max_bytes {
            return Err(std::io::Error::other(format!(
                "the archive holds more than {max_bytes} bytes"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        out.push((name, bytes));
    }
    Ok(out)
}
