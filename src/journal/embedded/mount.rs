//! Whether the data directory's filesystem discards freed blocks as it frees them.
//!
//! fjall deletes files as it works: a write-ahead journal file once its memtables are flushed,
//! tables after a compaction. On a filesystem mounted with online discard (ext4's `discard`,
//! XFS's `discard`, btrfs's `discard=sync`), the commit of the filesystem's own journal that
//! frees those blocks sends the device a TRIM for them and waits for it, and every `fsync`
//! that needs that commit waits too: the syncer's, which the `202` of `fsync = "batch"` waits
//! for. On the load bench's box (ext4 with `discard` on a virtual disk), three rounds of
//! fan-out 1, mounted each way in turn: 5–9 of the journal's syncs per run took over 16 ms with
//! `discard` and none without; in the ingest phases, 3–6 against none. Running `fstrim` now and
//! then (systemd's `fstrim.timer`) tells the device the same thing, off the write path.
//! Giving a deleted journal's blocks back a few MiB at a time instead (held open, truncated in
//! steps) made each sync cheaper but the half-rate p99 worse: more deliveries waited on many
//! small TRIMs than on one large one (README, Figures).
//!
//! Herald cannot change a mount, so at start it reads `/proc/self/mountinfo`, finds the mount
//! that holds the data directory and, if it discards online, says so once in the log and in
//! the `herald_journal_online_discard` gauge.

use std::path::{Path, PathBuf};

/// The mount that holds a path, as `/proc/self/mountinfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The filesystem type (`ext4`, `xfs`, …).
    pub fs_type: String,
    /// The mounted device or source.
    pub source: String,
    /// Whether freed blocks are discarded as they are freed (see the module docs).
    pub online_discard: bool,
}

/// The mount holding `dir` (an absolute, canonical path) among `mountinfo`'s lines: the one
/// with the longest mount point that `dir` is at or under; of mounts stacked on one point, the
/// last listed, which is the one on top. `None` if no line parses or none holds it.
pub fn mount_of(mountinfo: &str, dir: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some(m) = parse_line(line) else { continue };
        if !dir.starts_with(&m.point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| m.point.components().count() >= b.point.components().count());
        if longer {
            best = Some(m);
        }
    }
    best
}

/// One `/proc/<pid>/mountinfo` line: `id parent major:minor root point options [optional
/// fields…] - type source super-options` (proc(5)).
fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let point = l.nth(4)?;
    let options = l.next()?;
    let mut r = right.split(' ');
    let fs_type = r.next()?;
    let source = r.next()?;
    let super_options = r.next().unwrap_or("");
    Some(Mount {
        point: PathBuf::from(unescape(point)),
        fs_type: unescape(fs_type),
        source: unescape(source),
        online_discard: online_discard(options.split(',').chain(super_options.split(','))),
    })
}

/// Whether a mount's options (per-mount, then the filesystem's) turn online discard on: the
/// last of `discard`, `discard=sync` (on), `nodiscard` and `discard=async` (off) decides.
/// btrfs's asynchronous discard batches its TRIMs off the commit, so it does not count.
fn online_discard<'a>(options: impl Iterator<Item = &'a str>) -> bool {
    options.fold(false, |on, o| match o {
        "discard" | "discard=sync" => true,
        "nodiscard" | "discard=async" => false,
        _ => on,
    })
}

/// A mountinfo field with the kernel's octal escapes (`\040` for a space, `\011` a tab, `\012`
/// a newline, `\134` a backslash) turned back into bytes.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `dir` on this machine (`None` where `/proc/self/mountinfo` cannot be
/// read, or `dir` cannot be resolved).
pub fn mount_holding(dir: &Path) -> Option<Mount> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_of(&info, &dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
40 27 8:1 / /var/lib rw,noatime shared:5 - xfs /dev/sdb1 rw,attr2,inode64
41 40 8:2 / /var/lib/herald\\040data rw,noatime master:3 - btrfs /dev/sdc rw,discard=async
42 27 0:30 / /srv rw - ext4 /dev/sdd rw,discard
43 27 0:31 / /srv rw - ext4 /dev/sde rw,nodiscard
44 27 0:32 / /data rw - btrfs /dev/sdf rw,discard=sync
";

    fn at(path: &str) -> Mount {
        mount_of(INFO, Path::new(path)).expect("a mount")
    }

    #[test]
    fn the_longest_mount_point_holding_the_path_is_its_mount() {
        assert_eq!(at("/tmp/herald").point, PathBuf::from("/"));
        assert_eq!(at("/var/lib/x").fs_type, "xfs");
        // A mount point is matched by whole components: /var/libx is not under /var/lib.
        assert_eq!(at("/var/libx").point, PathBuf::from("/"));
        assert_eq!(at("/var/lib").source, "/dev/sdb1");
    }

    #[test]
    fn escaped_mount_points_are_matched_as_the_kernel_names_them() {
        let m = at("/var/lib/herald data/journal");
        assert_eq!(m.point, PathBuf::from("/var/lib/herald data"));
        assert_eq!(m.fs_type, "btrfs");
        assert_eq!(unescape(r"a\134b\011c\0"), "a\\b\tc\\0");
    }

    #[test]
    fn online_discard_is_the_last_word_of_the_mount_and_filesystem_options() {
        // ext4 lists `discard` among the filesystem's options.
        assert!(at("/tmp").online_discard);
        assert!(!at("/var/lib/x").online_discard);
        // btrfs's asynchronous discard is off the commit.
        assert!(!at("/var/lib/herald data").online_discard);
        assert!(at("/data/h").online_discard, "btrfs discard=sync");
        // Of two mounts on /srv the later is on top, and it does not discard.
        let srv = at("/srv/h");
        assert_eq!(srv.source, "/dev/sde");
        assert!(!srv.online_discard);
        assert!(!online_discard(["discard", "nodiscard"].into_iter()));
        assert!(online_discard(["nodiscard", "discard"].into_iter()));
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        assert_eq!(mount_of("garbage\n\n", Path::new("/")), None);
        assert_eq!(mount_of("1 2 3 4 /x - ext4", Path::new("/x")), None);
    }
}
