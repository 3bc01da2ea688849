//! Credentials without state: password hashing (Argon2id) and checking, TOTP codes (RFC 6238) over
//! base32 secrets, random tokens and constant-time comparison.

use super::*;

/// TOTP: 30-second steps, 6 digits, one step of clock skew either way.
const TOTP_STEP_SECS: i64 = 30;

const TOTP_SKEW_STEPS: i64 = 1;

pub(super) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

pub(super) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    // argon2 0.5's default is argon2id (m = 19 MiB, t = 2, p = 1), OWASP's recommended minimum.
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

pub(super) fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding: how authenticator apps take secrets.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | byte as u32;
        bits += 8;
        while bits >= 5 {
            out.push(BASE32[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = BASE32
            .iter()
            .position(|&b| b as char == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The 6-digit code of `secret` for time step `step` (HOTP with the step as counter).
fn hotp(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&(step as u64).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", value % 1_000_000)
}

/// The current TOTP code of a base32 secret at `now_ms` (what an authenticator app shows).
pub fn totp_code(secret_base32: &str, now_ms: i64) -> Option<String> {
    Some(hotp(
        &base32_decode(secret_base32)?,
        now_ms.div_euclid(1000) / TOTP_STEP_SECS,
    ))
}

/// The time step whose code `code` is, within the allowed skew; `None` when it matches none.
pub(super) fn totp_step_of(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
    let now_step = now_ms.div_euclid(1000) / TOTP_STEP_SECS;
    let code = code.trim();
    (-TOTP_SKEW_STEPS..=TOTP_SKEW_STEPS)
        .map(|d| now_step + d)
        .find(|&step| constant_time_eq(hotp(secret, step).as_bytes(), code.as_bytes()))
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A valid argon2id hash of a random password, so an unknown user costs as much as a known one.
pub(super) fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
        .clone()
}
