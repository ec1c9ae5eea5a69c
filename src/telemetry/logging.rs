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
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(effective_filter(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A bare level (`"info"`) applies to Herald's own lines; the libraries under it (the storage
/// engine, hyper, rustls) log at `warn` so their routine chatter does not drown Herald's. A full
/// filter (`"info,fjall=debug"`) is used as written.
pub fn effective_filter(level: &str) -> String {
    if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        format!("warn,herald={level}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_levels_apply_to_herald_only() {
        assert_eq!(effective_filter("info"), "warn,herald=info");
        assert_eq!(effective_filter("debug"), "warn,herald=debug");
        assert_eq!(effective_filter("info,fjall=debug"), "info,fjall=debug");
        assert_eq!(effective_filter("herald=trace"), "herald=trace");
    }
}
