//! The per-byte floor of the ingest: what every received byte costs at least on this machine,
//! measured in the same run as the ingest. A station's bundle reaches the server as QUIC packets,
//! each opened with the connection's AEAD (rustls with ring negotiates AES-256-GCM first), and the
//! server hashes the whole body with SHA-256 before it acknowledges it. Copies, the write and the
//! protocol's own work come on top; so does everything per packet that is not the AEAD.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};

/// Payload bytes of one QUIC packet on the path the bench and a typical station use.
pub(super) const PACKET_PAYLOAD: usize = 1_400;
/// The floor is measured on this much of the workload (enough for a stable figure).
const SAMPLE_BYTES: usize = 64 << 20;

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU-seconds per GB, on one core, to open the bodies' bytes as AES-256-GCM packets of
/// [`PACKET_PAYLOAD`] and hash each body with SHA-256 (the first [`SAMPLE_BYTES`] of them).
pub(super) fn per_byte_cpu_per_gb<'a>(bodies: impl Iterator<Item = &'a [u8]>) -> f64 {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let nonce = |n: u64| {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(b)
    };
    // Sealed before the clock starts, as the station sealed them.
    let mut packets: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut sample = 0usize;
    let mut n = 0u64;
    for body in bodies {
        if sample >= SAMPLE_BYTES {
            break;
        }
        sample += body.len();
        packets.push(
            body.chunks(PACKET_PAYLOAD)
                .map(|chunk| {
                    let mut p = chunk.to_vec();
                    key.seal_in_place_append_tag(nonce(n), Aad::from(&[0u8; 20]), &mut p)
                        .expect("seal");
                    n += 1;
                    p
                })
                .collect(),
        );
    }
    let start = thread_cpu_seconds();
    let mut n = 0u64;
    let mut check = 0u8;
    for body in &mut packets {
        let mut hash = Sha256::new();
        for p in body.iter_mut() {
            let plain = key
                .open_in_place(nonce(n), Aad::from(&[0u8; 20]), p)
                .expect("open");
            hash.update(&*plain);
            n += 1;
        }
        check ^= hash.finalize()[0];
    }
    let took = thread_cpu_seconds() - start;
    std::hint::black_box(check);
    took / (sample.max(1) as f64 / 1e9)
}
