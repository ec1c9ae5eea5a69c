//! Operations: health, readiness, metrics, systemd notifications, drain on SIGTERM, config checks.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::delivery::cloudevent;
use crate::support::{Capture, Herald, Options, Reply, SyscallFilter, eventually};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = Herald::start().await;
    assert_eq!(
        h.request("GET", "/healthz", None, "", None).await.status,
        200
    );
    let r = h.request("GET", "/readyz", None, "", None).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("ready"))
    );
    let m = h.request("GET", "/metrics", None, "", None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text();
    for name in [
        "herald_events_received_total{source=\"sitecore\"}",
        "herald_events_rejected_total{reason=\"malformed\"}",
        "herald_deliveries_total{outcome=\"dead\"}",
        "herald_delivery_attempts_total{class=\"timeout\"}",
        "herald_retry_queue_depth",
        "herald_dead_letters",
        "herald_subscriptions",
        "herald_inflight_deliveries",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "m", "url": cap.url("/")})).await;
    assert_eq!(h.metric("herald_subscriptions").await, 1.0);
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("m-1", "a.b").to_string(),
    )
    .await;
    cap.wait_for(1, Duration::from_secs(20)).await;
    h.wait_metric(
        "herald_delivery_duration_seconds_count",
        1.0,
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_attempts_and_exits_zero() {
    // A drain timeout far past the wait below: Herald must exit as soon as the attempt in
    // flight ends (it is woken by the last one out), not when the timeout runs out.
    let mut h = Herald::start_with(Options {
        server: "drain_timeout = \"120s\"\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::with_default(Reply::status(200).delay(Duration::from_millis(800))).await;
    h.subscribe(json!({"name": "slowish", "url": cap.url("/")}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("t-1", "a.b").to_string(),
    )
    .await;
    cap.wait_for(1, Duration::from_secs(20)).await;
    let status = h.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", h.log());
    h.wait_notice("STOPPING=1", Duration::from_secs(1)).await;
    // The in-flight attempt was allowed to finish: it is delivered, not left queued.
    assert!(h.log().contains("herald stopped"), "{}", h.log());
    let h = h.restart().await;
    let v = h
        .api("GET", "/v1/deliveries?status=delivered", None)
        .await
        .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}\n{}", h.log());
    assert_eq!(cap.count(), 1, "not delivered a second time after restart");
}

#[test]
fn check_config_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nope\"\n[delivery]\nallow_networks = [\"banana\"]\ntimeout = \"0s\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen",
        "delivery.allow_networks[0]",
        "delivery.timeout",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/herald.toml");
    let ok = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check-config", shipped])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// Whether the filesystem holding `dir` is mounted with online discard, read the plain way:
/// the longest mount point of `/proc/self/mountinfo` above `dir` (this test's directories have
/// no spaces to unescape), and `discard` among its options unless `nodiscard` or btrfs's
/// `discard=async` follows it.
fn mounted_with_discard(dir: &std::path::Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut best: Option<(usize, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let point = std::path::Path::new(f[4]);
        if !dir.starts_with(point) {
            continue;
        }
        let on = line.split([' ', ',']).fold(false, |on, o| match o {
            "discard" | "discard=sync" => true,
            "nodiscard" | "discard=async" => false,
            _ => on,
        });
        let depth = point.components().count();
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, on));
        }
    }
    best.expect("a mount holds the data directory").1
}

/// A data directory on a filesystem that discards freed blocks online gets one warning at
/// start, and `herald_journal_online_discard` says which it is either way (on CI's and this
/// project's boxes the root filesystem is ext4 with `discard`, so the warning is what runs).
#[tokio::test]
async fn online_discard_under_the_data_directory_is_reported() {
    let h = Herald::start().await;
    let on = mounted_with_discard(&h.dir.path().join("data"));
    assert_eq!(
        h.metric("herald_journal_online_discard").await,
        if on { 1.0 } else { 0.0 }
    );
    let warned = h.log().contains("mounted with online discard");
    assert_eq!(warned, on, "log:\n{}", h.log());
}

