//! Raw → validated. Every check pushes to one error list instead of returning early.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::RawConfig;
use super::{
    AuthConfig, Config, DeliveryConfig, FsyncMode, IngestConfig, LogConfig, ScopedToken,
    ServerConfig, StorageConfig, defaults,
};
use crate::model::{RetryPolicy, Secret};
use crate::telemetry::logging::LogFormat;

/// Every key the loader understands, `section.key`. The shipped `config/herald.toml` must
/// document each (a unit test checks).
// Only the test reads it so far.
#[cfg_attr(not(test), allow(dead_code))]
pub const KNOWN_KEYS: &[&str] = &[
    "server.listen",
    "server.unix_socket",
    "server.unix_socket_mode",
    "server.max_body_bytes",
    "server.max_batch_items",
    "server.max_json_depth",
    "server.worker_threads",
    "server.drain_timeout",
    "server.header_read_timeout",
    "server.max_connections",
    "storage.path",
    "storage.fsync",
    "storage.batch_window",
    "storage.batch_max_events",
    "storage.retention",
    "storage.retention_interval",
    "storage.memory_window",
    "storage.memory_budget",
    "storage.cache_bytes",
    "storage.min_free_bytes",
    "storage.queue_write_after",
    "ingest.dedup_window",
    "auth.admin_tokens",
    "auth.ingest_tokens",
    "auth.tokens",
    "delivery.allow_networks",
    "delivery.timeout",
    "delivery.connect_timeout",
    "delivery.max_in_flight_per_endpoint",
    "delivery.max_in_flight_per_origin",
    "delivery.lane_linger",
    "delivery.retry_schedule",
    "delivery.retry_jitter",
    "delivery.max_response_body_bytes",
    "delivery.user_agent",
    "delivery.pool_idle_timeout",
    "delivery.pool_max_idle_per_origin",
    "delivery.max_connections",
    "delivery.ca_files",
    "log.format",
    "log.level",
];

/// One problem, with the key it is about (`""` for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// All problems found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, key: &str, msg: impl Into<String>) {
        self.0.push(ConfigError::new(key, msg));
    }

    fn duration(&mut self, key: &str, v: Option<&str>, default: &str, min: Duration) -> Duration {
        self.duration_within(key, v, default, min, Duration::MAX)
    }

    fn duration_within(
        &mut self,
        key: &str,
        v: Option<&str>,
        default: &str,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let s = v.unwrap_or(default);
        match humantime::parse_duration(s) {
            Ok(d) if d < min => {
                self.push(key, format!("`{s}` is too short: at least {min:?}"));
                humantime::parse_duration(default).unwrap_or(min)
            }
            Ok(d) if d > max => {
                self.push(key, format!("`{s}` is too long: at most {max:?}"));
                humantime::parse_duration(default).unwrap_or(max)
            }
            Ok(d) => d,
            Err(e) => {
                self.push(
                    key,
                    format!("`{s}` is not a duration ({e}); write e.g. \"500ms\", \"5s\", \"2h\", \"7d\""),
                );
                humantime::parse_duration(default).unwrap_or(min)
            }
        }
    }

    fn count(&mut self, key: &str, v: Option<u64>, default: u64, min: u64, max: u64) -> usize {
        let n = v.unwrap_or(default);
        if n < min || n > max {
            self.push(key, format!("{n} is out of range: {min}..={max}"));
            return default as usize;
        }
        n as usize
    }
}

