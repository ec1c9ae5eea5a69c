//! The TOML file as written: every key optional, strings where the value needs parsing
//! (durations, CIDRs, addresses). `validate` turns this into the resolved `Config`.
//!
//! Unknown keys are not rejected by serde here (that would stop at the first one); the loader
//! collects all of them with `serde_ignored` and reports each as an error, so `check-config`
//! lists every mistake in one run.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub storage: RawStorage,
    pub ingest: RawIngest,
    pub auth: RawAuth,
    pub delivery: RawDelivery,
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub listen: Option<String>,
    pub unix_socket: Option<String>,
    pub unix_socket_mode: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub max_batch_items: Option<u64>,
    pub max_json_depth: Option<u64>,
    pub worker_threads: Option<u64>,
    pub drain_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawStorage {
    pub path: Option<String>,
    pub fsync: Option<String>,
    pub batch_window: Option<String>,
    pub batch_max_events: Option<u64>,
    pub retention: Option<String>,
    pub retention_interval: Option<String>,
    pub memory_window: Option<u64>,
    pub memory_budget: Option<u64>,
    pub cache_bytes: Option<u64>,
    pub min_free_bytes: Option<u64>,
    pub queue_write_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawIngest {
    pub dedup_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAuth {
    pub admin_tokens: Option<Vec<String>>,
    pub ingest_tokens: Option<Vec<String>>,
    pub tokens: Option<Vec<RawScopedToken>>,
}

/// `[[auth.tokens]]`: a management token limited to some tenants.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawScopedToken {
    pub token: Option<String>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDelivery {
    pub allow_networks: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub max_in_flight_per_endpoint: Option<u64>,
    pub max_in_flight_per_origin: Option<u64>,
    pub lane_linger: Option<String>,
    pub retry_schedule: Option<Vec<String>>,
    pub retry_jitter: Option<f64>,
    pub max_response_body_bytes: Option<u64>,
    pub user_agent: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_origin: Option<u64>,
    pub max_connections: Option<u64>,
    pub ca_files: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}
