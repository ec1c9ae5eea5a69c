//! Nothing lost: restart recovery, kill -9 under load, dedup, replay, retention, disk trouble.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::delivery::cloudevent;
use crate::support::{Capture, Herald, Options, Reply, eventually};

const WAIT: Duration = Duration::from_secs(30);

async fn delivery_of(h: &Herald, sub: &str) -> serde_json::Value {
    let v = h
        .api("GET", &format!("/v1/deliveries?subscription={sub}"), None)
        .await
        .json();
    v["data"][0].clone()
}

#[tokio::test]
async fn retries_resume_after_kill_9_with_their_attempt_counts() {
    let mut h = Herald::start().await;
    let cap = Capture::start().await;
    cap.script([Reply::status(500)]);
    let sub = h
        .subscribe(
            json!({"name": "r", "url": cap.url("/"), "retry": {"schedule": ["2s"], "jitter": 0}}),
        )
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("k-1", "a.b").to_string(),
    )
    .await;
    let first = cap.wait_for(1, WAIT).await[0].clone();
    eventually(WAIT, "the retry to be journaled", || async {
        let d = delivery_of(&h, &sub).await;
        (d["status"] == "retrying" && d["attempts"] == 1).then_some(())
    })
    .await;
    h.kill9();
    let h = h.restart().await;
    let got = cap.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), first.header("webhook-id"));
    let gap = got[1].at - first.at;
    assert!(
        gap >= Duration::from_millis(1900),
        "the retry did not wait its time: {gap:?}"
    );
    let d = eventually(WAIT, "delivered", || async {
        let d = delivery_of(&h, &sub).await;
        (d["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!(
        d["attempts"], 2,
        "attempt count carried over the restart: {d}"
    );
    assert_eq!(cap.count(), 2);
}

#[tokio::test]
async fn a_duplicate_event_is_acknowledged_but_not_redelivered() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "d", "url": cap.url("/")})).await;
    let e = cloudevent("dup-1", "a.b").to_string();
    let a = h.ingest("/v1/events", "application/json", e.clone()).await;
    assert_eq!(a["duplicates"], json!([]));
    cap.wait_for(1, WAIT).await;
    let b = h.ingest("/v1/events", "application/json", e).await;
    assert_eq!(
        b,
        json!({"accepted": 1, "ids": ["dup-1"], "duplicates": ["dup-1"]})
    );
    // A batch repeating an id within itself: the repeat is a duplicate too.
    let batch = json!([cloudevent("dup-2", "a.b"), cloudevent("dup-2", "a.b")]).to_string();
    let c = h.ingest("/v1/events", "application/json", batch).await;
    assert_eq!(c["duplicates"], json!(["dup-2"]));
    h.wait_metric("herald_events_duplicate_total", 2.0, WAIT)
        .await;
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 2.0, WAIT)
        .await;
    assert_eq!(cap.count(), 2);
}

/// Copies of one event sent at once: one is accepted and delivered, every other copy is a
/// duplicate, whichever of them reaches the journal first (deliveries start before the
/// journal's commit only for an event no copy before it carries).
#[tokio::test]
async fn copies_sent_at_once_are_delivered_once() {
    // A commit waits 200 ms for more appends: every copy is sent before the first is stored.
    let h = Herald::start_with(Options {
        storage: "batch_window = \"200ms\"\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "c", "url": cap.url("/")})).await;
    let e = cloudevent("twin", "a.b").to_string();
    let send = || h.ingest("/v1/events", "application/json", e.clone());
    let (a, b, c, d, f, g) = tokio::join!(send(), send(), send(), send(), send(), send());
    let all = [a, b, c, d, f, g];
    let firsts = all.iter().filter(|a| a["duplicates"] == json!([])).count();
    assert_eq!(firsts, 1, "exactly one copy is new: {all:?}");
    h.wait_metric("herald_events_duplicate_total", 5.0, WAIT)
        .await;
    cap.wait_for(1, WAIT).await;
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 1.0, WAIT)
        .await;
    assert_eq!(h.metric("herald_deliveries_created_total").await, 1.0);
    // A later event is delivered after it, and nothing else came.
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("after", "a.b").to_string(),
    )
    .await;
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 2.0, WAIT)
        .await;
    assert_eq!(cap.count(), 2);
}

