//! Configuration: one TOML file → a validated [`Config`] with every default resolved.
//!
//! `raw` mirrors the file (everything optional); `validate` checks it and collects *every* error
//! with its key (vector's habit), so `herald check-config` reports all mistakes in one run and
//! the daemon never starts on a half-valid file. After validation nothing is optional that the
//! runtime would have to unwrap. `config/herald.toml` in the repository documents each key with
//! its default; a test keeps the two in step.

mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::model::{RetryPolicy, Secret};
use crate::telemetry::logging::LogFormat;

pub use validate::{ConfigError, ConfigErrors};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub auth: AuthConfig,
    pub delivery: DeliveryConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP listener; `None` when `listen = ""` (unix socket only).
    pub listen: Option<SocketAddr>,
    pub unix_socket: Option<PathBuf>,
    /// File mode applied to the unix socket after binding.
    pub unix_socket_mode: u32,
    /// Request bodies above this get `413`.
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
    pub max_json_depth: usize,
    /// Tokio worker threads; resolved from the CPU count when the file says 0.
    pub worker_threads: usize,
    /// How long `SIGTERM` waits for in-flight attempts before exiting.
    pub drain_timeout: Duration,
    /// A client that has not sent its request head within this is disconnected.
    pub header_read_timeout: Duration,
    /// Client connections (TCP and unix socket together) served at once; further ones wait in
    /// the listen backlog. Part of Herald's file-descriptor budget (`crate::fds`).
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Group commit: many events, one fsync, then the `202`s.
    Batch,
    /// One fsync per ingest request (still one per request, not per event).
    Always,
    /// Never fsync: an acknowledged event survives a process crash (it is in the OS page cache)
    /// but not a power loss.
    Never,
}

impl FsyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncMode::Batch => "batch",
            FsyncMode::Always => "always",
            FsyncMode::Never => "never",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub fsync: FsyncMode,
    /// With `fsync = "batch"`: how long the writer waits for more events before committing.
    /// Zero commits as soon as the writer is free (everything that arrived during the previous
    /// fsync goes into the next one).
    pub batch_window: Duration,
    /// Upper bound on events in one commit.
    pub batch_max_events: usize,
    /// Delivered events and the delivery log are removed after this.
    pub retention: Duration,
    /// How often the retention sweep runs.
    pub retention_interval: Duration,
    /// Deliveries held in memory per endpoint; the rest of a backlog stays on disk.
    pub memory_window: usize,
    /// Deliveries held in memory across all endpoints (each may still hold its fair share of
    /// it); the rest stays on disk.
    pub memory_budget: usize,
    /// Block cache of the embedded store.
    pub cache_bytes: u64,
    /// Open table files the store keeps cached. Not a key of the file: `crate::fds` fits it
    /// into the open-file limit at start.
    pub cached_files: usize,
    /// Appends are refused (`503`) while free space under `path` is below this, so the disk
    /// never fills mid-write; delivering what is stored goes on. 0 disables the check.
    pub min_free_bytes: u64,
    /// A fresh delivery's queue entry is written only once the delivery has been open this
    /// long (or a spilled endpoint reads its queue back): most end sooner and never cost one
    /// (`journal/embedded/deferred.rs`). Start-up after a crash reads back up to this much of
    /// the latest events.
    pub queue_write_after: Duration,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// An event whose `(source, id)` was accepted within this window is acknowledged again but
    /// not delivered twice.
    pub dedup_window: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Bearer tokens for the management API. Empty: the API is open, which validation allows
    /// only when every listener is local (loopback TCP or the unix socket).
    pub admin_tokens: Vec<Secret>,
    /// Bearer tokens for ingest. Empty: ingest is open.
    pub ingest_tokens: Vec<Secret>,
    /// Management tokens limited to tenants (`[[auth.tokens]]`): they see and change only the
    /// subscriptions of their scopes (Sitecore space, Contensis project, DatoCMS site).
    pub scoped_tokens: Vec<ScopedToken>,
}

