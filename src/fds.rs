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
//! is far higher) and, if the three still do not fit, lowers all three in proportion, each
//! above a floor, and says so. A limit too small for even the floors is an error: better not to
//! start than to poison the journal later.

use std::fmt;

/// Open table files the store keeps cached (fjall's own default on Linux), unless the limit is
/// too small for it. A table not in the cache is reopened when read.
pub const STORE_CACHED_FILES: usize = 900;

/// Descriptors for everything else: the store's journal, version and directory handles, the
/// listeners, the runtime's epoll and event descriptors, stdio, `/proc` and mount reads.
pub const OTHER_FILES: usize = 124;

/// The floors when the limits are lowered to fit: the store's cache, and each connection limit.
pub const MIN_STORE_FILES: usize = 64;
pub const MIN_CONNECTIONS: usize = 16;

/// The limits that fit the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `[server] max_connections` to use.
    pub server: usize,
    /// `[delivery] max_connections` to use.
    pub delivery: usize,
    /// Open table files the store may cache.
    pub store_files: usize,
    /// The wanted limits did not fit and were lowered.
    pub shrunk: bool,
}

/// The descriptor limit is too small even for the floors.
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

/// Fits the two connection limits and the store's cache into `limit` descriptors, leaving
/// [`OTHER_FILES`]. What does not fit is lowered: each keeps its floor (or what was asked, if
/// less), and the room above the floors is shared in proportion to what each asked above
/// its floor. Pure: the policy, tested on its own.
pub fn plan(
    limit: u64,
    server: usize,
    delivery: usize,
    store_files: usize,
) -> Result<Plan, TooFew> {
    let needed = (OTHER_FILES + MIN_STORE_FILES + 2 * MIN_CONNECTIONS) as u64;
    if limit < needed {
        return Err(TooFew { limit, needed });
    }
    let room = usize::try_from(limit - OTHER_FILES as u64).unwrap_or(usize::MAX);
    let wanted = [server, delivery, store_files];
    if wanted.iter().fold(0usize, |a, &n| a.saturating_add(n)) <= room {
        return Ok(Plan {
            server,
            delivery,
            store_files,
            shrunk: false,
        });
    }
    let floors = [
        server.min(MIN_CONNECTIONS),
        delivery.min(MIN_CONNECTIONS),
        store_files.min(MIN_STORE_FILES),
    ];
    let above: Vec<u128> = wanted
        .iter()
        .zip(floors)
        .map(|(&w, f)| (w - f) as u128)
        .collect();
    let spare = (room - floors.iter().sum::<usize>()) as u128;
    let total_above: u128 = above.iter().sum();
    let fit: Vec<usize> = floors
        .iter()
        .zip(&above)
        .map(|(&f, &a)| f + (spare * a / total_above.max(1)) as usize)
        .collect();
    Ok(Plan {
        server: fit[0],
        delivery: fit[1],
        store_files: fit[2],
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

    fn fits(p: &Plan, limit: u64) -> bool {
        (p.server + p.delivery + p.store_files + OTHER_FILES) as u64 <= limit
    }

    #[test]
    fn limits_that_fit_are_kept() {
        let p = plan(65_536, 1024, 2048, 900).unwrap();
        assert_eq!(
            p,
            Plan {
                server: 1024,
                delivery: 2048,
                store_files: 900,
                shrunk: false
            }
        );
        // Exactly at the edge.
        let p = plan((OTHER_FILES + 1024 + 2048 + 900) as u64, 1024, 2048, 900).unwrap();
        assert!(!p.shrunk);
    }

    #[test]
    fn limits_that_do_not_fit_shrink_in_proportion_above_their_floors() {
        // A shell's usual 1,024: room for 900 of the 3,972 asked.
        let p = plan(1024, 1024, 2048, 900).unwrap();
        assert!(p.shrunk && fits(&p, 1024), "{p:?}");
        assert_eq!((p.server, p.delivery, p.store_files), (225, 437, 237));
        let p = plan(1500, 1024, 2048, 900).unwrap();
        assert!(p.shrunk && fits(&p, 1500), "{p:?}");
        assert_eq!((p.server, p.delivery, p.store_files), (348, 687, 340));
    }

    #[test]
    fn a_shrunk_limit_keeps_its_floor() {
        let least = (OTHER_FILES + MIN_STORE_FILES + 2 * MIN_CONNECTIONS) as u64;
        let p = plan(least, 10_000, 10_000, 900).unwrap();
        assert_eq!(
            (p.server, p.delivery, p.store_files),
            (MIN_CONNECTIONS, MIN_CONNECTIONS, MIN_STORE_FILES)
        );
        // Asked below the floor: kept as asked; the rest goes to the others.
        let p = plan(least + 100, 10, 10_000, 900).unwrap();
        assert!(fits(&p, least + 100), "{p:?}");
        assert_eq!(p.server, 10);
        assert!(p.delivery > MIN_CONNECTIONS && p.store_files > MIN_STORE_FILES);
    }

    #[test]
    fn a_limit_below_the_floors_is_an_error() {
        let e = plan(200, 1024, 2048, 900).unwrap_err();
        assert_eq!(e.limit, 200);
        assert_eq!(
            e.needed,
            (OTHER_FILES + MIN_STORE_FILES + 2 * MIN_CONNECTIONS) as u64
        );
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
