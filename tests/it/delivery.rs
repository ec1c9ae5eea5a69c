//! Delivery: what arrives at a subscriber, signing, retries, dead letters, isolation, SSRF.

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::support::{Capture, Herald, Options, Reply, eventually};

const WAIT: Duration = Duration::from_secs(20);

pub fn cloudevent(id: &str, ty: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "/cms/test", "type": ty,
           "datacontenttype": "application/json", "data": {"n": id}})
}

pub const SITECORE_ITEM_SAVED: &str = r#"{
  "EventName": "item:saved",
  "Item": {
    "Language": "en", "Version": 1, "Id": "4c3a401e-8b78-440a-bf88-736a71ce8e5a",
    "Name": "New sample item", "ParentId": "8fb31904-1bbc-463c-821b-c7c1a87bf13e",
    "TemplateId": "0133f52d-271f-4217-b1cd-04342e3457eb", "TemplateName": "Sample Item",
    "MasterId": "00000000-0000-0000-0000-000000000000",
    "SharedFields": [{"Id": "a4f985d9-98b3-4b52-aaaf-4344f6e747c6", "Value": "{88AD1387-D4DA-489D-BB4B-45540917E7ED}"}],
    "UnversionedFields": [], "VersionedFields": []
  },
  "Changes": {"FieldChanges": [], "PropertyChanges": [], "IsUnversionedFieldChanged": false, "IsSharedFieldChanged": false},
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "WebhookItemName": "Sample Webhook Event Handler"
}"#;

#[tokio::test]
async fn signed_delivery_has_standard_webhooks_headers_and_verifies() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    h.subscribe(json!({
        "name": "signed", "url": cap.url("/hook"),
        "headers": {"X-Team": {"value": "web"}, "X-Key": {"value": "k", "secret": true}},
        "auth": {"type": "basic", "username": "u", "password": "p"},
        "signing_secret": secret,
    }))
    .await;
    let event = cloudevent("evt-1", "item:saved");
    let sent = event.to_string();
    h.ingest("/v1/events", "application/cloudevents+json", sent.clone())
        .await;
    let got = cap.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook");
    // A CloudEvent passes through byte for byte.
    assert_eq!(r.body, sent.as_bytes());
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert!(r.header("user-agent").unwrap().starts_with("Herald/"));
    assert_eq!(r.header("x-team"), Some("web"));
    assert_eq!(r.header("x-key"), Some("k"));
    assert_eq!(r.header("authorization"), Some("Basic dTpw"));
    // Framing: the connection's origin and the body's length.
    assert_eq!(r.header("host"), cap.url("").strip_prefix("http://"));
    assert_eq!(
        r.header("content-length"),
        Some(sent.len().to_string()).as_deref()
    );
    let id = r.header("webhook-id").unwrap();
    let ts = r.header("webhook-timestamp").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((ts.parse::<i64>().unwrap() - now).abs() < 60);
    // Verify as a receiver would: HMAC-SHA256 over "id.timestamp.body".
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(&r.body);
    let sig = r.header("webhook-signature").unwrap();
    let b64 = sig.strip_prefix("v1,").expect("v1 signature");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    ring::hmac::verify(&k, &msg, &raw).expect("signature verifies");
    // And a tampered body does not.
    let mut bad = msg.clone();
    bad.push(b' ');
    assert!(ring::hmac::verify(&k, &bad, &raw).is_err());
}

