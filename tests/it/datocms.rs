//! The DatoCMS dialect: `/webhooks` and `/webhook_calls` driven with the seed's own example
//! requests, every documented error case, and DatoCMS's real payload ingested and checked byte
//! for byte at the capture receiver.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::daemon::Answer;
use crate::support::{ADMIN_TOKEN, Capture, Herald, Options, Reply, eventually};

const WAIT: Duration = Duration::from_secs(20);
const SITE_A_TOKEN: &str = "site-205-token-0123456789";
const SITE_B_TOKEN: &str = "site-206-token-0123456789";
const SPACE_TOKEN: &str = "space-token-0123456789";
const JSONAPI: &str = "application/vnd.api+json";

/// DatoCMS's record-update payload (spec §1.8), with `call` as its `webhook_call_id` (the
/// ingest dedup key) and `site` as its `site_id`.
fn item_update(call: &str, site: &str) -> String {
    format!(
        r#"{{
  "site_id": "{site}",
  "webhook_id": "123",
  "environment": "foo-bar",
  "is_environment_primary": true,
  "webhook_call_id": "{call}",
  "event_triggered_at": "2024-08-26T14:30:00Z",
  "attempted_auto_retries_count": 3,
  "entity_type": "item",
  "event_type": "update",
  "entity": {{ "id": "39830648", "type": "item",
              "attributes": {{ "name": "Mark Smith", "title": "On \"Mustache\" & <html>" }},
              "relationships": {{ "item_type": {{ "data": {{ "id": "810928", "type": "item_type" }} }},
                                 "creator": {{ "data": {{ "id": "42011", "type": "account" }} }} }},
              "meta": {{ "created_at": "2024-08-20T10:00:00Z", "updated_at": "2024-08-26T14:30:00Z",
                        "published_at": "2024-08-21T09:00:00Z", "first_published_at": "2024-08-21T09:00:00Z",
                        "status": "updated", "current_version": "117626080" }} }},
  "previous_entity": {{ "id": "39830648", "type": "item", "attributes": {{ "name": "Mark Smyth" }} }},
  "related_entities": [ {{ "id": "810928", "type": "item_type", "attributes": {{ "name": "Author", "api_key": "author" }}, "relationships": {{}} }} ]
}}"#
    )
}

/// A DatoCMS payload of another entity type (no envelope changes needed).
fn upload_create(call: &str) -> String {
    format!(
        r#"{{"site_id": "205", "webhook_id": "1", "environment": "main", "is_environment_primary": true,
  "webhook_call_id": "{call}", "event_triggered_at": "2024-08-26T14:31:00Z", "attempted_auto_retries_count": 0,
  "entity_type": "upload", "event_type": "create",
  "entity": {{"id": "u{call}", "type": "upload", "attributes": {{"filename": "a.png"}}}}, "related_entities": []}}"#
    )
}

/// The seed's create request body, verbatim.
fn seed_create() -> Value {
    json!({ "data": { "type": "webhook", "attributes": {
        "name": "Item type creation/update",
        "url": "https://www.example.com/webhook",
        "headers": { "X-Foo": "Bar" },
        "events": [ { "entity_type": "item", "event_types": [ "update" ] } ],
        "custom_payload": "{ \"message\": \"{{event_type}} event triggered on {{entity_type}}!\", \"entity_id\": \"{{#entity}}{{id}}{{/entity}}\"] }",
        "http_basic_user": "user",
        "http_basic_password": "password" } } })
}

/// A create document for a webhook to `url` (no custom payload).
fn webhook_doc(name: &str, url: &str, events: Value, auto_retry: bool) -> Value {
    json!({"data": {"type": "webhook", "attributes": {
        "name": name, "url": url, "headers": {"X-Foo": "Bar"}, "events": events,
        "custom_payload": null, "http_basic_user": "ciao", "http_basic_password": "miao",
        "auto_retry": auto_retry}}})
}

async fn call_as(
    h: &Herald,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let (ct, bytes) = match body {
        Some(v) => (Some(JSONAPI), Bytes::from(v.to_string())),
        None => (None, Bytes::new()),
    };
    let a = h.request(method, path, ct, bytes, token).await;
    // Every answer says JSON: DatoCMS's client retries or throws otherwise.
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{method} {path}: {} {}",
        a.status,
        a.text()
    );
    a
}

async fn dato(h: &Herald, method: &str, path: &str, body: Option<&Value>) -> Answer {
    call_as(h, Some(ADMIN_TOKEN), method, path, body).await
}

/// Creates a webhook, asserting `200`; returns its id.
async fn create(h: &Herald, token: &str, doc: &Value) -> String {
    let a = call_as(h, Some(token), "POST", "/webhooks", Some(doc)).await;
    assert_eq!(a.status, 200, "create: {}", a.text());
    a.json()["data"]["id"].as_str().unwrap().to_string()
}

/// Asserts a DatoCMS error answer: status, `api_error` shape, the first entry's code; returns
/// that entry's `details`.
fn api_error(a: &Answer, status: u16, code: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.text());
    let v = a.json();
    let e = &v["data"][0];
    assert_eq!(e["type"], "api_error", "{v}");
    assert_eq!(e["id"].as_str().map(str::len), Some(6), "{v}");
    assert_eq!(e["attributes"]["code"], code, "{v}");
    assert_eq!(
        e["attributes"]["doc_url"],
        format!("https://www.datocms.com/docs/content-management-api/errors#{code}")
    );
    assert!(e["attributes"]["details"].is_object(), "{v}");
    e["attributes"]["details"].clone()
}

