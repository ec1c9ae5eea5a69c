//! Connections are file descriptors: delivery and the server each keep to their limit, and
//! the limits are fitted to the process's open-file limit at start (`herald::fds`).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::delivery::cloudevent;
use crate::support::{Capture, Herald, Options, Reply, eventually};

const WAIT: Duration = Duration::from_secs(20);

fn events(prefix: &str, ty: &str, n: usize) -> String {
    (0..n)
        .map(|i| cloudevent(&format!("{prefix}-{i}"), ty).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Four subscriptions with three lanes each want twelve connections at once to a slow
/// receiver; `max_connections = 4` holds delivery to four, and every delivery still arrives.
#[tokio::test]
async fn delivery_keeps_to_its_connection_limit() {
    let h = Herald::start_with(Options {
        delivery: "max_connections = 4\nmax_in_flight_per_endpoint = 3\n".into(),
        ..Default::default()
    })
    .await;
    let slow = Capture::with_default(Reply::status(200).delay(Duration::from_millis(300))).await;
    for i in 0..4 {
        h.subscribe(json!({"name": format!("s{i}"), "url": slow.url(&format!("/s{i}"))}))
            .await;
    }
    h.ingest("/v1/events", "application/x-ndjson", events("c", "x.y", 8))
        .await;
    slow.wait_for(32, WAIT).await;
    assert_eq!(
        slow.most_concurrent(),
        4,
        "requests held at once by the receiver"
    );
    assert!(
        h.metric("herald_delivery_connection_waits_total").await > 0.0,
        "the lanes beyond the limit waited"
    );
    let open = h.metric("herald_delivery_connections").await;
    assert!(open <= 4.0, "{open} delivery connections open");
}

/// Four subscriptions to one receiver, three lanes each, with `max_in_flight_per_origin = 2`:
/// the receiver never holds more than two requests at once. Meanwhile a subscription to
/// another receiver is delivered at once: the lanes waiting for the busy origin hold none of
/// the four connection slots, so they cannot keep it out (a slot per waiting lane would, until
/// the busy receiver's whole backlog was through).
#[tokio::test]
async fn an_origin_keeps_to_its_limit_without_holding_up_the_others() {
    let h = Herald::start_with(Options {
        delivery:
            "max_connections = 4\nmax_in_flight_per_endpoint = 3\nmax_in_flight_per_origin = 2\n"
                .into(),
        ..Default::default()
    })
    .await;
    let busy = Capture::with_default(Reply::status(200).delay(Duration::from_millis(250))).await;
    let other = Capture::start().await;
    for i in 0..4 {
        h.subscribe(json!({"name": format!("s{i}"), "url": busy.url(&format!("/s{i}")), "filters": [{"types": ["t.busy"]}]}))
            .await;
    }
    h.subscribe(
        json!({"name": "other", "url": other.url("/"), "filters": [{"types": ["t.other"]}]}),
    )
    .await;
    // 24 deliveries at two at a time and 250 ms each: three seconds of backlog.
    h.ingest(
        "/v1/events",
        "application/x-ndjson",
        events("b", "t.busy", 6),
    )
    .await;
    busy.wait_for(2, WAIT).await;
    h.ingest(
        "/v1/events",
        "application/x-ndjson",
        events("o", "t.other", 2),
    )
    .await;
    other.wait_for(2, WAIT).await;
    assert!(
        busy.count() < 24,
        "the other receiver waited for the busy one's backlog ({} of 24 were through)",
        busy.count()
    );
    busy.wait_for(24, WAIT).await;
    assert_eq!(
        busy.most_concurrent(),
        2,
        "requests held at once by the busy receiver"
    );
    assert!(h.metric("herald_delivery_origin_waits_total").await > 0.0);
}

/// With the limit taken by idle connections to one receiver, a delivery to another closes one
/// of them to make room instead of waiting for it to expire (`pool_idle_timeout`, 90 s).
#[tokio::test]
async fn an_idle_connection_makes_room_for_another_receiver() {
    let h = Herald::start_with(Options {
        delivery: "max_connections = 2\nmax_in_flight_per_endpoint = 2\n".into(),
        ..Default::default()
    })
    .await;
    let a = Capture::with_default(Reply::status(200).delay(Duration::from_millis(200))).await;
    let b = Capture::start().await;
    h.subscribe(json!({"name": "a", "url": a.url("/"), "filters": [{"types": ["t.a"]}]}))
        .await;
    h.subscribe(json!({"name": "b", "url": b.url("/"), "filters": [{"types": ["t.b"]}]}))
        .await;
    h.ingest("/v1/events", "application/x-ndjson", events("a", "t.a", 4))
        .await;
    a.wait_for(4, WAIT).await;
    assert_eq!(a.most_concurrent(), 2);
    // Both connections to `a` are idle in the pool now and hold the whole limit.
    h.wait_metric("herald_delivery_connections", 2.0, WAIT)
        .await;
    h.ingest("/v1/events", "application/x-ndjson", events("b", "t.b", 2))
        .await;
    b.wait_for(2, WAIT).await;
    let open = h.metric("herald_delivery_connections").await;
    assert!(open <= 2.0, "{open} delivery connections open");
}

/// Connections the kernel has completed but the listener has not accepted yet.
fn accept_queue(addr: SocketAddr) -> Option<u64> {
    let want = format!("0100007F:{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local address, remote address, state (0A: listening), tx_queue:rx_queue
        if f.get(1) != Some(&want.as_str()) || f.get(3) != Some(&"0A") {
            return None;
        }
        let (_, rx) = f.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// `[server] max_connections = 2`: with two clients connected, a third waits in the listen
/// backlog, and is served as soon as one of the two leaves.
#[tokio::test]
async fn the_server_keeps_to_its_connection_limit() {
    let h = Herald::start_with(Options {
        server: "max_connections = 2\n".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(accept_queue(h.addr), Some(0), "Herald's listener in /proc");
    let first = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let addr = h.addr;
    let third = tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/healthz")
            .header("host", "herald")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        tx.send_request(req).await.unwrap().status().as_u16()
    });
    eventually(
        WAIT,
        "the third connection waiting to be accepted",
        || async { (accept_queue(addr) == Some(1)).then_some(()) },
    )
    .await;
    assert!(!third.is_finished());
    drop(first);
    let status = tokio::time::timeout(WAIT, third)
        .await
        .expect("the third client is served once the first leaves")
        .unwrap();
    assert_eq!(status, 200);
    assert!(h.metric("herald_server_connection_waits_total").await >= 1.0);
}

/// Under an open-file limit of 1,500 the default limits (1,024 clients, 2,048 delivery
/// connections, 900 store files) do not fit: Herald lowers them in proportion, says so, and
/// delivers.
#[tokio::test]
async fn a_low_open_file_limit_lowers_the_connection_limits() {
    let h = Herald::start_with(Options {
        open_files: Some(1500),
        ..Default::default()
    })
    .await;
    let log = h.log();
    assert!(
        log.contains("using lower limits")
            && log.contains("server_max_connections=348")
            && log.contains("delivery_max_connections=687")
            && log.contains("store_cached_files=340"),
        "{log}"
    );
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "s", "url": cap.url("/")})).await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("low-1", "x.y").to_string(),
    )
    .await;
    cap.wait_for(1, WAIT).await;
}

/// An open-file limit that cannot even hold the floors is refused at start, with the way out in
/// the message.
#[tokio::test]
async fn too_low_an_open_file_limit_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("herald.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"{}\"\nmin_free_bytes = 0\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_herald"))
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually(WAIT, "herald to exit", || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("the open-file limit is 200") && stderr.contains("LimitNOFILE"),
        "{stderr}"
    );
}
