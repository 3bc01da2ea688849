//! nachtwacht's own certificate authority: created by `init`, it signs the server's certificate and
//! one client certificate per base station. Stations are recognised by the SHA-256 fingerprint of
//! their certificate, registered when the certificate is issued.

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("PEM: {0}")]
    Pem(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// SHA-256 of the certificate's DER encoding, hex: how the server recognises a station.
    pub fn fingerprint(&self) -> Result<String> {
        cert_fingerprint_pem(&self.cert_pem)
    }
}

pub fn cert_fingerprint_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub fn cert_fingerprint_pem(pem: &str) -> Result<String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::Pem(e.to_string()))?;
    Ok(cert_fingerprint_der(&der))
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    let yesterday = now - chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(
        yesterday.year(),
        yesterday.month() as u8,
        yesterday.day() as u8,
    );
    // 28th avoids invalid dates such as 29 February in a non-leap year.
    params.not_after = rcgen::date_time_ymd(
        now.year() + years,
        now.month() as u8,
        now.day().min(28) as u8,
    );
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "nachtwacht");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// (not before, not after) of the PEM certificate at `path`, ms since the epoch.
pub fn validity_of(path: &std::path::Path) -> Result<(i64, i64)> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Error::Pem(format!("{}: {e}", path.display())))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| Error::Pem(format!("{}: {e}", path.display())))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| Error::Pem(format!("{}: {e}", path.display())))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp() * 1000,
        validity.not_after.timestamp() * 1000,
    ))
}

/// Whether the DER certificate is inside its validity window at `now_ms`; `false` for a
/// certificate that does not parse. The ingest asks this after a resumed handshake, where rustls
/// restored the certificate from a session ticket without checking it again.
pub fn valid_at_der(der: &[u8], now_ms: i64) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
        let v = cert.validity();
        v.not_before.timestamp() * 1000 <= now_ms && now_ms <= v.not_after.timestamp() * 1000
    })
}

/// A new self-signed CA (ten years).
pub fn create_ca() -> Result<Issued> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn("nachtwacht CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 10);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// How long an issued certificate is valid.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From yesterday for this many years.
    Years(i32),
    /// An explicit window, as Unix seconds (tests issue expired certificates with this).
    Window { not_before: i64, not_after: i64 },
}

/// A fresh positive 16-byte serial number.
fn new_serial() -> Vec<u8> {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial.to_vec()
}

fn issue(ca: &Issued, common_name: &str, sans: Vec<String>, server: bool) -> Result<Issued> {
    issue_with(
        ca,
        common_name,
        sans,
        server,
        Validity::Years(2),
        new_serial(),
    )
}

/// Parameters of a certificate the CA issues (not a CA itself): the common name, these
/// subject alternative names, server or client authentication, this serial and validity.
fn leaf_params(
    common_name: &str,
    sans: Vec<String>,
    server: bool,
    validity_window: Validity,
    serial: Vec<u8>,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = dn(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    match validity_window {
        Validity::Years(years) => validity(&mut params, years),
        Validity::Window {
            not_before,
            not_after,
        } => {
            let at = |secs| {
                time::OffsetDateTime::from_unix_timestamp(secs)
                    .map_err(|e| Error::Pem(format!("validity: {e}")))
            };
            params.not_before = at(not_before)?;
            params.not_after = at(not_after)?;
        }
    }
    Ok(params)
}

/// A station certificate for the key of a certificate signing request (the station keeps its
/// private key; renewal over the connection). The request's signature is verified; only its
/// public key is used: name, usage and validity are the CA's. Returns the PEM and serial (hex).
pub fn issue_station_cert_for_request(
    ca: &Issued,
    station_name: &str,
    csr_pem: &str,
) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let serial = new_serial();
    csr.params = leaf_params(
        station_name,
        vec![],
        false,
        Validity::Years(2),
        serial.clone(),
    )?;
    let cert = csr.signed_by(&issuer)?;
    Ok((cert.pem(), hex::encode(serial)))
}

fn issue_with(
    ca: &Issued,
    common_name: &str,
    sans: Vec<String>,
    server: bool,
    validity_window: Validity,
    serial: Vec<u8>,
) -> Result<Issued> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let params = leaf_params(common_name, sans, server, validity_window, serial)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The server's certificate, valid for `server_name` (and localhost for local use).
pub fn issue_server_cert(ca: &Issued, server_name: &str) -> Result<Issued> {
    let mut sans = vec![server_name.to_string()];
    if server_name != "localhost" {
        sans.push("localhost".into());
    }
    issue(ca, server_name, sans, true)
}

/// A base station's client certificate; its common name is the station's name.
pub fn issue_station_cert(ca: &Issued, station_name: &str) -> Result<Issued> {
    Ok(issue_station_cert_with(ca, station_name, Validity::Years(2))?.0)
}

/// A station certificate and its serial number (hex), which a revocation list names.
pub fn issue_station_cert_with(
    ca: &Issued,
    station_name: &str,
    validity: Validity,
) -> Result<(Issued, String)> {
    let serial = new_serial();
    let issued = issue_with(ca, station_name, vec![], false, validity, serial.clone())?;
    Ok((issued, hex::encode(serial)))
}

/// A revoked certificate: its serial (hex) and when it was revoked (ms since the epoch).
#[derive(Debug, Clone)]
pub struct Revoked {
    pub serial_hex: String,
    pub revoked_at_ms: i64,
}

/// How long a revocation list is valid for; the server re-signs it well before (see `crl`).
pub const CRL_VALIDITY_DAYS: i64 = 30;

/// A certificate revocation list signed by the CA, PEM. `number` must increase with every list.
pub fn sign_crl(ca: &Issued, revoked: &[Revoked], number: u64, now_ms: i64) -> Result<String> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .map_err(|e| Error::Pem(format!("CRL time: {e}")))
    };
    let this_update = at(now_ms)?;
    let params = rcgen::CertificateRevocationListParams {
        this_update,
        next_update: this_update + time::Duration::days(CRL_VALIDITY_DAYS),
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| {
                Ok(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(
                        hex::decode(&r.serial_hex).map_err(|e| Error::Pem(e.to_string()))?,
                    ),
                    revocation_time: at(r.revoked_at_ms)?,
                    reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_have_distinct_fingerprints() {
        let ca = create_ca().unwrap();
        let a = issue_station_cert(&ca, "station-a").unwrap();
        let b = issue_station_cert(&ca, "station-b").unwrap();
        assert_ne!(a.fingerprint().unwrap(), b.fingerprint().unwrap());
        assert_eq!(a.fingerprint().unwrap().len(), 64);
        assert!(a.key_pem.contains("PRIVATE KEY"));
        assert!(issue_server_cert(&ca, "nachtwacht.example").is_ok());
    }
}
