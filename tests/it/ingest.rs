//! Ingest: every input format, the unix socket, and every bad-input case — each answered with
//! its error, counted, and disturbing nothing accepted before it.

use std::time::Duration;

use serde_json::json;

use crate::delivery::{SITECORE_ITEM_SAVED, cloudevent};
use crate::support::{Capture, Herald, Options};

const WAIT: Duration = Duration::from_secs(20);

const DATOCMS_ITEM_UPDATE: &str = r#"{
  "site_id": "example-site-id", "webhook_id": "123", "environment": "main",
  "is_environment_primary": true, "webhook_call_id": "456",
  "event_triggered_at": "2024-08-26T14:30:00Z", "attempted_auto_retries_count": 0,
  "entity_type": "item", "event_type": "update",
  "entity": {"id": "39830648", "type": "item", "attributes": {"name": "Mark Smith"},
             "relationships": {"item_type": {"data": {"id": "810928", "type": "item_type"}},
                               "creator": {"data": {"id": "42011", "type": "account"}}},
             "meta": {"status": "published"}},
  "related_entities": []
}"#;

const CONTENSIS_PUBLISHED: &str = r#"{
  "event": {"id": "0d4b0c1c-2f35-4f2e-9d0e-3b0d5c2b5f10", "name": "published", "resourceType": "entry",
            "dateTime": "2026-11-20T10:00:00Z", "resourceId": "ba8a92bd-0000-4000-8000-000000000001",
            "resourceUrl": "https://cms.example.com/entries/1", "subscriptionId": "3a7ce8e3-9c9f-4242-be20-35edb29c4a07"},
  "user": {"username": "t.durden", "firstName": "Tyler", "lastName": "Durden"},
  "resource": {"entryTitle": "Hello", "sys": {"id": "ba8a92bd-0000-4000-8000-000000000001",
               "contentTypeId": "blog", "language": "en-GB", "projectId": "website", "owner": "t.durden",
               "dataFormat": "entry"}}
}"#;

#[tokio::test]
async fn each_input_format_is_accepted_and_routed_by_type() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "all", "url": cap.url("/"), "format": "raw",
        "filters": [
            {"types": ["item:saved"], "attributes": {"language": ["en"], "contenttype": "0133f52d-271f-4217-b1cd-04342e3457eb"}},
            {"types": ["item.update"], "attributes": {"contenttype": "810928", "environment": "main"}},
            {"types": ["entry.*"], "attributes": {"contenttype": "blog", "language": "en-gb", "project": "website"}},
            {"types": ["com.example.*"]}
        ]}))
        .await;
    let a = h
        .ingest(
            "/v1/ingest/sitecore",
            "application/json",
            SITECORE_ITEM_SAVED,
        )
        .await;
    assert_eq!(a["accepted"], 1);
    let a = h
        .ingest(
            "/v1/ingest/datocms",
            "application/json",
            DATOCMS_ITEM_UPDATE,
        )
        .await;
    assert_eq!(a["ids"], json!(["456"]));
    h.ingest(
        "/v1/ingest/contensis",
        "application/json; charset=utf-8",
        CONTENSIS_PUBLISHED,
    )
    .await;
    let batch = json!([
        cloudevent("b-1", "com.example.a"),
        cloudevent("b-2", "com.example.b")
    ]);
    let a = h
        .ingest(
            "/v1/events",
            "application/cloudevents-batch+json",
            batch.to_string(),
        )
        .await;
    assert_eq!(
        a,
        json!({"accepted": 2, "ids": ["b-1", "b-2"], "duplicates": []})
    );
    let got = cap.wait_for(5, WAIT).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8_lossy(&c.body).into_owned())
        .collect();
    assert!(bodies.iter().any(|b| b == SITECORE_ITEM_SAVED));
    assert!(bodies.iter().any(|b| b == DATOCMS_ITEM_UPDATE));
    assert!(bodies.iter().any(|b| b == CONTENSIS_PUBLISHED));
    assert!(bodies.iter().any(|b| b.contains("\"b-2\"")));
    // Something no filter matches is accepted but not delivered.
    h.ingest(
        "/v1/events",
        "application/json",
        cloudevent("n-1", "other.thing").to_string(),
    )
    .await;
    h.wait_metric(
        "herald_events_received_total{source=\"cloudevents\"}",
        3.0,
        WAIT,
    )
    .await;
    assert_eq!(cap.count(), 5);
}