#[tokio::test]
async fn dead_letters_replay_one_or_by_filter() {
    let h = Herald::start().await;
    let cap = Capture::with_default(Reply::status(500)).await;
    let other = Capture::with_default(Reply::status(500)).await;
    let no_retry = json!({"schedule": [], "jitter": 0});
    let sub = h
        .subscribe(json!({"name": "a", "url": cap.url("/"), "retry": no_retry}))
        .await;
    let sub_b = h
        .subscribe(json!({"name": "b", "url": other.url("/"), "retry": no_retry}))
        .await;
    for i in 0..3 {
        h.ingest(
            "/v1/events",
            "application/json",
            cloudevent(&format!("dl-{i}"), "a.b").to_string(),
        )
        .await;
    }
    let dead = eventually(WAIT, "three dead letters", || async {
        let v = h
            .api("GET", &format!("/v1/dead-letters?subscription={sub}"), None)
            .await
            .json();
        let a = v["data"].as_array().cloned().unwrap_or_default();
        (a.len() == 3).then_some(a)
    })
    .await;
    eventually(WAIT, "b's dead letters", || async {
        let v = h
            .api(
                "GET",
                &format!("/v1/dead-letters?subscription={sub_b}"),
                None,
            )
            .await
            .json();
        (v["data"].as_array().map_or(0, |a| a.len()) == 3).then_some(())
    })
    .await;
    cap.set_default(Reply::status(200));
    // One.
    let id = dead[0]["id"].as_str().unwrap();
    let a = h
        .api("POST", &format!("/v1/dead-letters/{id}/replay"), None)
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    cap.wait_for(4, WAIT).await;
    // The rest of this subscription's, by filter; the other subscription's stay dead.
    let a = h
        .api(
            "POST",
            "/v1/dead-letters/replay",
            Some(json!({"subscription": sub})),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.json()["replayed"], 2);
    cap.wait_for(6, WAIT).await;
    eventually(WAIT, "no dead letters left for a", || async {
        let v = h
            .api("GET", &format!("/v1/dead-letters?subscription={sub}"), None)
            .await
            .json();
        (v["data"] == json!([])).then_some(())
    })
    .await;
    let v = h
        .api(
            "GET",
            &format!("/v1/dead-letters?subscription={sub_b}"),
            None,
        )
        .await
        .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(other.count(), 3);
    // Replaying something that is not a dead letter is a 404.
    let a = h.api("POST", "/v1/dead-letters/12345/replay", None).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn a_subscription_replays_journaled_events_in_a_time_range() {
    let h = Herald::start().await;
    let first = Capture::start().await;
    h.subscribe(json!({"name": "first", "url": first.url("/")}))
        .await;
    let before = jiff::Timestamp::now();
    for (i, ty) in ["page.published", "page.published", "asset.deleted"]
        .iter()
        .enumerate()
    {
        h.ingest(
            "/v1/events",
            "application/json",
            cloudevent(&format!("rp-{i}"), ty).to_string(),
        )
        .await;
    }
    first.wait_for(3, WAIT).await;
    // A subscription created later, for pages only, asks for what it missed.
    let late = Capture::start().await;
    let sub = h
        .subscribe(
            json!({"name": "late", "url": late.url("/"), "filters": [{"types": ["page.*"]}]}),
        )
        .await;
    let a = h
        .api(
            "POST",
            &format!("/v1/subscriptions/{sub}/replay"),
            Some(json!({"since": before.to_string()})),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.json()["replayed"], 2);
    let got = late.wait_for(2, WAIT).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|c| c.json()["id"].as_str().unwrap().into())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["rp-0", "rp-1"]);
    // A range before the events replays nothing.
    let hour = jiff::SignedDuration::from_secs(3600);
    let range =
        json!({"since": (before - hour * 2).to_string(), "until": (before - hour).to_string()});
    let a = h
        .api(
            "POST",
            &format!("/v1/subscriptions/{sub}/replay"),
            Some(range),
        )
        .await;
    assert_eq!(a.json()["replayed"], 0, "{}", a.text());
    let bad = h
        .api(
            "POST",
            &format!("/v1/subscriptions/{sub}/replay"),
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn retention_removes_old_delivered_records() {
    let h = Herald::start_with(Options {
        storage: "retention = \"1s\"\nretention_interval = \"200ms\"\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    let sub = h
        .subscribe(json!({"name": "ret", "url": cap.url("/")}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("old-1", "a.b").to_string(),
    )
    .await;
    cap.wait_for(1, WAIT).await;
    eventually(WAIT, "the delivered record", || async {
        (delivery_of(&h, &sub).await["status"] == "delivered").then_some(())
    })
    .await;
    eventually(WAIT, "retention to remove the record", || async {
        delivery_of(&h, &sub).await.is_null().then_some(())
    })
    .await;
    // The subscription itself is not subject to retention.
    assert_eq!(
        h.api("GET", &format!("/v1/subscriptions/{sub}"), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_full_disk_refuses_ingest_loudly() {
    let h = Herald::start_with(Options {
        storage: "min_free_bytes = 1125899906842624\n".into(),
        ..Default::default()
    })
    .await;
    let a = h
        .request(
            "POST",
            "/v1/events",
            Some("application/json"),
            cloudevent("full-1", "a.b").to_string(),
            None,
        )
        .await;
    assert_eq!(a.status, 503, "{}", a.text());
    let v = a.json();
    assert_eq!(v["error"], "unavailable");
    assert!(v["message"].as_str().unwrap().contains("full"), "{v}");
    let r = h.request("GET", "/readyz", None, "", None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(h.metric("herald_journal_healthy").await, 0.0);
    assert_eq!(
        h.metric("herald_events_rejected_total{reason=\"unavailable\"}")
            .await,
        1.0
    );
    assert!(h.metric("herald_journal_errors_total{kind=\"full\"}").await >= 1.0);
    assert!(h.log().contains("full"), "a log line says why");
}

/// Thousands of events over HTTP and the unix socket, a receiver that fails every fifth
/// request, `kill -9` mid-stream, a restart on the same data: every event that got a `202`
/// reaches every matching subscription at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_that_was_acknowledged() {
    let h = Herald::start_with(Options {
        unix_socket: true,
        ..Default::default()
    })
    .await;
    let all = Capture::start().await;
    let even = Capture::start().await;
    all.fail_every(5);
    even.fail_every(5);
    let retry = json!({"schedule": ["50ms", "100ms", "200ms", "400ms", "800ms", "1s", "1s", "1s"], "jitter": 0});
    h.subscribe(json!({"name": "all", "url": all.url("/"), "format": "raw", "retry": retry}))
        .await;
    h.subscribe(
        json!({"name": "even", "url": even.url("/"), "format": "raw", "retry": retry,
                       "filters": [{"attributes": {"shard": "even"}}]}),
    )
    .await;

    let acked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let h = Arc::new(tokio::sync::Mutex::new(Some(h)));
    let (tcp_addr, sock) = {
        let g = h.lock().await;
        let h = g.as_ref().unwrap();
        (h.addr, h.socket.clone().unwrap())
    };
    let mut senders = Vec::new();
    for lane in 0..4 {
        let acked = acked.clone();
        let sock = sock.clone();
        senders.push(tokio::spawn(async move {
            for batch in 0.. {
                let events: Vec<serde_json::Value> = (0..20)
                    .map(|i| {
                        let n = batch * 20 + i;
                        let mut e = cloudevent(&format!("l{lane}-{n}"), "load.test");
                        e["shard"] = json!(if n % 2 == 0 { "even" } else { "odd" });
                        e
                    })
                    .collect();
                let body = events
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n");
                let sent = if lane % 2 == 0 {
                    post(tcp_io(tcp_addr).await, body).await
                } else {
                    post(unix_io(&sock).await, body).await
                };
                match sent {
                    Some(202) => acked.lock().unwrap().extend(
                        events
                            .iter()
                            .map(|e| (e["id"].as_str().unwrap().to_string(), e["shard"] == "even")),
                    ),
                    _ => return, // Herald is gone.
                }
            }
        }));
    }
    // Let a few thousand through, then kill -9 in the middle of the stream.
    eventually(
        Duration::from_secs(60),
        "2000 acknowledged events",
        || async { (acked.lock().unwrap().len() >= 2000).then_some(()) },
    )
    .await;
    let mut herald = h.lock().await.take().unwrap();
    herald.kill9();
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    let herald = herald.restart().await;

    let want_all: HashSet<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();
    let want_even: HashSet<&str> = acked
        .iter()
        .filter(|(_, e)| *e)
        .map(|(id, _)| id.as_str())
        .collect();
    let ok_ids = |cap: &Capture| -> HashMap<String, usize> {
        // Only requests answered 2xx count as delivered; count repeats for the duplicate rate.
        let mut n: HashMap<String, usize> = HashMap::new();
        for (i, c) in cap.captured().iter().enumerate() {
            if (i + 1) % 5 == 0 {
                continue; // answered 500 (every fifth request)
            }
            *n.entry(c.json()["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        n
    };
    eventually(
        Duration::from_secs(90),
        "every acknowledged event at every matching subscription",
        || async {
            let a = ok_ids(&all);
            let e = ok_ids(&even);
            let missing_all = want_all.iter().filter(|id| !a.contains_key(**id)).count();
            let missing_even = want_even.iter().filter(|id| !e.contains_key(**id)).count();
            (missing_all == 0 && missing_even == 0).then_some(())
        },
    )
    .await;
    let a = ok_ids(&all);
    let e = ok_ids(&even);
    let is_even = |id: &str| {
        let n: u64 = id.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap();
        n.is_multiple_of(2)
    };
    assert!(
        e.keys().all(|id| is_even(id)),
        "an odd event reached the even subscription"
    );
    let delivered: usize = a.values().sum::<usize>() + e.values().sum::<usize>();
    let unique = a.len() + e.len();
    let dup_rate = (delivered - unique) as f64 / unique as f64;
    eprintln!(
        "crash test: {} acknowledged events, {} unique deliveries, {} successful requests, duplicate rate {:.2}%",
        acked.len(),
        unique,
        delivered,
        dup_rate * 100.0
    );
    drop(herald);
}

async fn tcp_io(
    addr: std::net::SocketAddr,
) -> Option<hyper_util::rt::TokioIo<tokio::net::TcpStream>> {
    tokio::net::TcpStream::connect(addr)
        .await
        .ok()
        .map(hyper_util::rt::TokioIo::new)
}

async fn unix_io(
    path: &std::path::Path,
) -> Option<hyper_util::rt::TokioIo<tokio::net::UnixStream>> {
    tokio::net::UnixStream::connect(path)
        .await
        .ok()
        .map(hyper_util::rt::TokioIo::new)
}

/// Posts NDJSON; `None` when the connection fails (the daemon was killed).
async fn post<I>(io: Option<I>, body: String) -> Option<u16>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::Full;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io?).await.ok()?;
    tokio::spawn(conn);
    let req = http::Request::post("/v1/events")
        .header("host", "herald")
        .header("content-type", "application/x-ndjson")
        .body(Full::new(bytes::Bytes::from(body)))
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    Some(resp.status().as_u16())
}

/// A tiny memory window forces nearly the whole backlog onto disk: everything still arrives,
/// once, after the endpoint recovers, and retries of spilled deliveries are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_memory_window_is_delivered_from_disk() {
    let h = Herald::start_with(Options {
        storage: "memory_window = 4\n".into(),
        delivery: "max_in_flight_per_endpoint = 2\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    // The endpoint is down for its first 60 requests.
    cap.script((0..60).map(|_| Reply::status(503)));
    h.subscribe(json!({"name": "backlog", "url": cap.url("/"), "format": "raw",
                       "retry": {"schedule": ["20ms", "40ms", "80ms", "160ms", "320ms", "640ms"], "jitter": 0}}))
        .await;
    let lines: Vec<String> = (0..300)
        .map(|i| cloudevent(&format!("bl-{i}"), "a.b").to_string())
        .collect();
    h.ingest("/v1/events", "application/x-ndjson", lines.join("\n"))
        .await;
    h.wait_metric(
        "herald_deliveries_total{outcome=\"delivered\"}",
        300.0,
        Duration::from_secs(60),
    )
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in cap.captured().iter().skip(60) {
        *seen
            .entry(c.json()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 300, "every event arrived");
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(repeats, 0, "no event was delivered twice");
    assert_eq!(
        h.metric("herald_deliveries_total{outcome=\"dead\"}").await,
        0.0
    );
    assert_eq!(h.metric("herald_pending_deliveries").await, 0.0);
    // Everything past the window (4) was read back from the store, at least once.
    assert!(h.metric("herald_delivery_refills_total").await >= 1.0);
    let rows = h.metric("herald_delivery_refill_rows_total").await;
    assert!(rows >= 296.0, "{rows} queue rows read back");
}

/// Events keep arriving, from concurrent requests, while an endpoint is spilled: refills read
/// on from a cursor and a pass from the start picks up what was queued behind it, so every
/// event still arrives exactly once and the endpoint's queue empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_during_a_spill_are_all_delivered_once() {
    let h = Herald::start_with(Options {
        storage: "memory_window = 8\n".into(),
        delivery: "max_in_flight_per_endpoint = 2\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::with_default(Reply::status(200).delay(Duration::from_millis(2))).await;
    h.subscribe(json!({"name": "spill", "url": cap.url("/"), "format": "raw"}))
        .await;
    let h = std::sync::Arc::new(h);
    let senders: Vec<_> = (0..8)
        .map(|r| {
            let h = h.clone();
            tokio::spawn(async move {
                for b in 0..5 {
                    let lines: Vec<String> = (0..10)
                        .map(|i| cloudevent(&format!("sp-{r}-{b}-{i}"), "a.b").to_string())
                        .collect();
                    h.ingest("/v1/events", "application/x-ndjson", lines.join("\n"))
                        .await;
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let got = cap.wait_for(400, Duration::from_secs(60)).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in &got {
        *seen
            .entry(c.json()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 400, "every event arrived");
    assert!(seen.values().all(|&n| n == 1), "no event arrived twice");
    h.wait_metric("herald_pending_deliveries", 0.0, Duration::from_secs(10))
        .await;
}

/// Twenty subscriptions whose receiver is down for a while, a memory budget of 40 deliveries:
/// together the endpoints hold about the budget (each at least its share of it, 40 / 20), the
/// rest waits on disk and is read back, and once the receiver is up every delivery arrives
/// exactly once and memory is empty again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_bounds_what_all_endpoints_hold_together() {
    const SUBS: usize = 20;
    const EVENTS: usize = 50;
    const BUDGET: f64 = 40.0;
    let h = Herald::start_with(Options {
        storage: "memory_budget = 40\n".into(),
        delivery: "max_in_flight_per_endpoint = 2\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    cap.script((0..300).map(|_| Reply::status(503)));
    for i in 0..SUBS {
        h.subscribe(json!({"name": format!("b{i}"), "url": cap.url(&format!("/s{i}")), "format": "raw",
                           "retry": {"schedule": ["50ms", "100ms", "200ms", "400ms", "800ms", "1600ms"], "jitter": 0}}))
            .await;
    }
    let lines: Vec<String> = (0..EVENTS)
        .map(|i| cloudevent(&format!("mb-{i}"), "a.b").to_string())
        .collect();
    h.ingest("/v1/events", "application/x-ndjson", lines.join("\n"))
        .await;
    let total = (SUBS * EVENTS) as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut most_held: f64 = 0.0;
    loop {
        most_held = most_held.max(h.metric("herald_deliveries_in_memory").await);
        let done = h
            .metric("herald_deliveries_total{outcome=\"delivered\"}")
            .await;
        if done >= total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {total} delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The budget, plus each endpoint's share past it (and an admission or two in a race).
    assert!(
        most_held <= 2.0 * BUDGET + 4.0,
        "{most_held} deliveries held at once"
    );
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for c in cap.captured().iter().skip(300) {
        let id = c.json()["id"].as_str().unwrap().to_string();
        *seen.entry((c.path.clone(), id)).or_default() += 1;
    }
    assert_eq!(seen.len(), SUBS * EVENTS, "every delivery arrived");
    assert!(seen.values().all(|&n| n == 1), "none arrived twice");
    // What did not fit was read back from the store.
    let rows = h.metric("herald_delivery_refill_rows_total").await;
    assert!(rows >= total - 2.0 * BUDGET, "{rows} queue rows read back");
    eventually(
        Duration::from_secs(10),
        "memory and queues empty",
        || async {
            let pending = h.metric("herald_pending_deliveries").await;
            let held = h.metric("herald_deliveries_in_memory").await;
            (pending == 0.0 && held == 0.0).then_some(())
        },
    )
    .await;
}

/// Past the budget, an endpoint that holds its share waits for room before it reads more
/// back from disk. When another endpoint's delivery leaves memory it is woken at once, not when
/// its own next retry comes due (an hour here).
#[tokio::test]
async fn room_in_the_memory_budget_wakes_an_endpoint_waiting_for_it() {
    const WAIT: Duration = Duration::from_secs(20);
    let h = Herald::start_with(Options {
        storage: "memory_budget = 4\n".into(),
        delivery: "max_in_flight_per_endpoint = 1\n".into(),
        ..Default::default()
    })
    .await;
    let a = Capture::with_default(Reply::status(503)).await;
    let c = Capture::with_default(Reply::status(503)).await;
    let hour = json!({"schedule": ["1h"], "jitter": 0});
    h.subscribe(
        json!({"name": "a", "url": a.url("/"), "filters": [{"types": ["t.a"]}], "retry": hour}),
    )
    .await;
    let c_id = h
        .subscribe(
            json!({"name": "c", "url": c.url("/"), "filters": [{"types": ["t.c"]}], "retry": hour}),
        )
        .await;
    let event = |id: &str, ty: &str| cloudevent(id, ty).to_string();
    // Two each, failed once: four deliveries wait an hour in memory, and the budget is spent.
    let first = [
        event("a-0", "t.a"),
        event("a-1", "t.a"),
        event("c-0", "t.c"),
        event("c-1", "t.c"),
    ];
    h.ingest("/v1/events", "application/x-ndjson", first.join("\n"))
        .await;
    a.wait_for(2, WAIT).await;
    c.wait_for(2, WAIT).await;
    h.wait_metric("herald_retry_queue_depth", 4.0, WAIT).await;
    h.wait_metric("herald_deliveries_in_memory", 4.0, WAIT)
        .await;
    // a holds its share (4 / 2): its next event stays on disk, and a waits for room.
    h.ingest("/v1/events", "application/json", event("a-2", "t.a"))
        .await;
    h.wait_metric("herald_endpoints_awaiting_memory", 1.0, WAIT)
        .await;
    assert_eq!(h.metric("herald_deliveries_in_memory").await, 4.0);
    assert_eq!(a.count(), 2);
    // One of c's deliveries, run now against a receiver that is back, leaves memory.
    c.set_default(Reply::status(200));
    let listed = h
        .api(
            "GET",
            &format!("/v1/deliveries?subscription={c_id}&status=retrying"),
            None,
        )
        .await;
    let id = listed.json()["data"][0]["id"].as_str().unwrap().to_string();
    let retried = h
        .api("POST", &format!("/v1/deliveries/{id}/retry"), None)
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text());
    c.wait_for(3, WAIT).await;
    // The room goes to a, which reads a-2 back and attempts it.
    let got = a.wait_for(3, WAIT).await;
    assert_eq!(got[2].json()["id"], "a-2");
}

/// When the store poisons itself, no write can succeed again until a restart (fjall's word).
/// Here the events keyspace's tables directory (empty until its first flush) disappears, so
/// that flush fails: Herald drains and exits with an error, for its supervisor to restart it,
/// and the restart, with the directory back, has every event it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_journal_makes_herald_exit_and_a_restart_recovers() {
    let mut h = Herald::start().await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("kept", "keep").to_string(),
    )
    .await;
    // Keyspace 1 is `events`, the first one the journal creates.
    let tables = h.dir.path().join("data/keyspaces/1/tables");
    assert_eq!(std::fs::read_dir(&tables).unwrap().count(), 0);
    std::fs::remove_dir(&tables).unwrap();
    // 1 MiB events, 8 a request, until the events memtable passes Herald's rotation (60 MiB)
    // and the flush fails.
    let big = "x".repeat(1 << 20);
    let mut refused = false;
    for b in 0..16 {
        let lines: Vec<String> = (0..8)
            .map(|i| {
                json!({"specversion": "1.0", "id": format!("big-{b}-{i}"), "source": "/cms/test",
                       "type": "big", "data": {"x": big}})
                .to_string()
            })
            .collect();
        let a = h
            .request(
                "POST",
                "/v1/events",
                Some("application/x-ndjson"),
                lines.join("\n"),
                None,
            )
            .await;
        if a.status != 202 {
            assert_eq!(a.status, 503, "{}", a.text());
            refused = true;
            break;
        }
    }
    assert!(refused, "the store never failed; log:\n{}", h.log());
    let status = h.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "{status:?}");
    assert!(
        h.log().contains("the journal cannot write any more"),
        "{}",
        h.log()
    );
    std::fs::create_dir(&tables).unwrap();
    let h = h.restart().await;
    let again = h
        .ingest(
            "/v1/events",
            "application/json",
            cloudevent("kept", "keep").to_string(),
        )
        .await;
    assert_eq!(again["duplicates"], json!(["kept"]), "{again}");
}
