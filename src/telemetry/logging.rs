//! Logging set-up: `tracing` to stderr (journald picks it up under systemd), human or JSON.
//! `RUST_LOG` overrides the configured level so an operator can turn on one module's debug lines
//! without editing the config.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), which
/// keeps tests that start several daemons in one process simple.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