/// A management token limited to some tenants.
#[derive(Debug, Clone)]
pub struct ScopedToken {
    pub token: Secret,
    pub scopes: Vec<crate::model::Tenant>,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Networks delivery may reach although they are private, loopback, link-local, ….
    pub allow_networks: Vec<IpNet>,
    /// Total time for one attempt (connect, send, response head and capped body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Concurrent attempts per endpoint (subscription).
    pub max_in_flight_per_endpoint: usize,
    /// Concurrent attempts per origin (scheme, host, port) across every subscription
    /// (`deliver/origin.rs`).
    pub max_in_flight_per_origin: usize,
    /// How long an endpoint's idle lane waits for more work before it ends (zero: it ends at
    /// once).
    pub lane_linger: Duration,
    /// Default retry policy for subscriptions that do not set their own.
    pub retry: RetryPolicy,
    pub max_response_body_bytes: usize,
    pub user_agent: String,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_origin: usize,
    /// Delivery connections open at once across every subscription, in flight and idle
    /// together; an attempt beyond it waits for one. Part of Herald's file-descriptor budget
    /// (`crate::fds`).
    pub max_connections: usize,
    /// Extra trusted CA certificates (PEM contents, read at validation).
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Where those came from (for `check-config` output and logs).
    pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// The built-in defaults, used for every key the file leaves out (and for `herald serve` with no
/// file at all).
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8470";
    pub const UNIX_SOCKET_MODE: &str = "0660";
    pub const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
    pub const MAX_BATCH_ITEMS: u64 = 10_000;
    pub const MAX_JSON_DEPTH: u64 = 64;
    pub const DRAIN_TIMEOUT: &str = "30s";
    pub const HEADER_READ_TIMEOUT: &str = "10s";
    pub const SERVER_MAX_CONNECTIONS: u64 = 1024;
    pub const STORAGE_PATH: &str = "./herald-data";
    pub const FSYNC: &str = "batch";
    pub const BATCH_WINDOW: &str = "0s";
    pub const BATCH_MAX_EVENTS: u64 = 8192;
    pub const RETENTION: &str = "7d";
    pub const RETENTION_INTERVAL: &str = "10m";
    pub const MEMORY_WINDOW: u64 = 1024;
    pub const MEMORY_BUDGET: u64 = 262_144;
    pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;
    pub const MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;
    pub const QUEUE_WRITE_AFTER: &str = "1s";
    /// What the writer keeps in memory grows with it: ~24 bytes per delivery made in it while
    /// one older is still open (~115 MB at 80,000 deliveries a second for a minute), and so does
    /// what start-up after a crash reads back.
    pub const MAX_QUEUE_WRITE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
    pub const DEDUP_WINDOW: &str = "24h";
    pub const TIMEOUT: &str = "30s";
    pub const CONNECT_TIMEOUT: &str = "10s";
    pub const MAX_IN_FLIGHT_PER_ENDPOINT: u64 = 16;
    pub const MAX_IN_FLIGHT_PER_ORIGIN: u64 = 256;
    pub const LANE_LINGER: &str = "25ms";
    pub const RETRY_SCHEDULE: [&str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];
    pub const RETRY_JITTER: f64 = 0.2;
    pub const MAX_RESPONSE_BODY_BYTES: u64 = 64 * 1024;
    pub const POOL_IDLE_TIMEOUT: &str = "90s";
    pub const POOL_MAX_IDLE_PER_ORIGIN: u64 = 512;
    pub const DELIVERY_MAX_CONNECTIONS: u64 = 2048;
    pub const LOG_FORMAT: &str = "human";
    pub const LOG_LEVEL: &str = "info";

    pub fn user_agent() -> String {
        format!("Herald/{}", env!("CARGO_PKG_VERSION"))
    }
}

impl Config {
    /// The configuration with no file: every key at its default.
    pub fn defaults() -> Config {
        validate::validate(raw::RawConfig::default(), &[]).expect("the built-in defaults are valid")
    }