fn is_local(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

pub(super) fn validate(raw: RawConfig, unknown: &[String]) -> Result<Config, ConfigErrors> {
    let mut errs = Errors(Vec::new());
    for key in unknown {
        errs.push(key, "unknown key");
    }

    // [server]
    let s = raw.server;
    let listen = match s.listen.as_deref().unwrap_or(defaults::LISTEN) {
        "" => None,
        text => match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(
                    "server.listen",
                    format!("`{text}` is not an address:port such as \"127.0.0.1:8470\" (\"\" disables TCP)"),
                );
                None
            }
        },
    };
    let unix_socket = s.unix_socket.filter(|p| !p.is_empty()).map(PathBuf::from);
    if listen.is_none()
        && unix_socket.is_none()
        && s.listen.as_deref().is_some_and(|l| l.is_empty())
    {
        errs.push(
            "server.listen",
            "no listener: set `listen` or `unix_socket`",
        );
    }
    let mode_text = s
        .unix_socket_mode
        .as_deref()
        .unwrap_or(defaults::UNIX_SOCKET_MODE);
    let unix_socket_mode = match u32::from_str_radix(mode_text, 8) {
        Ok(m) if m <= 0o777 => m,
        _ => {
            errs.push(
                "server.unix_socket_mode",
                format!("`{mode_text}` is not an octal file mode such as \"0660\""),
            );
            0o660
        }
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let worker_threads = match errs.count("server.worker_threads", s.worker_threads, 0, 0, 1024) {
        0 => cpus,
        n => n,
    };
    let server = ServerConfig {
        listen,
        unix_socket,
        unix_socket_mode,
        max_body_bytes: errs.count(
            "server.max_body_bytes",
            s.max_body_bytes,
            defaults::MAX_BODY_BYTES,
            1024,
            1 << 30,
        ),
        max_batch_items: errs.count(
            "server.max_batch_items",
            s.max_batch_items,
            defaults::MAX_BATCH_ITEMS,
            1,
            1_000_000,
        ),
        max_json_depth: errs.count(
            "server.max_json_depth",
            s.max_json_depth,
            defaults::MAX_JSON_DEPTH,
            2,
            1024,
        ),
        worker_threads,
        drain_timeout: errs.duration(
            "server.drain_timeout",
            s.drain_timeout.as_deref(),
            defaults::DRAIN_TIMEOUT,
            Duration::ZERO,
        ),
        header_read_timeout: errs.duration(
            "server.header_read_timeout",
            s.header_read_timeout.as_deref(),
            defaults::HEADER_READ_TIMEOUT,
            Duration::from_millis(100),
        ),
        max_connections: errs.count(
            "server.max_connections",
            s.max_connections,
            defaults::SERVER_MAX_CONNECTIONS,
            1,
            1_000_000,
        ),
    };

    // [storage]
    let st = raw.storage;
    let fsync_text = st.fsync.as_deref().unwrap_or(defaults::FSYNC);
    let fsync = match fsync_text {
        "batch" => FsyncMode::Batch,
        "always" => FsyncMode::Always,
        "never" => FsyncMode::Never,
        other => {
            errs.push(
                "storage.fsync",
                format!("`{other}` is not one of \"batch\", \"always\", \"never\""),
            );
            FsyncMode::Batch
        }
    };
    let path = st.path.as_deref().unwrap_or(defaults::STORAGE_PATH);
    if path.is_empty() {
        errs.push("storage.path", "must not be empty");
    }
    let storage = StorageConfig {
        path: PathBuf::from(path),
        fsync,
        batch_window: errs.duration(
            "storage.batch_window",
            st.batch_window.as_deref(),
            defaults::BATCH_WINDOW,
            Duration::ZERO,
        ),
        batch_max_events: errs.count(
            "storage.batch_max_events",
            st.batch_max_events,
            defaults::BATCH_MAX_EVENTS,
            1,
            1_000_000,
        ),
        retention: errs.duration(
            "storage.retention",
            st.retention.as_deref(),
            defaults::RETENTION,
            Duration::from_secs(1),
        ),
        retention_interval: errs.duration(
            "storage.retention_interval",
            st.retention_interval.as_deref(),
            defaults::RETENTION_INTERVAL,
            Duration::from_millis(100),
        ),
        memory_window: errs.count(
            "storage.memory_window",
            st.memory_window,
            defaults::MEMORY_WINDOW,
            2,
            1_000_000,
        ),
        memory_budget: errs.count(
            "storage.memory_budget",
            st.memory_budget,
            defaults::MEMORY_BUDGET,
            1,
            1 << 32,
        ),
        cached_files: crate::fds::STORE_CACHED_FILES,
        cache_bytes: errs.count(
            "storage.cache_bytes",
            st.cache_bytes,
            defaults::CACHE_BYTES,
            1024 * 1024,
            1 << 40,
        ) as u64,
        min_free_bytes: errs.count(
            "storage.min_free_bytes",
            st.min_free_bytes,
            defaults::MIN_FREE_BYTES,
            0,
            1 << 50,
        ) as u64,
        queue_write_after: errs.duration_within(
            "storage.queue_write_after",
            st.queue_write_after.as_deref(),
            defaults::QUEUE_WRITE_AFTER,
            Duration::ZERO,
            defaults::MAX_QUEUE_WRITE_AFTER,
        ),
    };

    // [ingest]
    let ingest = IngestConfig {
        dedup_window: errs.duration(
            "ingest.dedup_window",
            raw.ingest.dedup_window.as_deref(),
            defaults::DEDUP_WINDOW,
            Duration::ZERO,
        ),
    };

    // [auth]
    let mut tokens = |key: &str, list: Option<Vec<String>>| -> Vec<Secret> {
        let list = list.unwrap_or_default();
        for (i, t) in list.iter().enumerate() {
            if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errs.push(
                    &format!("{key}[{i}]"),
                    "a token must be at least 16 characters with no spaces",
                );
            }
        }
        list.into_iter().map(Secret::from).collect()
    };
    let admin_tokens = tokens("auth.admin_tokens", raw.auth.admin_tokens);
    let ingest_tokens = tokens("auth.ingest_tokens", raw.auth.ingest_tokens);
    let mut scoped_tokens = Vec::new();
    for (i, t) in raw.auth.tokens.unwrap_or_default().into_iter().enumerate() {
        let key = format!("auth.tokens[{i}]");
        let token = match t.token {
            Some(tok)
                if tok.len() >= 16 && !tok.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                Secret::from(tok)
            }
            Some(_) => {
                errs.push(
                    &format!("{key}.token"),
                    "a token must be at least 16 characters with no spaces",
                );
                continue;
            }
            None => {
                errs.push(&format!("{key}.token"), "is required");
                continue;
            }
        };
        let mut scopes = Vec::new();
        let raw_scopes = t.scopes.unwrap_or_default();
        if raw_scopes.is_empty() {
            errs.push(
                &format!("{key}.scopes"),
                "needs at least one scope such as \"space:Production\", \"project:website\" or \"site:12345\" (a token for everything goes in admin_tokens)",
            );
        }
        for (j, sc) in raw_scopes.iter().enumerate() {
            match parse_scope(sc) {
                Some(t) => scopes.push(t),
                None => errs.push(
                    &format!("{key}.scopes[{j}]"),
                    format!("`{sc}` is not `space:NAME`, `project:ID` or `site:ID`"),
                ),
            }
        }
        scoped_tokens.push(ScopedToken { token, scopes });
    }
    let auth = AuthConfig {
        admin_tokens,
        ingest_tokens,
        scoped_tokens,
    };
    if auth.admin_tokens.is_empty()
        && auth.scoped_tokens.is_empty()
        && server.listen.as_ref().is_some_and(|a| !is_local(a))
    {
        errs.push(
            "auth.admin_tokens",
            "the management API would be open to the network: set admin_tokens, or listen on a loopback address",
        );
    }

    // [delivery]
    let d = raw.delivery;
    let mut allow_networks = Vec::new();
    for (i, text) in d.allow_networks.unwrap_or_default().iter().enumerate() {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(n) => allow_networks.push(n),
            Err(_) => errs.push(
                &format!("delivery.allow_networks[{i}]"),
                format!("`{text}` is not a CIDR such as \"10.0.0.0/8\" or an address"),
            ),
        }
    }
    let timeout = errs.duration(
        "delivery.timeout",
        d.timeout.as_deref(),
        defaults::TIMEOUT,
        Duration::from_millis(10),
    );
    let connect_timeout = errs.duration(
        "delivery.connect_timeout",
        d.connect_timeout.as_deref(),
        defaults::CONNECT_TIMEOUT,
        Duration::from_millis(10),
    );
    let schedule_text: Vec<String> = d.retry_schedule.unwrap_or_else(|| {
        defaults::RETRY_SCHEDULE
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let mut schedule = Vec::with_capacity(schedule_text.len());
    for (i, text) in schedule_text.iter().enumerate() {
        match humantime::parse_duration(text) {
            Ok(dur) => schedule.push(dur),
            Err(e) => errs.push(
                &format!("delivery.retry_schedule[{i}]"),
                format!("`{text}` is not a duration ({e})"),
            ),
        }
    }
    if schedule.len() > 100 {
        errs.push("delivery.retry_schedule", "at most 100 retries");
    }
    let jitter = d.retry_jitter.unwrap_or(defaults::RETRY_JITTER);
    if !(0.0..=1.0).contains(&jitter) {
        errs.push(
            "delivery.retry_jitter",
            format!("{jitter} is out of range: 0.0..=1.0"),
        );
    }
    let user_agent = d.user_agent.unwrap_or_else(defaults::user_agent);
    if user_agent.is_empty() || http::HeaderValue::from_str(&user_agent).is_err() {
        errs.push(
            "delivery.user_agent",
            "must be a non-empty, valid header value",
        );
    }
    let mut extra_roots_pem = Vec::new();
    let ca_files: Vec<PathBuf> = d
        .ca_files
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    for (i, p) in ca_files.iter().enumerate() {
        match std::fs::read(p) {
            Ok(pem) if pem.windows(11).any(|w| w == b"-----BEGIN ") => extra_roots_pem.push(pem),
            Ok(_) => errs.push(
                &format!("delivery.ca_files[{i}]"),
                format!("{} holds no PEM certificate", p.display()),
            ),
            Err(e) => errs.push(
                &format!("delivery.ca_files[{i}]"),
                format!("cannot read {}: {e}", p.display()),
            ),
        }
    }
    let delivery = DeliveryConfig {
        allow_networks,
        timeout,
        connect_timeout,
        max_in_flight_per_endpoint: errs.count(
            "delivery.max_in_flight_per_endpoint",
            d.max_in_flight_per_endpoint,
            defaults::MAX_IN_FLIGHT_PER_ENDPOINT,
            1,
            10_000,
        ),
        max_in_flight_per_origin: errs.count(
            "delivery.max_in_flight_per_origin",
            d.max_in_flight_per_origin,
            defaults::MAX_IN_FLIGHT_PER_ORIGIN,
            1,
            1_000_000,
        ),
        lane_linger: errs.duration(
            "delivery.lane_linger",
            d.lane_linger.as_deref(),
            defaults::LANE_LINGER,
            Duration::ZERO,
        ),
        retry: RetryPolicy {
            schedule,
            jitter: jitter.clamp(0.0, 1.0),
        },
        max_response_body_bytes: errs.count(
            "delivery.max_response_body_bytes",
            d.max_response_body_bytes,
            defaults::MAX_RESPONSE_BODY_BYTES,
            0,
            64 * 1024 * 1024,
        ),
        user_agent,
        pool_idle_timeout: errs.duration(
            "delivery.pool_idle_timeout",
            d.pool_idle_timeout.as_deref(),
            defaults::POOL_IDLE_TIMEOUT,
            Duration::from_millis(100),
        ),
        pool_max_idle_per_origin: errs.count(
            "delivery.pool_max_idle_per_origin",
            d.pool_max_idle_per_origin,
            defaults::POOL_MAX_IDLE_PER_ORIGIN,
            0,
            100_000,
        ),
        max_connections: errs.count(
            "delivery.max_connections",
            d.max_connections,
            defaults::DELIVERY_MAX_CONNECTIONS,
            1,
            1_000_000,
        ),
        extra_roots_pem,
        ca_files,
    };

    // [log]
    let format = match raw.log.format.as_deref().unwrap_or(defaults::LOG_FORMAT) {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => {
            errs.push(
                "log.format",
                format!("`{other}` is not one of \"human\", \"json\""),
            );
            LogFormat::Human
        }
    };
    let level = raw
        .log
        .level
        .unwrap_or_else(|| defaults::LOG_LEVEL.to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        errs.push(
            "log.level",
            format!("`{level}` is not a level or filter such as \"info\" or \"herald=debug\""),
        );
    }
    let log = LogConfig { format, level };

    if errs.0.is_empty() {
        Ok(Config {
            server,
            storage,
            ingest,
            auth,
            delivery,
            log,
        })
    } else {
        Err(ConfigErrors(errs.0))
    }
}

/// `space:NAME`, `project:ID`, `site:ID` → a tenant.
fn parse_scope(s: &str) -> Option<crate::model::Tenant> {
    use crate::model::{Tenant, TenantKind};
    let (kind, name) = s.split_once(':')?;
    let kind = match kind {
        "space" => TenantKind::Space,
        "project" => TenantKind::Project,
        "site" => TenantKind::Site,
        _ => return None,
    };
    (!name.is_empty()).then(|| Tenant {
        kind,
        name: name.to_string(),
    })
}