#[tokio::test]
async fn the_unix_socket_serves_the_same_api() {
    let h = Herald::start_with(Options {
        unix_socket: true,
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "u", "url": cap.url("/")})).await;
    let lines = [cloudevent("u-1", "a.b"), cloudevent("u-2", "a.b")]
        .map(|e| e.to_string())
        .join("\n");
    let a = h
        .request_unix(
            "POST",
            "/v1/events",
            Some("application/x-ndjson"),
            lines,
            None,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.json()["accepted"], 2);
    cap.wait_for(2, WAIT).await;
    let a = h.request_unix("GET", "/healthz", None, "", None).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_disturbs_nothing() {
    let h = Herald::start_with(Options {
        server: "max_body_bytes = 4096\nmax_batch_items = 5\n".into(),
        auth: format!(
            "admin_tokens = [\"{}\"]\ningest_tokens = [\"ingest-token-0123456789\"]\n",
            crate::support::ADMIN_TOKEN
        ),
        ..Default::default()
    })
    .await;
    let cap = Capture::start().await;
    h.subscribe(json!({"name": "all", "url": cap.url("/")}))
        .await;
    let tok = Some("ingest-token-0123456789");
    let good = cloudevent("ok-1", "a.b").to_string();
    let a = h
        .request(
            "POST",
            "/v1/events",
            Some("application/json"),
            good.clone(),
            tok,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());

    struct Case {
        name: &'static str,
        content_type: Option<&'static str>,
        body: String,
        token: Option<&'static str>,
        status: u16,
        reason: &'static str,
    }
    let big = format!("[{}]", vec![good.clone(); 40].join(","));
    let many = (0..6)
        .map(|i| cloudevent(&format!("m{i}"), "a.b").to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let bad_batch = json!([
        cloudevent("x-1", "a.b"),
        {"specversion": "1.0", "id": "x-2", "type": "a.b"},
        {"specversion": "0.3", "id": "x-3", "source": "s", "type": "a.b"}
    ])
    .to_string();
    let cases = vec![
        Case {
            name: "no token",
            content_type: Some("application/json"),
            body: good.clone(),
            token: None,
            status: 401,
            reason: "unauthorized",
        },
        Case {
            name: "wrong token",
            content_type: Some("application/json"),
            body: good.clone(),
            token: Some("nope-nope-nope-nope"),
            status: 401,
            reason: "unauthorized",
        },
        Case {
            name: "malformed",
            content_type: Some("application/json"),
            body: "{\"specversion\": ".into(),
            token: tok,
            status: 400,
            reason: "malformed",
        },
        Case {
            name: "content type",
            content_type: Some("text/plain"),
            body: good.clone(),
            token: tok,
            status: 415,
            reason: "content_type",
        },
        Case {
            name: "too large",
            content_type: Some("application/json"),
            body: big,
            token: tok,
            status: 413,
            reason: "too_large",
        },
        Case {
            name: "too many items",
            content_type: Some("application/x-ndjson"),
            body: many,
            token: tok,
            status: 413,
            reason: "too_large",
        },
        Case {
            name: "bad batch",
            content_type: Some("application/cloudevents-batch+json"),
            body: bad_batch,
            token: tok,
            status: 400,
            reason: "invalid",
        },
    ];
    for c in &cases {
        let a = h
            .request(
                "POST",
                "/v1/events",
                c.content_type,
                c.body.clone(),
                c.token,
            )
            .await;
        assert_eq!(a.status, c.status, "{}: {}", c.name, a.text());
        let v = a.json();
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {v}",
            c.name
        );
        if c.name == "bad batch" {
            let items = v["items"].as_array().expect("items listed");
            let idx: Vec<u64> = items.iter().map(|i| i["index"].as_u64().unwrap()).collect();
            assert_eq!(idx, vec![1, 2], "{v}");
            assert!(
                items
                    .iter()
                    .all(|i| !i["reason"].as_str().unwrap().is_empty())
            );
        }
    }
    for reason in [
        "unauthorized",
        "malformed",
        "content_type",
        "too_large",
        "invalid",
    ] {
        let want = cases.iter().filter(|c| c.reason == reason).count() as f64;
        let got = h
            .metric(&format!(
                "herald_events_rejected_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert_eq!(got, want, "rejected {reason}");
    }
    // The event accepted first still arrives, and nothing from the refused requests does
    // (the bad batch's valid first item included: a batch is all or nothing).
    let after = h
        .request(
            "POST",
            "/v1/events",
            Some("application/json"),
            cloudevent("ok-2", "a.b").to_string(),
            tok,
        )
        .await;
    assert_eq!(after.status, 202);
    let got = cap.wait_for(2, WAIT).await;
    let ids: Vec<String> = got
        .iter()
        .map(|c| c.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&"ok-1".to_string()) && ids.contains(&"ok-2".to_string()),
        "{ids:?}"
    );
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 2.0, WAIT)
        .await;
    assert_eq!(cap.count(), 2, "only the two good events were delivered");
}
