//! The native subscription API: CRUD, validation, secrets, enable/disable, auth.

use std::time::Duration;

use serde_json::json;

use crate::delivery::cloudevent;
use crate::support::{Capture, Herald};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn crud_roundtrip_hides_secrets() {
    let h = Herald::start().await;
    let body = json!({
        "name": "search indexer", "url": "https://indexer.example.com/hook", "enabled": true,
        "filters": [{"types": ["item:added", "item:saved"], "attributes": {"language": ["en"]}}],
        "headers": {"X-Team": {"value": "web"}, "X-Key": {"value": "k-secret-value", "secret": true}},
        "auth": {"type": "basic", "username": "u", "password": "p-secret-value"},
        "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "format": "cloudevents",
        "retry": {"schedule": ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]}
    });
    let created = h.api("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let v = created.json();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.headers.get("location").unwrap(),
        &format!("/v1/subscriptions/{id}")
    );
    for text in [
        created.text(),
        h.api("GET", &format!("/v1/subscriptions/{id}"), None)
            .await
            .text(),
        h.api("GET", "/v1/subscriptions", None).await.text(),
    ] {
        assert!(!text.contains("secret-value"), "a secret leaked: {text}");
        assert!(
            !text.contains("whsec_"),
            "the signing secret leaked: {text}"
        );
    }
    assert_eq!(v["headers"]["X-Key"], json!({"secret": true}));
    assert_eq!(v["signed"], true);
    assert_eq!(v["version"], 1);

    // PATCH changes what it names; the version goes up.
    let p = h
        .api(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let p = p.json();
    assert_eq!(
        (p["name"].as_str(), p["version"].as_u64()),
        (Some("renamed"), Some(2))
    );
    assert_eq!(p["filters"], v["filters"]);

    // PUT of what GET returned keeps the secrets it could not show.
    let mut full = h
        .api("GET", &format!("/v1/subscriptions/{id}"), None)
        .await
        .json();
    full["url"] = json!("https://other.example.com/hook");
    let put = h
        .api("PUT", &format!("/v1/subscriptions/{id}"), Some(full))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["signed"], true);

    // Disable / enable.
    let d = h
        .api("POST", &format!("/v1/subscriptions/{id}/disable"), None)
        .await;
    assert_eq!(d.json()["enabled"], false);
    let list = h
        .api("GET", "/v1/subscriptions?enabled=false", None)
        .await
        .json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let e = h
        .api("POST", &format!("/v1/subscriptions/{id}/enable"), None)
        .await;
    assert_eq!(e.json()["enabled"], true);

    // Delete.
    let del = h
        .api("DELETE", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert_eq!(del.status, 204);
    let gone = h.api("GET", &format!("/v1/subscriptions/{id}"), None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"], "not_found");
}

#[tokio::test]
async fn invalid_bodies_list_every_field_error() {
    let h = Herald::start().await;
    let a = h
        .api(
            "POST",
            "/v1/subscriptions",
            Some(json!({"url": "ftp://nope", "filters": [{"types": ["it*em"]}],
                        "headers": {"Bad Header": "x"}, "signing_secret": "plain", "format": "xml"})),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text());
    let v = a.json();
    assert_eq!(v["error"], "validation_failed");
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for want in [
        "name",
        "url",
        "filters[0].types[0]",
        "headers.Bad Header",
        "format",
    ] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    // A bad signing secret is caught when saved, not at delivery.
    let a = h
        .api(
            "POST",
            "/v1/subscriptions",
            Some(json!({"name": "n", "url": "https://a.example.com/", "signing_secret": "plain"})),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert_eq!(a.json()["fields"][0]["field"], "signing_secret");
    // Not JSON at all.
    let a = h
        .request(
            "POST",
            "/v1/subscriptions",
            Some("application/json"),
            "{",
            Some(crate::support::ADMIN_TOKEN),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        h.api("GET", "/v1/subscriptions", None).await.json()["data"],
        json!([])
    );
}

#[tokio::test]
async fn management_needs_the_admin_token() {
    let h = Herald::start().await;
    for (method, path) in [
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/deliveries"),
        ("GET", "/v1/dead-letters"),
    ] {
        let a = h
            .request(method, path, Some("application/json"), "{}", None)
            .await;
        assert_eq!(a.status, 401, "{method} {path}");
        assert_eq!(a.json()["error"], "unauthorized");
        let a = h
            .request(
                method,
                path,
                Some("application/json"),
                "{}",
                Some("wrong-token-wrong-token"),
            )
            .await;
        assert_eq!(a.status, 401, "{method} {path}");
    }
}

#[tokio::test]
async fn wildcards_attributes_and_disabled_subscriptions_route_as_documented() {
    let h = Herald::start().await;
    let en = Capture::start().await;
    let any_item = Capture::start().await;
    let off = Capture::start().await;
    h.subscribe(json!({"name": "en", "url": en.url("/"),
        "filters": [{"types": ["item:saved"], "attributes": {"language": ["en", "de"]}}]}))
        .await;
    h.subscribe(
        json!({"name": "items", "url": any_item.url("/"), "filters": [{"types": ["item:*"]}]}),
    )
    .await;
    h.subscribe(json!({"name": "off", "url": off.url("/"), "enabled": false}))
        .await;
    let mut fr = cloudevent("w-1", "item:saved");
    fr["language"] = json!("fr");
    let mut en_ev = cloudevent("w-2", "item:saved");
    en_ev["language"] = json!("EN");
    let other = cloudevent("w-3", "publish:end");
    for e in [fr, en_ev, other] {
        h.ingest("/v1/events", "application/cloudevents+json", e.to_string())
            .await;
    }
    let got = en.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], "w-2");
    any_item.wait_for(2, WAIT).await;
    h.wait_metric("herald_deliveries_total{outcome=\"delivered\"}", 3.0, WAIT)
        .await;
    assert_eq!((en.count(), any_item.count(), off.count()), (1, 2, 0));
}