fn invalid_field(a: &Answer, field: &str, validation: &str) {
    let d = api_error(a, 422, "INVALID_FIELD");
    let v = a.json();
    let all: Vec<(Value, Value)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["attributes"]["details"]["field"].clone(),
                e["attributes"]["details"]["code"].clone(),
            )
        })
        .collect();
    assert!(
        all.contains(&(json!(field), json!(validation))),
        "wanted {field} {validation} in {v} (first: {d})"
    );
}

/// The calls of the log matching `query`, once `ready` accepts the answer.
async fn calls_when(h: &Herald, token: &str, query: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, query, || async {
        let a = call_as(
            h,
            Some(token),
            "GET",
            &format!("/webhook_calls{query}"),
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
        let v = a.json();
        ready(&v).then_some(v)
    })
    .await
}

#[tokio::test]
async fn seed_example_and_crud() {
    let h = Herald::start().await;
    // The seed's request, with its own content type.
    let a = dato(&h, "POST", "/webhooks", Some(&seed_create())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let id = v["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    // The seed's response, but for the id.
    assert_eq!(
        v,
        json!({ "data": { "type": "webhook", "id": id, "attributes": {
            "name": "Item type creation/update", "url": "https://www.example.com/webhook",
            "enabled": true, "headers": { "X-Foo": "Bar" },
            "events": [ { "entity_type": "item", "event_types": [ "update" ] } ],
            "http_basic_user": "user", "http_basic_password": "password",
            "custom_payload": seed_create()["data"]["attributes"]["custom_payload"],
            "payload_api_version": "3", "nested_items_in_payload": true, "auto_retry": true } } })
    );
    let created = v["data"].clone();

    // `application/json` bodies (what the JS client sends) work too.
    let mut second = webhook_doc(
        "second",
        "https://hooks.example.com/b",
        json!([{"entity_type": "upload", "event_types": ["create", "delete"]}]),
        false,
    );
    let a = h
        .request(
            "POST",
            "/webhooks",
            Some("application/json; charset=utf-8"),
            second.to_string(),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let id2 = a.json()["data"]["id"].as_str().unwrap().to_string();

    // A native subscription is not a DatoCMS webhook.
    h.subscribe(json!({"name": "native", "url": "https://n.example.com/"}))
        .await;
    let list = dato(&h, "GET", "/webhooks", None).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["attributes"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Item type creation/update", "second"]);
    assert_eq!(list["data"][0], created);

    let got = dato(&h, "GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"], created);

    // PUT merges: only what it names changes; `events` is replaced wholesale.
    let put = json!({"data": {"type": "webhook", "id": id, "attributes": {
        "enabled": false, "name": "renamed",
        "events": [{"entity_type": "item_type", "event_types": ["create"],
                    "filters": [{"entity_type": "environment", "entity_ids": ["main"]}]}]}}});
    let a = dato(&h, "PUT", &format!("/webhooks/{id}"), Some(&put)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut want = created.clone();
    want["attributes"]["enabled"] = json!(false);
    want["attributes"]["name"] = json!("renamed");
    want["attributes"]["events"] = put["data"]["attributes"]["events"].clone();
    assert_eq!(a.json()["data"], want);
    assert_eq!(
        dato(&h, "GET", &format!("/webhooks/{id}"), None)
            .await
            .json()["data"],
        want
    );

    // The same webhook through the native API, with its hyphenated id.
    let uuid = uuid::Uuid::parse_str(&id).unwrap().hyphenated().to_string();
    let n = h
        .api("GET", &format!("/v1/subscriptions/{uuid}"), None)
        .await;
    assert_eq!(n.status, 200, "{}", n.text());
    let n = n.json();
    assert_eq!(n["dialect"], "datocms");
    assert_eq!(n["format"], "datocms");
    assert_eq!(n["name"], "renamed");
    assert_eq!(n["tenant"], Value::Null);
    assert_eq!(
        n["filters"],
        json!([{"types": ["item_type.create"], "attributes": {"environment": ["main"]}}])
    );
    assert_eq!(n["timeout"], "8s");
    assert_eq!(n["retry"]["schedule"].as_array().unwrap().len(), 7);
    // … and managed there: enabled again natively, seen by DatoCMS.
    let p = h
        .api(
            "PATCH",
            &format!("/v1/subscriptions/{uuid}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text());
    assert_eq!(
        dato(&h, "GET", &format!("/webhooks/{id}"), None)
            .await
            .json()["data"]["attributes"]["enabled"],
        true
    );

    // DELETE answers 200 with the deleted webhook.
    let d = dato(&h, "DELETE", &format!("/webhooks/{id}"), None).await;
    assert_eq!(d.status, 200, "{}", d.text());
    assert_eq!(d.json()["data"]["attributes"]["name"], "renamed");
    let gone = dato(&h, "GET", &format!("/webhooks/{id}"), None).await;
    api_error(&gone, 404, "NOT_FOUND");
    let n = h
        .api("GET", &format!("/v1/subscriptions/{uuid}"), None)
        .await;
    assert_eq!(n.status, 404);
    // Deleting through the native API removes it from DatoCMS's list too.
    let uuid2 = uuid::Uuid::parse_str(&id2)
        .unwrap()
        .hyphenated()
        .to_string();
    let n = h
        .api("DELETE", &format!("/v1/subscriptions/{uuid2}"), None)
        .await;
    assert_eq!(n.status, 204);
    assert_eq!(
        dato(&h, "GET", "/webhooks", None).await.json(),
        json!({"data": []})
    );
    // The name is free again.
    second["data"]["attributes"]["name"] = json!("renamed");
    create(&h, ADMIN_TOKEN, &second).await;
}

#[tokio::test]
async fn each_documented_error_case() {
    let h = Herald::start().await;
    let id = create(&h, ADMIN_TOKEN, &seed_create()).await;

    // 401: no token, a wrong token, another scheme.
    let a = call_as(&h, None, "GET", "/webhooks", None).await;
    api_error(&a, 401, "INVALID_AUTHORIZATION_HEADER");
    let a = call_as(
        &h,
        Some("not-the-token-0123456789"),
        "GET",
        "/webhooks",
        None,
    )
    .await;
    api_error(&a, 401, "INVALID_AUTHORIZATION_HEADER");
    let a = call_as(&h, None, "POST", "/webhook_calls/1/resend_webhook", None).await;
    api_error(&a, 401, "INVALID_AUTHORIZATION_HEADER");

    // 400: not JSON; not a JSON content type.
    let a = h
        .request(
            "POST",
            "/webhooks",
            Some(JSONAPI),
            "{nope",
            Some(ADMIN_TOKEN),
        )
        .await;
    api_error(&a, 400, "INVALID_JSON_BODY");
    let a = h
        .request(
            "POST",
            "/webhooks",
            Some("text/plain"),
            seed_create().to_string(),
            Some(ADMIN_TOKEN),
        )
        .await;
    api_error(&a, 400, "INVALID_CONTENT_TYPE_HEADER");
    assert_eq!(a.headers["content-type"], "application/json");

    // 422 INVALID_FORMAT: not JSON:API; unknown attribute; wrong JSON type.
    for doc in [
        json!({"name": "flat"}),
        json!({"data": {"type": "webhook", "attributes": {"colour": "red"}}}),
        {
            let mut d = seed_create();
            d["data"]["attributes"]["enabled"] = json!("yes");
            d
        },
    ] {
        let a = dato(&h, "POST", "/webhooks", Some(&doc)).await;
        let d = api_error(&a, 422, "INVALID_FORMAT");
        assert!(
            d["messages"].as_array().is_some_and(|m| !m.is_empty()),
            "{d}"
        );
    }
    // 422 INVALID_TYPE.
    let mut doc = seed_create();
    doc["data"]["type"] = json!("item_type");
    api_error(
        &dato(&h, "POST", "/webhooks", Some(&doc)).await,
        422,
        "INVALID_TYPE",
    );

    // 422 INVALID_FIELD, one per documented validation.
    let with = |k: &str, v: Value| {
        let mut d = seed_create();
        d["data"]["attributes"]["name"] = json!(format!("n-{k}"));
        if v.is_null() && k != "custom_payload" {
            d["data"]["attributes"].as_object_mut().unwrap().remove(k);
        } else {
            d["data"]["attributes"][k] = v;
        }
        d
    };
    let cases = [
        (with("url", Value::Null), "url", "VALIDATION_REQUIRED"),
        (with("events", Value::Null), "events", "VALIDATION_REQUIRED"),
        (
            with("headers", Value::Null),
            "headers",
            "VALIDATION_REQUIRED",
        ),
        (seed_create(), "name", "VALIDATION_UNIQUENESS"),
        (
            with("url", json!("www.example.com/hook")),
            "url",
            "VALIDATION_FORMAT",
        ),
        (
            with("url", json!("ftp://example.com/")),
            "url",
            "VALIDATION_FORMAT",
        ),
        (
            with(
                "events",
                json!([{"entity_type": "item", "event_types": ["deploy_started"]}]),
            ),
            "events",
            "VALIDATION_INCLUSION",
        ),
        (
            with(
                "events",
                json!([{"entity_type": "record", "event_types": ["create"]}]),
            ),
            "events",
            "VALIDATION_INCLUSION",
        ),
        (
            with(
                "events",
                json!([{"entity_type": "item", "event_types": ["update"],
                "filters": [{"entity_type": "upload", "entity_ids": ["1"]}]}]),
            ),
            "events",
            "VALIDATION_INCLUSION",
        ),
        (
            with(
                "events",
                json!([{"entity_type": "item", "event_types": ["update"],
                "filters": [{"entity_type": "item_type", "entity_ids": []}]}]),
            ),
            "events",
            "VALIDATION_REQUIRED",
        ),
        (
            with(
                "events",
                json!([{"entity_type": "cda_cache_tags", "event_types": ["invalidate"],
                "filters": [{"entity_type": "environment", "entity_ids": ["main"]}]}]),
            ),
            "events",
            "VALIDATION_INCLUSION",
        ),
        (with("events", json!([])), "events", "VALIDATION_REQUIRED"),
        (
            with("headers", json!({"Content-Length": "1"})),
            "headers",
            "VALIDATION_FORMAT",
        ),
        (
            with("http_basic_user", json!("a:b")),
            "http_basic_user",
            "VALIDATION_FORMAT",
        ),
    ];
    for (doc, field, validation) in cases {
        let a = dato(&h, "POST", "/webhooks", Some(&doc)).await;
        invalid_field(&a, field, validation);
    }
    // Unique names are enforced on update too.
    let other = create(
        &h,
        ADMIN_TOKEN,
        &webhook_doc(
            "other",
            "https://x.example.com/",
            json!([{"entity_type": "upload", "event_types": ["create"]}]),
            true,
        ),
    )
    .await;
    let rename = json!({"data": {"type": "webhook", "id": other,
        "attributes": {"name": "Item type creation/update"}}});
    let a = dato(&h, "PUT", &format!("/webhooks/{other}"), Some(&rename)).await;
    invalid_field(&a, "name", "VALIDATION_UNIQUENESS");

    // PUT: `data.id` must be the path's; `data.type` must be webhook.
    let put = json!({"data": {"type": "webhook", "id": other, "attributes": {"enabled": false}}});
    let a = dato(&h, "PUT", &format!("/webhooks/{id}"), Some(&put)).await;
    api_error(&a, 422, "INVALID_FORMAT");
    let put = json!({"data": {"type": "item", "id": id, "attributes": {"enabled": false}}});
    let a = dato(&h, "PUT", &format!("/webhooks/{id}"), Some(&put)).await;
    api_error(&a, 422, "INVALID_TYPE");

    // 404: unknown webhooks and calls, in any id form.
    for path in [
        "/webhooks/312".to_string(),
        format!("/webhooks/{}", "0".repeat(32)),
        "/webhook_calls/42".to_string(),
        "/webhook_calls/nope".to_string(),
    ] {
        let a = dato(&h, "GET", &path, None).await;
        let d = api_error(&a, 404, "NOT_FOUND");
        assert!(d["message"].is_string(), "{d}");
    }
    let a = dato(&h, "POST", "/webhook_calls/42/resend_webhook", None).await;
    api_error(&a, 404, "NOT_FOUND");
    let put = json!({"data": {"type": "webhook", "attributes": {"enabled": false}}});
    let a = dato(&h, "PUT", "/webhooks/312", Some(&put)).await;
    api_error(&a, 404, "NOT_FOUND");
    let a = dato(&h, "DELETE", "/webhooks/312", None).await;
    api_error(&a, 404, "NOT_FOUND");

    // 405: a method the route does not serve.
    let a = dato(&h, "PATCH", &format!("/webhooks/{id}"), Some(&put)).await;
    api_error(&a, 405, "INVALID_ENDPOINT");
    let a = dato(&h, "DELETE", "/webhook_calls", None).await;
    api_error(&a, 405, "INVALID_ENDPOINT");

    // 422: bad listing parameters.
    for (q, code) in [
        ("order_by=name_asc", "INVALID_ORDERING"),
        ("page[limit]=501", "INVALID_PARAMS"),
        ("page%5Boffset%5D=x", "INVALID_PARAMS"),
        (
            "filter[fields][status][eq]=done",
            "INVALID_FILTER_FIELDS_PARAM",
        ),
        (
            "filter[fields][created_at][gt]=soon",
            "INVALID_FILTER_FIELDS_PARAM",
        ),
        ("filter[fields][url][eq]=x", "INVALID_FILTER_FIELDS_PARAM"),
    ] {
        let a = dato(&h, "GET", &format!("/webhook_calls?{q}"), None).await;
        api_error(&a, 422, code);
    }

    // None of the refused writes changed anything.
    let list = dato(&h, "GET", "/webhooks", None).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn delivers_datocms_requests_byte_for_byte_and_logs_calls() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    let events = json!([{"entity_type": "item", "event_types": ["update"],
        "filters": [{"entity_type": "item_type", "entity_ids": ["810928"]}]}]);
    let id = create(
        &h,
        ADMIN_TOKEN,
        &webhook_doc("to capture", &cap.url("/hook?src=dato"), events, true),
    )
    .await;
    // Another model: filtered out.
    let other_model = item_update("c-0", "205").replace("810928", "1");
    h.ingest("/v1/ingest/datocms", "application/json", other_model)
        .await;
    let payload = item_update("c-1", "205");
    h.ingest("/v1/ingest/datocms", "application/json", payload.clone())
        .await;
    let got = cap.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook?src=dato");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("*/*"));
    assert_eq!(r.header("user-agent"), Some("DatoCMS (datocms.com)"));
    assert_eq!(r.header("x-foo"), Some("Bar"));
    assert_eq!(r.header("authorization"), Some("Basic Y2lhbzptaWFv"));
    let call_id = r.header("webhook-id").unwrap().to_string();
    // The body is DatoCMS's, byte for byte, but for this webhook, this call and this attempt.
    let want = payload
        .replace(
            r#""webhook_id": "123""#,
            &format!(r#""webhook_id": "{id}""#),
        )
        .replace(
            r#""webhook_call_id": "c-1""#,
            &format!(r#""webhook_call_id": "{call_id}""#),
        )
        .replace(
            r#""attempted_auto_retries_count": 3"#,
            r#""attempted_auto_retries_count": 0"#,
        );
    assert_eq!(String::from_utf8_lossy(&r.body), want);

    // The call in the log.
    let v = calls_when(&h, ADMIN_TOKEN, "", |v| {
        v["data"][0]["attributes"]["status"] == "success"
    })
    .await;
    assert_eq!(v["meta"]["total_count"], 1, "{v}");
    let c = &v["data"][0];
    assert_eq!(c["type"], "webhook_call");
    assert_eq!(c["id"], call_id.as_str());
    assert_eq!(
        c["relationships"],
        json!({"webhook": {"data": {"type": "webhook", "id": id}}})
    );
    let a = &c["attributes"];
    assert_eq!(a["entity_type"], "item");
    assert_eq!(a["event_type"], "update");
    assert_eq!(a["request_url"], cap.url("/hook?src=dato"));
    assert_eq!(a["request_payload"], want.as_str());
    assert_eq!(a["request_headers"]["User-Agent"], "DatoCMS (datocms.com)");
    assert_eq!(a["request_headers"]["Authorization"], "Basic Y2lhbzptaWFv");
    assert_eq!(a["request_headers"]["X-Foo"], "Bar");
    assert_eq!(a["response_status"], 200);
    assert_eq!(a["attempted_auto_retries_count"], 0);
    assert_eq!(a["next_retry_at"], Value::Null);
    assert!(a["last_sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["included"][0]["id"], id.as_str());
    assert_eq!(v["included"][0]["type"], "webhook");
    let one = dato(&h, "GET", &format!("/webhook_calls/{call_id}"), None).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["data"], *c);
}

/// `POST /webhook_calls/{id}/resend_webhook`, answered `204` with no body.
async fn resend(h: &Herald, call_id: &str) {
    let a = dato(
        h,
        "POST",
        &format!("/webhook_calls/{call_id}/resend_webhook"),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.text());
    assert!(a.body.is_empty());
}

/// A webhook for item updates to `url`, one item update sent, and the call listing once the
/// call has `status`: the webhook's id and the listing.
async fn webhook_with_one_call(
    h: &Herald,
    url: &str,
    auto_retry: bool,
    status: &str,
) -> (String, Value) {
    let events = json!([{"entity_type": "item", "event_types": ["update"]}]);
    let id = create(
        h,
        ADMIN_TOKEN,
        &webhook_doc("hook", url, events, auto_retry),
    )
    .await;
    h.ingest(
        "/v1/ingest/datocms",
        "application/json",
        item_update("one-call", "205"),
    )
    .await;
    let v = calls_when(h, ADMIN_TOKEN, "", |v| {
        v["data"][0]["attributes"]["status"] == status
    })
    .await;
    (id, v)
}

#[tokio::test]
async fn no_auto_retry_fails_once_and_resend_uses_current_settings() {
    let h = Herald::start().await;
    let cap = Capture::with_default(Reply {
        body: "nope".into(),
        ..Reply::status(500)
    })
    .await;
    let (id, v) = webhook_with_one_call(&h, &cap.url("/old"), false, "failed").await;
    // Failed for good after its one attempt: no retry is scheduled.
    assert_eq!(cap.count(), 1);
    let c = &v["data"][0];
    let call_id = c["id"].as_str().unwrap().to_string();
    let a = &c["attributes"];
    assert_eq!(a["response_status"], 500);
    assert_eq!(a["response_payload"], "nope");
    assert_eq!(a["attempted_auto_retries_count"], 0);
    assert_eq!(a["next_retry_at"], Value::Null);

    // Fix the webhook, then resend: the call goes to the new URL with the new headers.
    cap.set_default(Reply::status(200));
    let put = json!({"data": {"type": "webhook", "id": id,
        "attributes": {"url": cap.url("/new"), "headers": {"X-Fixed": "yes"}}}});
    let a = dato(&h, "PUT", &format!("/webhooks/{id}"), Some(&put)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    resend(&h, &call_id).await;
    let got = cap.wait_for(2, WAIT).await;
    assert_eq!(got[1].path, "/new");
    assert_eq!(got[1].header("x-fixed"), Some("yes"));
    assert_eq!(got[1].header("x-foo"), None);
    assert_eq!(got[1].header("webhook-id"), Some(call_id.as_str()));
    let body = got[1].json();
    assert_eq!(body["webhook_call_id"], call_id.as_str());
    assert_eq!(body["webhook_id"], id.as_str());
    // The resend is the call's second attempt (manual resends count, see the docs).
    assert_eq!(body["attempted_auto_retries_count"], 1);
    let v = calls_when(&h, ADMIN_TOKEN, "", |v| {
        v["data"][0]["attributes"]["status"] == "success"
    })
    .await;
    assert_eq!(v["data"][0]["attributes"]["request_url"], cap.url("/new"));
    assert_eq!(cap.count(), 2);
}

/// A call delivered at once is logged with the commit's other first deliveries (see the
/// journal's "Delivered groups"); a resend logs its second attempt over it, and the call is
/// still listed once, here and under its webhook.
#[tokio::test]
async fn resending_a_delivered_call_logs_it_once_with_both_attempts() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    let (id, v) = webhook_with_one_call(&h, &cap.url("/ok"), true, "success").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let call_id = v["data"][0]["id"].as_str().unwrap().to_string();
    let first_sent = v["data"][0]["attributes"]["last_sent_at"].clone();

    resend(&h, &call_id).await;
    let got = cap.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), Some(call_id.as_str()));
    assert_eq!(got[1].json()["attempted_auto_retries_count"], 1);
    let resent = |v: &Value| {
        let a = &v["data"][0]["attributes"];
        a["status"] == "success" && a["last_sent_at"] != first_sent
    };
    for query in [
        String::new(),
        format!("?filter[fields][webhook_id][eq]={id}"),
    ] {
        let v = calls_when(&h, ADMIN_TOKEN, &query, resent).await;
        let calls = v["data"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{query}: {v}");
        assert_eq!(calls[0]["id"], call_id.as_str());
    }
    let one = dato(&h, "GET", &format!("/webhook_calls/{call_id}"), None).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["data"]["attributes"]["status"], "success");
    // The whole log (Herald's own API, no subscription filter) has it once too, with both
    // attempts in its record and in its attempt log.
    let v = h.api("GET", "/v1/deliveries", None).await.json();
    let rows: Vec<&Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == call_id.as_str())
        .collect();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["status"], "delivered");
    assert_eq!(rows[0]["attempts"], 2);
    let detail = h
        .api("GET", &format!("/v1/deliveries/{call_id}"), None)
        .await
        .json();
    assert_eq!(
        detail["attempt_log"].as_array().unwrap().len(),
        2,
        "{detail}"
    );
    assert_eq!(cap.count(), 2);
}

#[tokio::test]
async fn webhook_calls_filters_order_and_paging() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    let items = create(
        &h,
        ADMIN_TOKEN,
        &webhook_doc(
            "items",
            &cap.url("/items"),
            json!([{"entity_type": "item", "event_types": ["update"]}]),
            true,
        ),
    )
    .await;
    let uploads = create(
        &h,
        ADMIN_TOKEN,
        &webhook_doc(
            "uploads",
            &cap.url("/uploads"),
            json!([{"entity_type": "upload", "event_types": ["create"]}]),
            true,
        ),
    )
    .await;
    // Three item updates and two upload creations, in this order.
    for (i, body) in [
        item_update("p-1", "205"),
        upload_create("p-2"),
        item_update("p-3", "205"),
        upload_create("p-4"),
        item_update("p-5", "205"),
    ]
    .into_iter()
    .enumerate()
    {
        h.ingest("/v1/ingest/datocms", "application/json", body)
            .await;
        // Wait for each, so creation times are strictly ordered.
        cap.wait_for(i + 1, WAIT).await;
    }
    let all = calls_when(&h, ADMIN_TOKEN, "?page[limit]=500", |v| {
        v["data"].as_array().is_some_and(|d| {
            d.len() == 5 && d.iter().all(|c| c["attributes"]["status"] == "success")
        })
    })
    .await;
    assert_eq!(all["meta"]["total_count"], 5);
    // Newest first by default.
    let ids: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let kinds: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["attributes"]["entity_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["item", "upload", "item", "upload", "item"]);
    let included: Vec<&str> = all["included"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(included, [items.as_str(), uploads.as_str()]);

    let hr = &h;
    let page = |q: String| async move {
        let a = dato(hr, "GET", &format!("/webhook_calls?{q}"), None).await;
        assert_eq!(a.status, 200, "{q}: {}", a.text());
        let v = a.json();
        let got: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        (v["meta"]["total_count"].as_u64().unwrap(), got)
    };
    let pick = |idx: &[usize]| idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>();
    let created = |i: usize| {
        all["data"][i]["attributes"]["created_at"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let sent = |i: usize| {
        all["data"][i]["attributes"]["last_sent_at"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cases: Vec<(String, (u64, Vec<String>))> = vec![
        (
            "order_by=created_at_asc".into(),
            (5, pick(&[4, 3, 2, 1, 0])),
        ),
        ("page[offset]=1&page[limit]=2".into(), (5, pick(&[1, 2]))),
        ("page[offset]=4&page[limit]=2".into(), (5, pick(&[4]))),
        (
            format!("filter[fields][webhook_id][eq]={uploads}"),
            (2, pick(&[1, 3])),
        ),
        (
            "filter[fields][entity_type][eq]=item".into(),
            (3, pick(&[0, 2, 4])),
        ),
        (
            "filter[fields][event_type][eq]=create".into(),
            (2, pick(&[1, 3])),
        ),
        (
            "filter[fields][status][eq]=success".into(),
            (5, pick(&[0, 1, 2, 3, 4])),
        ),
        ("filter[fields][status][eq]=failed".into(), (0, vec![])),
        (
            format!("filter[ids]={},{}", ids[4], ids[0]),
            (2, pick(&[0, 4])),
        ),
        (
            format!(
                "filter[fields][created_at][gt]={}&filter[fields][created_at][lt]={}",
                created(4),
                created(0)
            ),
            (3, pick(&[1, 2, 3])),
        ),
        (
            format!("filter[fields][last_sent_at][lt]={}", sent(2)),
            (2, pick(&[3, 4])),
        ),
        ("order_by=webhook_id_asc".into(), {
            let mut by_hook = [
                (items.clone(), [0usize, 2, 4].as_slice()),
                (uploads.clone(), &[1, 3]),
            ];
            by_hook.sort();
            let order: Vec<usize> = by_hook
                .iter()
                .flat_map(|(_, idx)| idx.iter().rev().copied())
                .collect();
            (5, pick(&order))
        }),
        (
            "order_by=next_retry_at_asc".into(),
            (5, pick(&[4, 3, 2, 1, 0])),
        ),
    ];
    for (q, want) in cases {
        assert_eq!(page(q.clone()).await, want, "{q}");
    }
    // The same listing, encoded as DatoCMS's client encodes it.
    assert_eq!(
        page("filter%5Bfields%5D%5Bstatus%5D%5Beq%5D=success&page%5Blimit%5D=1".into()).await,
        (5, pick(&[0]))
    );
}

#[tokio::test]
async fn tokens_scoped_to_a_site_see_and_receive_only_that_site() {
    let h = Herald::start_with(Options {
        auth: format!(
            "admin_tokens = [\"{ADMIN_TOKEN}\"]\n\
             [[auth.tokens]]\ntoken = \"{SITE_A_TOKEN}\"\nscopes = [\"site:205\"]\n\
             [[auth.tokens]]\ntoken = \"{SITE_B_TOKEN}\"\nscopes = [\"site:206\"]\n\
             [[auth.tokens]]\ntoken = \"{SPACE_TOKEN}\"\nscopes = [\"space:production\"]\n"
        ),
        ..Options::default()
    })
    .await;
    let cap_a = Capture::start().await;
    let cap_b = Capture::start().await;
    let cap_all = Capture::start().await;
    let events = json!([{"entity_type": "item", "event_types": ["update"]}]);
    let a_id = create(
        &h,
        SITE_A_TOKEN,
        &webhook_doc("hook", &cap_a.url("/a"), events.clone(), true),
    )
    .await;
    // The same name in another site is fine: names are unique per site.
    let b_id = create(
        &h,
        SITE_B_TOKEN,
        &webhook_doc("hook", &cap_b.url("/b"), events.clone(), true),
    )
    .await;
    // An unscoped token makes an untenanted webhook, for every site.
    create(
        &h,
        ADMIN_TOKEN,
        &webhook_doc("all sites", &cap_all.url("/all"), events.clone(), true),
    )
    .await;
    // A token without a site cannot create DatoCMS webhooks.
    let a = call_as(
        &h,
        Some(SPACE_TOKEN),
        "POST",
        "/webhooks",
        Some(&webhook_doc("x", "https://x.example.com/", events, true)),
    )
    .await;
    api_error(&a, 403, "INSUFFICIENT_PERMISSIONS");
    let a = call_as(&h, Some(SPACE_TOKEN), "GET", "/webhooks", None).await;
    assert_eq!(a.json(), json!({"data": []}));

    // Each site token sees only its own webhook; the admin sees all three.
    let hr = &h;
    let listed = |token: &'static str| {
        let h = hr;
        async move {
            let v = call_as(h, Some(token), "GET", "/webhooks", None)
                .await
                .json();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(SITE_A_TOKEN).await, [a_id.as_str()]);
    assert_eq!(listed(SITE_B_TOKEN).await, [b_id.as_str()]);
    assert_eq!(listed(ADMIN_TOKEN).await.len(), 3);
    let a = call_as(
        &h,
        Some(SITE_B_TOKEN),
        "GET",
        &format!("/webhooks/{a_id}"),
        None,
    )
    .await;
    api_error(&a, 404, "NOT_FOUND");
    let a = call_as(
        &h,
        Some(SITE_B_TOKEN),
        "DELETE",
        &format!("/webhooks/{a_id}"),
        None,
    )
    .await;
    api_error(&a, 404, "NOT_FOUND");
    // The tenant shows natively.
    let uuid = uuid::Uuid::parse_str(&a_id)
        .unwrap()
        .hyphenated()
        .to_string();
    let n = h
        .api("GET", &format!("/v1/subscriptions/{uuid}"), None)
        .await
        .json();
    assert_eq!(n["tenant"], json!({"kind": "site", "name": "205"}));

    // Each site's event reaches its site's webhook and the untenanted one.
    h.ingest(
        "/v1/ingest/datocms",
        "application/json",
        item_update("s-1", "206"),
    )
    .await;
    h.ingest(
        "/v1/ingest/datocms",
        "application/json",
        item_update("s-2", "205"),
    )
    .await;
    let all = cap_all.wait_for(2, WAIT).await;
    // Order is not promised: the endpoint gets its deliveries concurrently.
    let mut sites: Vec<String> = all
        .iter()
        .map(|c| c.json()["site_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    sites.sort();
    assert_eq!(sites, ["205", "206"]);
    let got = cap_a.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["site_id"], "205");
    assert_eq!(got[0].json()["webhook_id"], a_id.as_str());
    let got = cap_b.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["site_id"], "206");

    // Calls: each site sees the one call of its webhook, not the other site's.
    let v = calls_when(&h, SITE_A_TOKEN, "", |v| {
        v["data"][0]["attributes"]["status"] == "success"
    })
    .await;
    assert_eq!(v["meta"]["total_count"], 1, "{v}");
    let call = v["data"][0]["id"].as_str().unwrap().to_string();
    let v = calls_when(&h, SITE_B_TOKEN, "", |v| {
        v["data"][0]["attributes"]["status"] == "success"
    })
    .await;
    assert_eq!(v["meta"]["total_count"], 1, "{v}");
    assert_eq!(
        v["data"][0]["relationships"]["webhook"]["data"]["id"],
        b_id.as_str()
    );
    assert_ne!(v["data"][0]["id"], call.as_str());
    let v = call_as(
        &h,
        Some(SITE_B_TOKEN),
        "GET",
        &format!("/webhook_calls?filter[ids]={call}"),
        None,
    )
    .await
    .json();
    assert_eq!(v["meta"]["total_count"], 0, "{v}");
    let a = call_as(
        &h,
        Some(SITE_B_TOKEN),
        "GET",
        &format!("/webhook_calls/{call}"),
        None,
    )
    .await;
    api_error(&a, 404, "NOT_FOUND");
    let a = call_as(
        &h,
        Some(SITE_B_TOKEN),
        "POST",
        &format!("/webhook_calls/{call}/resend_webhook"),
        None,
    )
    .await;
    api_error(&a, 404, "NOT_FOUND");
    assert_eq!(cap_a.count(), 1);
}

#[tokio::test]
async fn mustache_custom_payload_and_url() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    // A templated URL and a payload with sections, dotted names, escaped and raw values.
    let template = concat!(
        r#"{"event": "{{entity_type}}.{{event_type}}", "title": "{{entity.attributes.title}}", "#,
        r#""raw": "{{{entity.attributes.title}}}", "call": "{{webhook_call_id}}", "#,
        r#""hook": "{{webhook_id}}", "retries": {{attempted_auto_retries_count}}, "#,
        r#""models": [{{#related_entities}}"{{attributes.api_key}}"{{/related_entities}}], "#,
        r#""id": "{{#entity}}{{id}}{{/entity}}"{{^previous_entity}}, "new": true{{/previous_entity}}}"#
    );
    let mut doc = webhook_doc(
        "templated",
        &format!(
            "{}/hooks/{{{{entity_type}}}}/{{{{entity.id}}}}?env={{{{environment}}}}",
            cap.url("")
        ),
        json!([{"entity_type": "item", "event_types": ["update"]}]),
        true,
    );
    doc["data"]["attributes"]["custom_payload"] = json!(template);
    let templated = create(&h, ADMIN_TOKEN, &doc).await;
    // The seed's own example, pointed at the capture receiver: its template is not JSON.
    let mut seed = seed_create();
    seed["data"]["attributes"]["url"] = json!(cap.url("/seed"));
    let seed_id = create(&h, ADMIN_TOKEN, &seed).await;

    h.ingest(
        "/v1/ingest/datocms",
        "application/json",
        item_update("m-1", "205"),
    )
    .await;
    let got = cap.wait_for(2, WAIT).await;
    let by_path = |p: &str| {
        got.iter()
            .find(|c| c.path.starts_with(p))
            .unwrap_or_else(|| panic!("no request to {p}: {got:?}"))
    };

    let r = by_path("/hooks/");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/item/39830648?env=foo-bar");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("user-agent"), Some("DatoCMS (datocms.com)"));
    assert_eq!(r.header("authorization"), Some("Basic Y2lhbzptaWFv"));
    let call = r.header("webhook-id").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!(
            concat!(
                r#"{{"event": "item.update", "title": "On &quot;Mustache&quot; &amp; &lt;html&gt;", "#,
                r#""raw": "On "Mustache" & <html>", "call": "{call}", "#,
                r#""hook": "{hook}", "retries": 0, "#,
                r#""models": ["author"], "#,
                r#""id": "39830648"}}"#
            ),
            call = call,
            hook = templated
        )
    );

    let r = by_path("/seed");
    assert_eq!(
        r.header("authorization"),
        Some("Basic dXNlcjpwYXNzd29yZA==")
    );
    assert_eq!(r.header("x-foo"), Some("Bar"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        r#"{ "message": "update event triggered on item!", "entity_id": "39830648"] }"#
    );

    // The log shows the templated request too.
    let v = calls_when(
        &h,
        ADMIN_TOKEN,
        &format!("?filter[fields][webhook_id][eq]={templated}"),
        |v| v["data"][0]["attributes"]["status"] == "success",
    )
    .await;
    let a = &v["data"][0]["attributes"];
    assert_eq!(
        a["request_url"],
        cap.url("/hooks/item/39830648?env=foo-bar")
    );
    assert_eq!(
        a["request_payload"],
        String::from_utf8_lossy(&by_path("/hooks/").body).as_ref()
    );
    let v = calls_when(
        &h,
        ADMIN_TOKEN,
        &format!("?filter[fields][webhook_id][eq]={seed_id}"),
        |v| v["data"][0]["attributes"]["status"] == "success",
    )
    .await;
    assert_eq!(v["meta"]["total_count"], 1);

    // A template that does not compile is refused when saved, never at delivery.
    let mut bad = seed_create();
    bad["data"]["attributes"]["name"] = json!("bad payload");
    bad["data"]["attributes"]["custom_payload"] = json!("{{#entity}} never closed");
    let a = dato(&h, "POST", "/webhooks", Some(&bad)).await;
    invalid_field(&a, "custom_payload", "VALIDATION_FORMAT");
    let mut bad = seed_create();
    bad["data"]["attributes"]["name"] = json!("bad url");
    bad["data"]["attributes"]["url"] = json!("https://example.com/{{#entity}}");
    let a = dato(&h, "POST", "/webhooks", Some(&bad)).await;
    invalid_field(&a, "url", "VALIDATION_FORMAT");
    let put = json!({"data": {"type": "webhook", "id": templated,
        "attributes": {"custom_payload": "{{/entity}}"}}});
    let a = dato(&h, "PUT", &format!("/webhooks/{templated}"), Some(&put)).await;
    invalid_field(&a, "custom_payload", "VALIDATION_FORMAT");
}
