//! File descriptors: Herald's budget of them, checked once at start.
//!
//! Every client connection, every delivery connection and every file of the store is a file
//! descriptor, and they all come out of one per-process limit (`RLIMIT_NOFILE`). When it runs
//! out, whoever asks next fails with `EMFILE`, and when that is the store's worker opening a
//! table for a compaction, fjall poisons the database: every later write fails, ingest answers
//! `503` until Herald is restarted. Seen with 2,000 subscriptions to a closed port and the
//! limit at 20,000: each subscription's lanes dialled at once, 32,000 sockets were wanted, and
//! the journal stopped accepting within seconds.
//!
//! So nothing that grows with load gets descriptors without a bound: the server serves at most
//! `[server] max_connections` clients (more wait in the listen backlog), delivery keeps at most
//! `[delivery] max_connections` connections open (attempts beyond wait for one), and the store
//! caches at most [`STORE_CACHED_FILES`] open tables. At start Herald raises its soft limit to
//! the hard one (a process may; a shell's default soft limit is often 1,024 while the hard one
//! is far higher) and, if the two connection limits and the store's share still do not fit,
//! lowers both connection limits in proportion and says so. A limit too small for even the
//! store is an error: better not to start than to poison the journal later.

use std::fmt;

/// Open table files fjall keeps cached (its own default on Linux, set explicitly so the budget
/// names it). A table not in the cache is reopened when read.
pub const STORE_CACHED_FILES: usize = 900;

/// Descriptors for everything else: the store's journal, version and directory handles, the
/// listeners, the runtime's epoll and event descriptors, stdio, `/proc` and mount reads.
pub const OTHER_FILES: usize = 124;

/// Each connection limit is kept at least this high when they are shrunk to fit.
pub const MIN_CONNECTIONS: usize = 16;

/// The connection limits that fit the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `[server] max_connections` to use.
    pub server: usize,
    /// `[delivery] max_connections` to use.
    pub delivery: usize,
    /// The configured limits did not fit and were lowered.
    pub shrunk: bool,
}

/// The descriptor limit is too small for the store and the smallest connection limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFew {
    pub limit: u64,
    pub needed: u64,
}

impl fmt::Display for TooFew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the open-file limit is {} but Herald needs at least {} (raise LimitNOFILE, or \
             `ulimit -n`)",
            self.limit, self.needed
        )
    }
}

impl std::error::Error for TooFew {}

/// Fits the configured connection limits into `limit` descriptors, leaving the store's and the
/// rest's share. Pure: the policy, tested on its own.
pub fn plan(limit: u64, server: usize, delivery: usize) -> Result<Plan, TooFew> {
    let reserved = (STORE_CACHED_FILES + OTHER_FILES) as u64;
    let needed = reserved + 2 * MIN_CONNECTIONS as u64;
    if limit < needed {
        return Err(TooFew { limit, needed });
    }
    let room = usize::try_from(limit - reserved).unwrap_or(usize::MAX);
    if server.saturating_add(delivery) <= room {
        return Ok(Plan {
            server,
            delivery,
            shrunk: false,
        });
    }
    // In proportion, neither below the minimum (unless configured below it); the room holds
    // both minimums.
    let total = server as u128 + delivery as u128;
    let share = ((room as u128 * server as u128) / total) as usize;
    let server_fit = share
        .max(MIN_CONNECTIONS)
        .min(room - MIN_CONNECTIONS)
        .min(server);
    let delivery_fit = (room - server_fit).min(delivery);
    Ok(Plan {
        server: server_fit,
        delivery: delivery_fit,
        shrunk: true,
    })
}

/// Raises the soft open-file limit to the hard one and returns the soft limit in force after.
/// Best effort: if the limit cannot be raised, the current one is returned.
pub fn raise_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // Linux never allows more than `fs.nr_open`, 1,048,576 by default, whatever the hard limit.
    const NR_OPEN: u64 = 1 << 20;
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(u64::MAX);
    let maximum = now.maximum.unwrap_or(NR_OPEN);
    if current >= maximum {
        return current;
    }
    let raised = Rlimit {
        current: Some(maximum),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => maximum,
        Err(e) => {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
            current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESERVED: u64 = (STORE_CACHED_FILES + OTHER_FILES) as u64;

    #[test]
    fn limits_that_fit_are_kept() {
        let p = plan(65_536, 1024, 2048).unwrap();
        assert_eq!(
            p,
            Plan {
                server: 1024,
                delivery: 2048,
                shrunk: false
            }
        );
        // Exactly at the edge.
        let p = plan(RESERVED + 3072, 1024, 2048).unwrap();
        assert!(!p.shrunk);
    }

    #[test]
    fn limits_that_do_not_fit_shrink_in_proportion() {
        // Room for 2,048 connections of the 3,072 asked.
        let p = plan(RESERVED + 2048, 1024, 2048).unwrap();
        assert!(p.shrunk);
        assert_eq!(p.server + p.delivery, 2048);
        assert_eq!(p.server, 682);
        assert_eq!(p.delivery, 1366);
    }

    #[test]
    fn a_shrunk_limit_keeps_the_minimum() {
        let p = plan(RESERVED + 2 * MIN_CONNECTIONS as u64, 10_000, 10).unwrap();
        assert!(p.shrunk);
        assert_eq!(p.server, MIN_CONNECTIONS);
        // Configured below the minimum: kept as it is.
        assert_eq!(p.delivery, 10);
        let p = plan(RESERVED + 2 * MIN_CONNECTIONS as u64, 10, 10_000).unwrap();
        assert_eq!((p.server, p.delivery), (10, 2 * MIN_CONNECTIONS - 10));
    }

    #[test]
    fn a_limit_below_the_store_share_is_an_error() {
        let e = plan(1024, 1024, 2048).unwrap_err();
        assert_eq!(e.limit, 1024);
        assert_eq!(e.needed, RESERVED + 2 * MIN_CONNECTIONS as u64);
        assert!(e.to_string().contains("LimitNOFILE"), "{e}");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let got = raise_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, Some(got));
        if let Some(max) = now.maximum {
            assert_eq!(got, max);
        }
    }
}