    /// Parses and validates TOML text. Every problem is reported, each with its key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigError::new("", e.to_string().trim().to_string())])
        })?;
        let raw: raw::RawConfig = serde_ignored::deserialize(de, |path| {
            unknown.push(path.to_string());
        })
        .map_err(|e| {
            // A type error stops deserialization; toml's message quotes the offending line.
            ConfigErrors(vec![ConfigError::new("", e.to_string().trim().to_string())])
        })?;
        validate::validate(raw, &unknown)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?;
        Config::from_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = Config::defaults();
        assert_eq!(c.server.listen, Some("127.0.0.1:8470".parse().unwrap()));
        assert_eq!(c.storage.path, PathBuf::from("./herald-data"));
        assert_eq!(c.storage.fsync, FsyncMode::Batch);
        assert_eq!(c.storage.min_free_bytes, 256 * 1024 * 1024);
        assert_eq!(c.delivery.retry.schedule.len(), 7);
        assert_eq!(c.delivery.retry.schedule[0], Duration::from_secs(5));
        assert!(c.auth.admin_tokens.is_empty());
        assert!(c.server.worker_threads >= 1);
    }

    #[test]
    fn reports_every_error_with_its_key() {
        let text = r#"
            [server]
            listen = "nope"
            lisen = "typo"
            [storage]
            fsync = "sometimes"
            [delivery]
            allow_networks = ["10.0.0.0/8", "banana"]
            retry_schedule = ["5s", "soon"]
            timeout = "0s"
            [extra]
            x = 1
        "#;
        let errs = Config::from_toml(text).unwrap_err().0;
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for want in [
            "server.listen",
            "server.lisen",
            "storage.fsync",
            "delivery.allow_networks[1]",
            "delivery.retry_schedule[1]",
            "delivery.timeout",
            "extra",
        ] {
            assert!(keys.contains(&want), "missing {want} in {keys:?}");
        }
    }

    #[test]
    fn queue_write_after_is_bounded() {
        assert_eq!(
            Config::defaults().storage.queue_write_after,
            Duration::from_secs(1)
        );
        let c = Config::from_toml("[storage]\nqueue_write_after = \"0s\"\n").unwrap();
        assert_eq!(c.storage.queue_write_after, Duration::ZERO);
        let c = Config::from_toml("[storage]\nqueue_write_after = \"1m\"\n").unwrap();
        assert_eq!(c.storage.queue_write_after, Duration::from_secs(60));
        for (v, want) in [("61s", "too long"), ("soon", "not a duration")] {
            let errs = Config::from_toml(&format!("[storage]\nqueue_write_after = \"{v}\"\n"))
                .unwrap_err();
            assert!(
                errs.0
                    .iter()
                    .any(|e| e.key == "storage.queue_write_after" && e.message.contains(want)),
                "{v}: {errs:?}"
            );
        }
    }

    #[test]
    fn min_free_bytes_is_checked_and_zero_disables() {
        let c = Config::from_toml("[storage]\nmin_free_bytes = 0\n").unwrap();
        assert_eq!(c.storage.min_free_bytes, 0);
        let errs = Config::from_toml("[storage]\nmin_free_bytes = 2251799813685248\n")
            .unwrap_err()
            .0;
        assert!(
            errs.iter().any(|e| e.key == "storage.min_free_bytes"),
            "{errs:?}"
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let errs = Config::from_toml("[server]\nmax_body_bytes = \"big\"\n")
            .unwrap_err()
            .0;
        assert!(
            errs[0].message.contains("max_body_bytes = \"big\""),
            "{errs:?}"
        );
        assert!(errs[0].message.contains("line 2"), "{errs:?}");
    }

    #[test]
    fn scoped_tokens_parse_and_are_checked() {
        let c = Config::from_toml(
            "[[auth.tokens]]\ntoken = \"scoped-token-0123456789\"\nscopes = [\"space:Production\", \"project:website\"]\n",
        )
        .unwrap();
        assert_eq!(c.auth.scoped_tokens.len(), 1);
        assert_eq!(c.auth.scoped_tokens[0].scopes[1].name, "website");
        let errs = Config::from_toml(
            "[[auth.tokens]]\ntoken = \"short\"\n[[auth.tokens]]\ntoken = \"scoped-token-0123456789\"\nscopes = [\"planet:mars\"]\n",
        )
        .unwrap_err()
        .0;
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"auth.tokens[0].token"), "{keys:?}");
        assert!(keys.contains(&"auth.tokens[1].scopes[0]"), "{keys:?}");
    }

    #[test]
    fn open_admin_api_needs_local_listeners() {
        let errs = Config::from_toml("[server]\nlisten = \"0.0.0.0:8470\"\n")
            .unwrap_err()
            .0;
        assert!(
            errs.iter().any(|e| e.key == "auth.admin_tokens"),
            "{errs:?}"
        );
        let ok = Config::from_toml(
            "[server]\nlisten = \"0.0.0.0:8470\"\n[auth]\nadmin_tokens = [\"0123456789abcdef\"]\n",
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn shipped_config_file_is_valid_and_complete() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/herald.toml");
        let text = std::fs::read_to_string(&path).expect("config/herald.toml exists");
        Config::from_toml(&text).expect("config/herald.toml is valid");
        // Every key the loader knows is documented in the shipped file.
        for key in validate::KNOWN_KEYS {
            let (section, name) = key.split_once('.').unwrap();
            let in_section = text
                .split("\n[")
                .find(|s| s.starts_with(&format!("{section}]")))
                .unwrap_or_else(|| panic!("section [{section}] missing"));
            assert!(
                in_section.contains(&format!("\n{name} ="))
                    || in_section.contains(&format!("\n# {name} ="))
                    || in_section.contains(&format!("\n# [[{key}]]")),
                "key {key} is not documented in config/herald.toml"
            );
        }
    }
}