/// The members of the system-call groups the systemd unit denies (`systemd-analyze
/// syscall-filter`, systemd 252), nested groups expanded. Names a given architecture lacks are
/// skipped when the filter is compiled.
const DENIED_GROUPS: &[(&str, &[&str])] = &[
    (
        "@resources",
        &[
            "ioprio_set",
            "mbind",
            "migrate_pages",
            "move_pages",
            "nice",
            "sched_setaffinity",
            "sched_setattr",
            "sched_setparam",
            "sched_setscheduler",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "setpriority",
            "setrlimit",
        ],
    ),
    (
        "@privileged",
        &[
            "_sysctl",
            "acct",
            "bpf",
            "capset",
            "chroot",
            "fanotify_init",
            "fanotify_mark",
            "nfsservctl",
            "open_by_handle_at",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "setfsuid",
            "setgroups",
            "sethostname",
            "setresuid",
            "setreuid",
            "setuid",
            "vhangup",
            "chown",
            "fchown",
            "fchownat",
            "lchown",
            "adjtimex",
            "clock_adjtime",
            "clock_settime",
            "settimeofday",
            "delete_module",
            "finit_module",
            "init_module",
            "ioperm",
            "iopl",
            "kexec_file_load",
            "kexec_load",
            "reboot",
            "swapoff",
            "swapon",
        ],
    ),
];

/// The seccomp filter `systemd/herald.service` puts Herald under, as far as Herald can notice
/// it: `@system-service` allows far more than Herald calls, so what matters is what the unit
/// denies (`~@privileged @resources`), what it allows again after that, and whether a denied
/// call kills the process (systemd's default) or fails (`SystemCallErrorNumber=`).
fn units_filter() -> SyscallFilter {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/herald.service"
    ))
    .unwrap();
    let mut denied: Vec<&str> = Vec::new();
    let mut allowed_again: Vec<&str> = Vec::new();
    let mut errno = None;
    for line in unit.lines() {
        if let Some(list) = line.strip_prefix("SystemCallFilter=~") {
            for group in list.split_whitespace() {
                let (_, names) = DENIED_GROUPS
                    .iter()
                    .find(|(g, _)| *g == group)
                    .unwrap_or_else(|| panic!("the test does not know {group}"));
                denied.extend(names.iter());
            }
        } else if let Some(list) = line.strip_prefix("SystemCallFilter=") {
            allowed_again.extend(list.split_whitespace().filter(|n| !n.starts_with('@')));
        } else if let Some(e) = line.strip_prefix("SystemCallErrorNumber=") {
            assert_eq!(e, "EPERM", "the test knows EPERM only");
            errno = Some(1);
        }
    }
    assert!(
        !denied.is_empty(),
        "the unit denies no system calls any more"
    );
    let arch: seccompiler::TargetArch = std::env::consts::ARCH.try_into().unwrap();
    let compiles = |filter: &serde_json::Value| {
        seccompiler::compile_from_json(filter.to_string().as_bytes(), arch)
    };
    let action = match errno {
        Some(e) => json!({"errno": e}),
        None => json!("kill_process"),
    };
    let rules: Vec<_> = denied
        .iter()
        .filter(|n| !allowed_again.contains(n))
        .map(|n| json!({"syscall": n}))
        // Not every name exists on every architecture.
        .filter(|rule| {
            compiles(&json!({"t": {"mismatch_action": "allow", "match_action": "log", "filter": [rule]}}))
                .is_ok()
        })
        .collect();
    let map = compiles(&json!({"main": {
        "mismatch_action": "allow",
        "match_action": action,
        "filter": rules,
    }}))
    .unwrap();
    SyscallFilter(std::sync::Arc::new(map["main"].clone()))
}

/// The nice value of each of a process's threads, by thread name.
fn thread_nice(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        out.push((name, nice));
    }
    out
}

/// Under the system-call filter of `systemd/herald.service`, Herald starts, delivers and
/// stops cleanly, and its memtable reaper still runs nicer than the rest (its `setpriority`
/// is allowed again). Before the unit allowed it, the reaper's first call killed the daemon
/// with `SIGSYS` right after READY, and systemd would have restarted it every 2 s.
#[tokio::test]
async fn the_systemd_units_syscall_filter_lets_herald_run() {
    let mut h = Herald::start_with(Options {
        syscall_filter: Some(units_filter()),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "s", "url": cap.url("/")})).await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("sc-1", "x.y").to_string(),
    )
    .await;
    cap.wait_for(1, Duration::from_secs(20)).await;
    let pid = h.pid();
    let (reaper, main) = eventually(Duration::from_secs(20), "the reaper thread", || {
        let threads = thread_nice(pid);
        let nice = |name: &str| threads.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let found = nice("herald-reaper").zip(nice("herald"));
        async move { found }
    })
    .await;
    assert!(
        reaper > main,
        "reaper at nice {reaper}, the process at {main}"
    );
    let status = h.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}; log:\n{}", h.log());
}
