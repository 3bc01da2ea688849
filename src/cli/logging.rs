//! Where log lines go and in what form: stderr, as text (colour only at a terminal) or as JSON,
//! one object per line with the fields of the span a line was written in.

use std::io::IsTerminal;
use std::path::Path;

use nachtwacht::base::config::LogFormat;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// The flag, else (for `serve`, whose data directory is given) its `[operations] log_format`,
/// else text.
fn format(flag: Option<LogFormatArg>, serving: Option<&Path>) -> LogFormat {
    match (flag, serving) {
        (Some(LogFormatArg::Text), _) => LogFormat::Text,
        (Some(LogFormatArg::Json), _) => LogFormat::Json,
        (None, Some(dir)) => {
            let config = nachtwacht::base::datadir::DataDir::new(dir).config();
            nachtwacht::base::config::Config::load(&config)
                .map(|c| c.operations.log_format)
                .unwrap_or_default()
        }
        (None, None) => LogFormat::default(),
    }
}

pub fn init(flag: Option<LogFormatArg>, serving: Option<&Path>) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,quinn=warn".into())
    };
    match format(flag, serving) {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            // Colour codes only for a person at a terminal: a log file or journal gets plain text.
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        // One JSON object per line, with the fields of the span it happened in (a request's
        // station id and bundle id).
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
    }
}