#[tokio::test]
async fn retries_after_500s_then_succeeds_with_a_stable_id() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    cap.script([Reply::status(500), Reply::status(503)]);
    let sub = h
        .subscribe(json!({"name": "flaky", "url": cap.url("/"),
                          "retry": {"schedule": ["50ms", "50ms", "50ms"], "jitter": 0}}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("r-1", "entry.published").to_string(),
    )
    .await;
    let got = cap.wait_for(3, WAIT).await;
    let ids: Vec<_> = got
        .iter()
        .map(|c| c.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    let log = eventually(WAIT, "delivered in the log", || async {
        let a = h
            .api("GET", &format!("/v1/deliveries?subscription={sub}"), None)
            .await;
        let v = a.json();
        let d = v["data"][0].clone();
        (d["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!(log["attempts"], 3);
    assert_eq!(log["last_attempt"]["status_code"], 200);
    let detail = h
        .api(
            "GET",
            &format!("/v1/deliveries/{}", log["id"].as_str().unwrap()),
            None,
        )
        .await
        .json();
    let codes: Vec<_> = detail["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(503), json!(200)]);
    assert_eq!(
        h.metric("herald_delivery_attempts_total{class=\"5xx\"}")
            .await,
        2.0
    );
    assert_eq!(
        h.metric("herald_deliveries_total{outcome=\"delivered\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn dead_letter_after_the_schedule_runs_out_then_manual_retry() {
    let h = Herald::start().await;
    let cap = Capture::with_default(Reply::status(500)).await;
    let sub = h
        .subscribe(json!({"name": "dead", "url": cap.url("/"),
                          "retry": {"schedule": ["20ms", "20ms"], "jitter": 0}}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("d-1", "entry.published").to_string(),
    )
    .await;
    cap.wait_for(3, WAIT).await;
    let dead = eventually(WAIT, "a dead letter", || async {
        let v = h
            .api("GET", &format!("/v1/dead-letters?subscription={sub}"), None)
            .await
            .json();
        v["data"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| a[0].clone())
    })
    .await;
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 3);
    h.wait_metric("herald_dead_letters", 1.0, WAIT).await;
    // No fourth attempt happens on its own.
    assert_eq!(cap.count(), 3);
    // A manual retry runs it again; this time it lands.
    cap.set_default(Reply::status(204));
    let a = h
        .api(
            "POST",
            &format!("/v1/deliveries/{}/retry", dead["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    cap.wait_for(4, WAIT).await;
    eventually(WAIT, "delivered after retry", || async {
        let v = h
            .api("GET", &format!("/v1/deliveries?subscription={sub}"), None)
            .await
            .json();
        (v["data"][0]["status"] == "delivered").then_some(())
    })
    .await;
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let h = Herald::start().await;
    let cap = Capture::with_default(Reply::status(410)).await;
    let sub = h
        .subscribe(json!({"name": "gone", "url": cap.url("/")}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("g-1", "x.y").to_string(),
    )
    .await;
    cap.wait_for(1, WAIT).await;
    let v = eventually(WAIT, "subscription disabled", || async {
        let v = h
            .api("GET", &format!("/v1/subscriptions/{sub}"), None)
            .await
            .json();
        (v["enabled"] == false).then_some(v)
    })
    .await;
    assert!(v["disabled_reason"].as_str().unwrap().contains("410"));
    // Later events are not delivered to it.
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("g-2", "x.y").to_string(),
    )
    .await;
    h.wait_metric(
        "herald_events_received_total{source=\"cloudevents\"}",
        2.0,
        WAIT,
    )
    .await;
    assert_eq!(cap.count(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    cap.script([Reply::status(429).header("retry-after", "1")]);
    h.subscribe(json!({"name": "limited", "url": cap.url("/"),
                       "retry": {"schedule": ["10ms"], "jitter": 0}}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("ra-1", "x.y").to_string(),
    )
    .await;
    let got = cap.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(900),
        "retried after {gap:?}, not ~1s"
    );
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_a_fast_one() {
    let h = Herald::start().await;
    let slow = Capture::with_default(Reply::status(200).delay(Duration::from_secs(3))).await;
    let fast = Capture::start().await;
    h.subscribe(json!({"name": "slow", "url": slow.url("/")}))
        .await;
    h.subscribe(json!({"name": "fast", "url": fast.url("/")}))
        .await;
    // More events than the slow endpoint's concurrency limit can take at once.
    let batch: Vec<String> = (0..100)
        .map(|i| cloudevent(&format!("s-{i}"), "x.y").to_string())
        .collect();
    let started = std::time::Instant::now();
    h.ingest("/v1/events", "application/x-ndjson", batch.join("\n"))
        .await;
    fast.wait_for(100, WAIT).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the fast endpoint got all 100 only after {took:?}: it waited for the slow one"
    );
    assert!(
        slow.count() <= 32,
        "slow endpoint exceeded its in-flight limit"
    );
}

/// An endpoint gets its deliveries side by side up to `max_in_flight_per_endpoint`, and never
/// more at once.
#[tokio::test]
async fn an_endpoint_gets_exactly_its_in_flight_limit_at_once() {
    let h = Herald::start_with(Options {
        delivery: "max_in_flight_per_endpoint = 3\n".into(),
        ..Default::default()
    })
    .await;
    let slow = Capture::with_default(Reply::status(200).delay(Duration::from_millis(300))).await;
    h.subscribe(json!({"name": "slow", "url": slow.url("/")}))
        .await;
    let batch: Vec<String> = (0..12)
        .map(|i| cloudevent(&format!("c-{i}"), "x.y").to_string())
        .collect();
    h.ingest("/v1/events", "application/x-ndjson", batch.join("\n"))
        .await;
    slow.wait_for(12, WAIT).await;
    assert_eq!(slow.most_concurrent(), 3);
}

/// A lane with nothing to do parks for `lane_linger`; what arrives meanwhile, a new event or a
/// retry coming due, goes to it. With one lane per endpoint and an hour's linger no other lane
/// can start, so each delivery below arrives only if the parked lane is handed the work.
/// Parked lanes end on shutdown.
#[tokio::test]
async fn a_parked_lane_takes_new_work_and_retries() {
    let mut h = Herald::start_with(Options {
        delivery: "max_in_flight_per_endpoint = 1\nlane_linger = \"1h\"\n".into(),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    h.subscribe(
        json!({"name": "lingering", "url": cap.url("/"), "format": "raw",
                       "retry": {"schedule": ["50ms"], "jitter": 0}}),
    )
    .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("l-1", "x.y").to_string(),
    )
    .await;
    cap.wait_for(1, WAIT).await;
    // Pushed while the lane is parked.
    cap.script([Reply::status(503)]);
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("l-2", "x.y").to_string(),
    )
    .await;
    // The 503 parks the lane again; the retry comes due from the driver's timer.
    let got = cap.wait_for(3, WAIT).await;
    let ids: Vec<_> = got.iter().map(|c| c.json()["id"].clone()).collect();
    assert_eq!(ids, [json!("l-1"), json!("l-2"), json!("l-2")]);
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 2.0, WAIT)
        .await;
    // A parked lane does not hold up a shutdown.
    assert!(h.terminate(WAIT).await.success());
}

/// Deliveries that have not had their turn yet are in the log as pending, from ingest on and
/// after a crash (the journal derives their records from the event until a transition writes
/// one), and each is listed once when it is done.
#[tokio::test]
async fn deliveries_waiting_their_turn_are_listed_as_pending() {
    let h = Herald::start_with(Options {
        delivery: "max_in_flight_per_endpoint = 1\n".into(),
        ..Default::default()
    })
    .await;
    // The first request is held (until Herald's 5 s timeout), so the other two wait behind
    // it, never attempted.
    let cap = Capture::with_default(Reply::status(200).delay(Duration::from_secs(3600))).await;
    let sub = h
        .subscribe(json!({"name": "one at a time", "url": cap.url("/"), "format": "raw"}))
        .await;
    for n in 1..=3 {
        h.ingest(
            "/v1/events",
            "application/json",
            cloudevent(&format!("w-{n}"), "entry.saved").to_string(),
        )
        .await;
    }
    let by_sub = format!("/v1/deliveries?subscription={sub}");
    let waiting = |data: &[serde_json::Value]| {
        let events: Vec<_> = data.iter().map(|d| d["event_id"].clone()).collect();
        assert_eq!(
            events,
            [json!("w-3"), json!("w-2"), json!("w-1")],
            "{data:?}"
        );
        // w-1 is in flight; the other two have not been tried.
        for d in &data[..2] {
            assert_eq!(d["status"], "pending", "{d}");
            assert_eq!(d["attempts"], 0, "{d}");
            assert_eq!(d["event_type"], "entry.saved", "{d}");
        }
    };
    cap.wait_for(1, WAIT).await;
    let data = log_data(&h, &by_sub).await;
    waiting(&data);
    let pending = log_data(&h, "/v1/deliveries?status=pending").await;
    assert_eq!(pending[..2], data[..2]);
    let one = h
        .api(
            "GET",
            &format!("/v1/deliveries/{}", data[1]["id"].as_str().unwrap()),
            None,
        )
        .await
        .json();
    assert_eq!(
        (&one["status"], &one["event_id"]),
        (&json!("pending"), &json!("w-2"))
    );

    // Still there after a crash (w-1 is sent and held again); then all three are delivered
    // and each is listed once.
    let h = h.restart().await;
    cap.wait_for(2, WAIT).await;
    waiting(&log_data(&h, &by_sub).await);
    cap.set_default(Reply::status(200));
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 3.0, WAIT)
        .await;
    for path in [by_sub.as_str(), "/v1/deliveries"] {
        let statuses: Vec<_> = log_data(&h, path)
            .await
            .iter()
            .map(|d| d["status"].clone())
            .collect();
        assert_eq!(
            statuses,
            [json!("delivered"), json!("delivered"), json!("delivered")]
        );
    }
    assert!(
        log_data(&h, "/v1/deliveries?status=pending")
            .await
            .is_empty()
    );
}

async fn log_data(h: &Herald, path: &str) -> Vec<serde_json::Value> {
    let v = h.api("GET", path, None).await.json();
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {v}"))
        .clone()
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let h = Herald::start_with(Options {
        no_loopback: true,
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    let sub = h
        .subscribe(json!({"name": "internal", "url": cap.url("/"),
                          "retry": {"schedule": [], "jitter": 0}}))
        .await;
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("p-1", "x.y").to_string(),
    )
    .await;
    let d = eventually(WAIT, "a refused dead letter", || async {
        let v = h
            .api("GET", &format!("/v1/dead-letters?subscription={sub}"), None)
            .await
            .json();
        v["data"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| a[0].clone())
    })
    .await;
    assert_eq!(d["last_attempt"]["class"], "refused");
    assert!(
        d["last_attempt"]["error"]
            .as_str()
            .unwrap()
            .contains("allow_networks"),
        "{d}"
    );
    assert_eq!(cap.count(), 0);
}

#[tokio::test]
async fn formats_raw_and_sitecore() {
    let h = Herald::start().await;
    let raw = Capture::start().await;
    let sc = Capture::start().await;
    let ce = Capture::start().await;
    h.subscribe(json!({"name": "raw", "url": raw.url("/"), "format": "raw"}))
        .await;
    let sc_id = h
        .subscribe(
            json!({"name": "Publisher hook", "url": sc.url("/"), "format": "sitecore",
                          "filters": [{"types": ["item:*"], "attributes": {"language": "en"}}]}),
        )
        .await;
    h.subscribe(json!({"name": "ce", "url": ce.url("/")})).await;
    h.ingest(
        "/v1/ingest/sitecore",
        "application/json",
        SITECORE_ITEM_SAVED,
    )
    .await;
    let r = &raw.wait_for(1, WAIT).await[0];
    assert_eq!(r.body, SITECORE_ITEM_SAVED.as_bytes());
    let s = sc.wait_for(1, WAIT).await[0].json();
    assert_eq!(s["EventName"], "item:saved");
    assert_eq!(s["WebhookItemId"], sc_id);
    assert_eq!(s["WebhookItemName"], "Publisher hook");
    assert_eq!(s["Item"]["Id"], "4c3a401e-8b78-440a-bf88-736a71ce8e5a");
    let c = &ce.wait_for(1, WAIT).await[0];
    assert_eq!(
        c.header("content-type"),
        Some("application/cloudevents+json")
    );
    let c = c.json();
    assert_eq!(c["specversion"], "1.0");
    assert_eq!(c["type"], "item:saved");
    assert_eq!(c["source"], "sitecore");
    assert_eq!(c["data"]["Item"]["Name"], "New sample item");
}
