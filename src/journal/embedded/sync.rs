//! The syncer thread: fsync off the writer's path (`[storage] fsync = "batch"`).
//!
//! A commit has two costs: applying the batch (CPU: the journal write and the memtable
//! inserts) and syncing it (the disk: ~4 ms here, 14 ms at p99, see PERF-NOTES). When the
//! writer did both in turn, nothing was committed while the disk synced, so every event waited
//! for the sync before it, and then for its own. Now the writer commits, answers "written"
//! (ingest hands the deliveries to the dispatcher then) and passes the commit's durability
//! waiters here; this thread syncs and answers them, while the writer is already applying the
//! next batch. Everything committed while one sync runs is covered by the next: group commit,
//! pipelined.
//!
//! fjall's own `persist(SyncAll)` holds the journal's lock for the whole fsync, which would
//! stall the writer's next commit behind it, so this thread `fdatasync`s the active journal
//! file through a descriptor of its own, outside the lock. That leans on three facts of
//! fjall, each pinned by a test below: a committed batch is already in the OS (its journal
//! buffer is flushed on commit), journals are `<data dir>/<n>.jnl` with the highest `n`
//! active, and sealing a journal (rotation) syncs it fully first. So data committed before
//! the sync starts is either in the active file, synced here, or in a sealed one, already
//! synced. Should the layout ever not be found (no `.jnl` file), the thread falls back to
//! fjall's `persist(SyncAll)`: slower, never wrong.
//!
//! Delivering before the sync is at-least-once, not a loss: an event whose sync fails (or
//! whose process dies before it) was never acknowledged, so its sender sends it again. If it
//! was already written it is then a recognized duplicate; if a power loss took it, it is new
//! again and delivered once more.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use fjall::PersistMode;

use super::Shared;
use crate::journal::JournalError;
use crate::journal::embedded::writer::Durable;
use crate::telemetry::metrics as m;

/// Waiters of one or more commits, answered by the next sync.
pub(super) type Group = Vec<Durable>;

/// The active journal file, opened for syncing.
struct ActiveJournal {
    dir: PathBuf,
    open: Option<Open>,
}

/// Journal `id`, open, and the path its successor gets when fjall rotates.
struct Open {
    id: u64,
    file: File,
    next: PathBuf,
}

impl ActiveJournal {
    /// Syncs everything committed before the call. Errors are the storage's.
    ///
    /// fjall seals journal `n` (syncing it whole) before it creates `n + 1`, and a commit sent
    /// here was written before it was sent. So while `n + 1` does not exist, `n` holds every
    /// commit to sync: one `statx` per sync instead of listing the directory (open, read it
    /// twice, close), and the list is read again only after a rotation.
    fn sync(&mut self, shared: &Shared) -> Result<(), String> {
        match self.current()? {
            Some(file) => file.sync_data().map_err(|e| e.to_string()),
            None => shared
                .db
                .persist(PersistMode::SyncAll)
                .map_err(|e| e.to_string()),
        }
    }

    /// The active journal file, opened; `None` if the directory holds no journal file.
    fn current(&mut self) -> Result<Option<&File>, String> {
        if self.open.as_ref().is_none_or(|o| o.next.exists()) {
            let Some(id) = latest_journal(&self.dir).map_err(|e| e.to_string())? else {
                self.open = None;
                return Ok(None);
            };
            if self.open.as_ref().is_none_or(|o| o.id != id) {
                let path = self.dir.join(format!("{id}.jnl"));
                let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let next = self.dir.join(format!("{}.jnl", id + 1));
                self.open = Some(Open { id, file, next });
            }
        }
        Ok(self.open.as_ref().map(|o| &o.file))
    }
}

/// The number of the newest `<n>.jnl` in `dir`: fjall's active journal.
pub(super) fn latest_journal(dir: &Path) -> std::io::Result<Option<u64>> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            latest = latest.max(Some(id));
        }
    }
    Ok(latest)
}

