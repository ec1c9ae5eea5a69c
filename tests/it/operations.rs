//! Operations: health, readiness, metrics, systemd notifications, drain on SIGTERM, config checks.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::delivery::cloudevent;
use crate::support::{Capture, Herald, Options, Reply};

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
