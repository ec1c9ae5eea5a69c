//! The reaper thread: frees flushed memtables outside fjall's locks.
//!
//! When fjall has flushed a memtable to disk it drops it while holding the keyspace's version
//! lock, and every commit waits for that lock. A 60 MiB memtable is hundreds of thousands of
//! skip-list nodes, each with its key and value: freeing them took ~180 ms of CPU on the load
//! bench (fan-out 10, seen with strace: fjall's worker made no system call for 182 ms after the
//! flush, while the writer waited on the lock), and every event in flight waited that long
//! for its commit. The half-rate p99 went from ~6 ms to 170–400 ms once Herald was fast enough
//! for a flush to fall inside the measured seconds.
//!
//! So this thread keeps a reference to each keyspace's active memtable, looked at every
//! [`TICK`]. Once a keyspace has a new one (whoever rotated it: Herald at
//! `MEMTABLE_ROTATE_BYTES`, or fjall to bound its journal), the old one is *retired*: fjall's
//! drop then only decrements a count, and the reaper frees the memtable on its next tick after
//! fjall let go of it, holding no lock. A memtable rotated and flushed within one tick is
//! missed and freed by fjall as before; only small ones are that quick.
//!
//! Freeing is not urgent, but it is not cheap either: a full memtable took the reaper ~300 ms of
//! CPU (a walk of scattered skip-list nodes, five frees per entry), right when fjall's worker
//! takes a core to flush the next keyspace. On the 2-core load bench the two together
//! overloaded the machine and the half-rate p99 rose to 40–570 ms over a 10-second window with
//! a flush in it. So the reaper runs [`NICENESS`] steps nicer than the process: it takes idle
//! CPU first and yields to the threads events wait on, but still gets ~10 % of a contended
//! core, so flushed memtables are freed within seconds even under full load (memory stays
//! bounded). Measured in one A/B session (fan-out 1, `--duration 10`, the builds interleaved):
//! p99 at half rate 43 / 571 / 59 ms without, 10–38 ms (median ~23) in twelve rounds with.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fjall::AbstractTree as _;

use super::Shared;

/// How often the reaper looks at the keyspaces' memtables. A flush of a big memtable takes
/// hundreds of milliseconds, so this catches every rotation worth catching.
pub(super) const TICK: Duration = Duration::from_millis(20);

/// How much nicer than the process the reaper runs (Linux nice steps; 10 is a weight of ~1/10).
pub(super) const NICENESS: i32 = 10;

/// A memtable, type-erased (fjall does not name lsm-tree's type); only its count matters here.
pub(super) type Held = Arc<dyn Any + Send + Sync>;

/// The references the reaper keeps: per keyspace, its active memtable (id and reference),
/// and the retired ones fjall may still hold.
#[derive(Default)]
pub(super) struct Reaper {
    active: Vec<Option<(u64, Held)>>,
    retired: Vec<Held>,
}

impl Reaper {
    /// Takes note of each keyspace's current memtable (`current[i]` for keyspace `i`), retires
    /// the ones replaced since the last look, and frees the retired ones nobody else holds.
    /// Returns how many it freed.
    pub(super) fn tick(&mut self, current: impl IntoIterator<Item = (u64, Held)>) -> usize {
        for (i, (id, mt)) in current.into_iter().enumerate() {
            if self.active.len() <= i {
                self.active.resize_with(i + 1, || None);
            }
            match &self.active[i] {
                Some((held, _)) if *held == id => {}
                _ => {
                    if let Some((_, old)) = self.active[i].replace((id, mt)) {
                        self.retired.push(old);
                    }
                }
            }
        }
        let before = self.retired.len();
        // Dropping the last reference frees the memtable, here.
        self.retired.retain(|mt| Arc::strong_count(mt) > 1);
        before - self.retired.len()
    }

    /// Retired memtables not freed yet.
    #[cfg(test)]
    pub(super) fn retired(&self) -> usize {
        self.retired.len()
    }
}

/// Runs until `stop` is dropped (or sent to).
pub(super) fn run(shared: Arc<Shared>, stop: Receiver<()>) {
    if let Err(e) = lower_priority(NICENESS) {
        tracing::debug!(error = %e, "journal: the memtable reaper keeps the process's priority");
    }
    let mut reaper = Reaper::default();
    loop {
        let freed = reaper.tick(shared.ks.all().map(|ks| {
            let mt = ks.tree.active_memtable();
            (mt.id(), mt as Held)
        }));
        if freed > 0 {
            tracing::debug!(freed, "journal: freed flushed memtables");
        }
        match stop.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Makes the calling thread `steps` nicer than it is (at most 19). On Linux a thread id is a
/// process id to `setpriority`, which sets that thread alone.
fn lower_priority(steps: i32) -> std::io::Result<()> {
    let me = Some(rustix::thread::gettid());
    let now = rustix::process::getpriority_process(me)?;
    rustix::process::setpriority_process(me, (now + steps).min(19))?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn held(n: u8) -> Held {
        Arc::new(vec![n; 16])
    }

    /// The nice value of a thread of this process (field 19 of its `stat`).
    fn nice_of(tid: &str) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    fn my_tid() -> String {
        rustix::thread::gettid().as_raw_nonzero().to_string()
    }

    /// The nice value of the process's thread named `comm`, once there is one.
    pub(in crate::journal::embedded) fn nice_of_thread(comm: &str) -> Option<i32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == comm)
            })
            .map(|t| nice_of(&t.file_name().to_string_lossy()))
    }

    #[test]
    fn lowering_the_priority_affects_the_calling_thread_only() {
        let before = nice_of(&my_tid());
        let own = std::thread::scope(|s| {
            s.spawn(|| {
                lower_priority(NICENESS).unwrap();
                nice_of(&my_tid())
            })
            .join()
            .unwrap()
        });
        assert_eq!(own, (before + NICENESS).min(19));
        assert_eq!(
            nice_of(&my_tid()),
            before,
            "the test's own thread is untouched"
        );
    }

    #[test]
    fn a_replaced_memtable_is_freed_here_once_nobody_else_holds_it() {
        let mut r = Reaper::default();
        let (a, b) = (held(1), held(2));
        assert_eq!(r.tick([(1, a.clone()), (7, b.clone())]), 0);
        // Keyspace 0 rotated: its old memtable is retired, but the store still holds it.
        let a2 = held(3);
        assert_eq!(r.tick([(2, a2.clone()), (7, b.clone())]), 0);
        assert_eq!(r.retired(), 1);
        assert_eq!(Arc::strong_count(&a), 2, "the reaper keeps a reference");
        // Still held elsewhere: kept.
        assert_eq!(r.tick([(2, a2.clone()), (7, b.clone())]), 0);
        // The store let go: the reaper's is the last reference, and it frees it.
        let weak = Arc::downgrade(&a);
        drop(a);
        assert_eq!(r.tick([(2, a2.clone()), (7, b.clone())]), 1);
        assert_eq!(r.retired(), 0);
        assert!(weak.upgrade().is_none(), "freed by the reaper");
        // An unchanged memtable is never retired, however often it is seen.
        assert_eq!(r.tick([(2, a2), (7, b)]), 0);
        assert_eq!(r.retired(), 0);
    }
}
