//! Composing and sending one message over SMTP with TLS (lettre, on the server's rustls + ring).
//!
//! What a message says is fixed here and holds no personal data: a sentence in Dutch and in
//! English and a link to the alert's page, which asks for sign-in and checks the caseload.

use std::path::Path;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::outbox::Due;
use super::{Error, Reason, Result};
use crate::base::config::{SmtpConfig, SmtpTls};
use crate::base::datadir::DataDir;

/// How long one SMTP exchange may take before it counts as failed (and is retried).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("address {0:?} is not a valid e-mail address")]
    Address(String),
    #[error("composing the message: {0}")]
    Compose(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// The subject and body of a message: the same for every recipient of a reason, apart from the
/// alert's link.
pub fn text(reason: Reason, link: &str) -> (&'static str, String) {
    match reason {
        Reason::NewAlert => (
            "nachtwacht: nieuwe melding / new alert",
            format!(
                "Er is een nieuwe melding in nachtwacht.\r\nOpenen: {link}\r\n\r\n\
                 There is a new alert in nachtwacht.\r\nOpen: {link}\r\n\r\n\
                 U krijgt dit bericht omdat u e-mail over nieuwe meldingen hebt aangezet \
                 (nachtwacht, Mijn account).\r\n"
            ),
        ),
        Reason::Escalation => (
            "nachtwacht: kritieke melding niet geopend / critical alert not opened",
            format!(
                "Een kritieke melding in nachtwacht is nog door niemand geopend.\r\n\
                 Openen: {link}\r\n\r\n\
                 A critical alert in nachtwacht has not been opened by anyone yet.\r\n\
                 Open: {link}\r\n\r\n\
                 U krijgt dit bericht als teamleider van de behandelend toezichthouder.\r\n"
            ),
        ),
    }
}

/// A connection recipe for the configured mail server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    link_base: String,
}

impl Mailer {
    pub fn new(dir: &DataDir, smtp: &SmtpConfig, link_base: String) -> Result<Self> {
        let mut tls = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem = read(&dir.root().join(ca))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| Error::Config(format!("notifications.smtp.ca_file {ca}: {e}")))?;
            // Only the configured CA: a private mail relay is trusted for what it is, no more.
            tls = tls
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| Error::Config(format!("notifications.smtp TLS: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(SEND_TIMEOUT))
            .tls(match smtp.tls {
                SmtpTls::Starttls => Tls::Required(tls),
                SmtpTls::Implicit => Tls::Wrapper(tls),
            });
        if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
            let password = String::from_utf8(read(&dir.root().join(file))?)
                .map_err(|_| Error::Config(format!("{file} is not UTF-8")))?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.trim_end_matches(['\r', '\n']).to_string(),
            ));
        }
        let from = smtp
            .from
            .parse::<Mailbox>()
            .map_err(|e| Error::Config(format!("notifications.smtp.from {:?}: {e}", smtp.from)))?;
        Ok(Self {
            transport: builder.build(),
            from,
            link_base,
        })
    }

    /// Sends one message; any failure is the caller's to record and retry.
    pub async fn send(&self, message: &Due) -> Result<(), SendError> {
        let to = message
            .to
            .parse::<Mailbox>()
            .map_err(|_| SendError::Address(message.to.clone()))?;
        let link = format!("{}/alerts/{}", self.link_base, message.alert_id);
        let (subject, body) = text(message.reason, &link);
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        self.transport.send(email).await?;
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}