/// Runs until the writer drops its sender, then answers what is left and returns.
///
/// A failed fsync is final, as fjall makes its own: after one, the kernel may have dropped
/// the dirty pages it could not write, so a later fsync that succeeds proves nothing about
/// them. The journal is marked sync-failed: every later append is refused (ingest answers
/// `503`, `/readyz` fails) until Herald is restarted and recovers from what is on disk, which
/// the daemon sees to: a lost journal makes it drain and exit with an error.
pub(super) fn run(rx: Receiver<Group>, shared: Arc<Shared>, dir: PathBuf) {
    let seconds = metrics::histogram!(m::JOURNAL_SYNC_SECONDS);
    let mut journal = ActiveJournal { dir, open: None };
    let mut waiting: Vec<Durable> = Vec::new();
    while let Ok(group) = rx.recv() {
        waiting.extend(group);
        // Everything queued behind the first group shares its sync.
        while let Ok(group) = rx.try_recv() {
            waiting.extend(group);
        }
        let result = match shared.sync_failure() {
            Some(err) => Err(err),
            None => {
                let started = Instant::now();
                let synced = journal.sync(&shared);
                seconds.record(started.elapsed().as_secs_f64());
                synced.map(|()| shared.mark_write_ok()).map_err(|e| {
                    let err = JournalError::Io(format!(
                        "fsync failed ({e}); writes are refused until Herald is restarted"
                    ));
                    shared.mark_sync_failed(&err);
                    err
                })
            }
        };
        for w in waiting.drain(..) {
            w.answer(&result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_journal_is_the_highest_number() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest_journal(dir.path()).unwrap(), None);
        for name in [
            "0.jnl",
            "12.jnl",
            "3.jnl",
            "lock",
            "x.jnl",
            "keyspaces",
            "99.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(latest_journal(dir.path()).unwrap(), Some(12));
    }

    /// A sync follows fjall's rotations: it keeps the open journal while no successor exists,
    /// and moves to the newest once one does (here two rotations at once).
    #[test]
    fn the_open_journal_is_kept_until_a_successor_appears() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = ActiveJournal {
            dir: dir.path().to_path_buf(),
            open: None,
        };
        assert!(j.current().unwrap().is_none(), "no journal file yet");
        std::fs::write(dir.path().join("4.jnl"), b"").unwrap();
        let id = |j: &ActiveJournal| j.open.as_ref().map(|o| o.id);
        assert!(j.current().unwrap().is_some());
        assert_eq!(id(&j), Some(4));
        // Only the successor's name is looked at, not the directory: a later number that
        // fjall would never skip to goes unseen.
        std::fs::write(dir.path().join("6.jnl"), b"").unwrap();
        j.current().unwrap();
        assert_eq!(id(&j), Some(4));
        // Once the successor exists the directory is read again, and the newest is taken
        // (two rotations between syncs).
        std::fs::write(dir.path().join("5.jnl"), b"").unwrap();
        j.current().unwrap();
        assert_eq!(id(&j), Some(6));
        assert_eq!(j.open.as_ref().unwrap().next, dir.path().join("7.jnl"));
    }

    /// What this thread relies on: fjall keeps its journals as `<n>.jnl` in the data
    /// directory, and a committed batch is already in the newest one, in the OS, without any
    /// persist. If a new fjall changed either, this fails.
    #[test]
    fn a_commit_is_in_the_newest_journal_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let marker = b"value-7f3a9c1d-reaches-the-os";
        let mut batch = db.batch();
        batch.insert(&ks, "a", marker.as_slice());
        batch.commit().unwrap();
        let id = latest_journal(dir.path()).unwrap().expect("a journal file");
        let bytes = std::fs::read(dir.path().join(format!("{id}.jnl"))).unwrap();
        assert!(bytes.windows(marker.len()).any(|w| w == marker));
    }
}
