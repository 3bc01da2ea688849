//! The web UI over HTTPS: with `[http] tls = true` the server presents the certificate `init`
//! issued from nachtwacht's CA (TLS 1.3), a client that trusts that CA signs in, and the session
//! cookie carries `Secure`. A plain-HTTP client gets nothing.

use std::sync::Arc;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::registry::accounts::{self, Role};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn https_request(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
    request: String,
) -> (String, rustls::ProtocolVersion) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the CA-issued server certificate");
    let version = tls.get_ref().1.protocol_version().unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap_or_default();
    (String::from_utf8_lossy(&response).to_string(), version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_serves_tls_with_the_ca_issued_certificate_and_secure_cookies() {
    let mut config = Config::default();
    config.http.tls = true;
    let t = start_server(config).await;
    let addr = t.server.http_addr();
    let ca = std::fs::read(t.ctx.dir.ca_cert()).unwrap();
    let new = accounts::create(
        &t.ctx.db,
        "olga",
        Role::Officer,
        "test",
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();

    let host = format!("localhost:{}", addr.port());
    let (page, version) = https_request(
        addr,
        &ca,
        format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Inloggen"));
    assert!(
        page.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{page}"
    );
    // A request that names another host (here: the default port) is refused and audited.
    let (other, _) = https_request(
        addr,
        &ca,
        "GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 400"), "{other}");
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'access.refused-host'"),
        1
    );

    let code = accounts::totp_code(&new.totp_secret, nachtwacht::base::time::now_ms()).unwrap();
    let body = format!("username=olga&password={}&code={code}", new.password);
    let (response, _) = https_request(
        addr,
        &ca,
        format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 303"), "{response}");
    let cookie = response
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: nw_session=")
        })
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attr), "{cookie}");
    }

    // Plain HTTP on the TLS port: no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut plain = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut plain),
    )
    .await;
    assert!(!String::from_utf8_lossy(&plain).contains("HTTP/1.1 200"));
}
