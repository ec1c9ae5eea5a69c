//! The Contensis webhook subscriptions API (spec §2): the seed's own example request, CRUD with
//! `versionNo` concurrency, every documented error in the Contensis Error shape, project scopes,
//! the same subscription through the native API, and what a receiver gets for real Contensis
//! event payloads.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::Answer;
use crate::support::{ADMIN_TOKEN, Capture, Herald, Options};

const WAIT: Duration = Duration::from_secs(20);

const BASE: &str = "/api/management/projects/movies/events/webhooks/subscriptions";

/// Seed 001's create request, its comments removed, exactly as the seed writes it.
const SEED_REQUEST: &str = r#"{
"name": {
"en-GB": "name"
},
"description": {
"en-GB": "some description"
},
"url": "https://external.mywebsite.com/handlewebhooks/{/resource/sys.id}",
"enabled": true,
"topics": [
{
"resourceType": "entry",
"event": ["updated", "created"],
"language": ["fr-fr"],
"contentTypeId": ["blog", "news"],
"owner": "t.durden"
},
{
"resourceType": "entry",
"event": ["published"],
"contentTypeId": ["news"],
"owner": "t.durden"
},
{
"resourceType": "contentType",
"event": ["created"]
},
{
"resourceType": "entry",
"event": ["workflowEventRaised"],
"contentTypeId": ["blog"],
"owner": "t.durden",
"workflowEvent" : ["contensisentrybasic.draft.submit", "contensisentryapproval.awaitingApproval.approve"]
},
{
"resourceType": "entry",
"event": ["workflowEventRaised"],
"contentTypeId": ["news"],
"owner": "t.durden",
"workflowEvent" : ["contensisentryapproval.awaitingApproval.declined"]
},
{
"resourceType": "entry",
"event": ["workflowStateChanged"],
"contentTypeId": ["blog"],
"owner": "t.durden",
"workflowState" : ["contensisentryapproval.awaitingApproval"]
}
],
"headers": {
"target": {
"value": "internal"
},
"department": {
"value": "{/resource/department}"
},
"secretHeaderSet": {
"secret": true,
"value": "cs7vdsdvj~8"
},
"secretHeaderGet": {
"secret": true
}
},
"templates": {
"entry": {
"event": "{/event/name}",
"user": "{/user/firstname} {/user/lastname}",
"id": "{/resource/sys/id}",
"title": "{/resource/entryTitle}",
"description": "{/resource/entryDescription}",
"department": "{/resource/department}"
},
"entry.news": {
"event": "{/event/name}",
"id": "{/resource/sys/id}",
"title": "{/resource/entryTitle}",
"headline": "{/resource/headline}"
},
"contentType": "{/resource/}"
}
}"#;

/// A Contensis call with `token`, the body sent as written (key order matters for templates).
async fn call(h: &Herald, method: &str, path: &str, body: &str, token: &str) -> Answer {
    let ct = (!body.is_empty()).then_some("application/json");
    h.request(method, path, ct, body.to_string(), Some(token))
        .await
}

async fn admin(h: &Herald, method: &str, path: &str, body: &str) -> Answer {
    call(h, method, path, body, ADMIN_TOKEN).await
}

/// Asserts the Contensis Error shape and returns the body.
fn error(a: &Answer, status: u16, kind: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    let v = a.json();
    let members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(members, ["data", "logId", "message", "type"], "{v}");
    let log_id = v["logId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(log_id).is_ok(), "logId {log_id}");
    assert!(!v["message"].as_str().unwrap().is_empty());
    assert_eq!(v["type"], kind, "{v}");
    v
}

/// The fields a `Validation` error names.
fn fields(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
            f["field"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Seed 001's request pointed at `url`.
fn seed_at(url: &str) -> String {
    SEED_REQUEST.replace(
        "https://external.mywebsite.com/handlewebhooks/{/resource/sys.id}",
        url,
    )
}

#[tokio::test]
async fn the_seed_request_creates_and_reads_back() {
    let h = Herald::start().await;
    // The seed posts to the collection with a trailing slash.
    let a = admin(&h, "POST", &format!("{BASE}/"), SEED_REQUEST).await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    let text = a.text();
    assert!(!text.contains("cs7vdsdvj~8"), "a secret leaked: {text}");
    let v = a.json();
    let id = v["id"].as_str().unwrap().to_string();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(
        uuid.hyphenated().to_string(),
        id,
        "a hyphenated lower-case uuid"
    );
    assert_eq!(v["name"], "name");
    assert_eq!(v["description"], "some description");
    assert_eq!(
        v["url"],
        "https://external.mywebsite.com/handlewebhooks/{/resource/sys.id}"
    );
    assert_eq!(
        (&v["enabled"], &v["method"]),
        (&json!(true), &json!("POST"))
    );
    let seed: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    assert_eq!(v["topics"], seed["topics"]);
    assert_eq!(v["templates"], seed["templates"]);
    // Template objects come back in the order they were written.
    assert!(
        text.contains(r#""entry":{"event":"{/event/name}","user":"{/user/firstname} {/user/lastname}","id":"{/resource/sys/id}","title""#),
        "{text}"
    );
    // Secret headers are write-only; a header without a value is not kept.
    assert_eq!(
        v["headers"],
        json!({"target": {"value": "internal"}, "department": {"value": "{/resource/department}"},
               "secretHeaderSet": {"secret": true}})
    );
    let version = &v["version"];
    assert_eq!(version["versionNo"], "1.0");
    assert_eq!(version["createdBy"], version["modifiedBy"]);
    assert_eq!(version["created"], version["modified"]);
    assert!(
        version["created"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{version}"
    );

    // GET and the list show the same subscription.
    let got = admin(&h, "GET", &format!("{BASE}/{id}"), "").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json(), v);
    let list = admin(&h, "GET", BASE, "").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json(), json!([v]), "a bare array");
    // Another project has none.
    let other = admin(
        &h,
        "GET",
        "/api/management/projects/other/events/webhooks/subscriptions",
        "",
    )
    .await;
    assert_eq!(other.json(), json!([]));
    let other = admin(
        &h,
        "GET",
        &format!("/api/management/projects/other/events/webhooks/subscriptions/{id}"),
        "",
    )
    .await;
    let e = error(&other, 404, "error");
    assert_eq!(e["message"], "Subscription not found");
}

#[tokio::test]
async fn put_needs_the_current_version_and_delete_answers_204() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    let created = admin(&h, "POST", BASE, &seed_at(&cap.url("/hook"))).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    let path = format!("{BASE}/{id}");

    // A full replacement based on version 1.0; the secret header is sent without its value.
    let replacement = |version: &str| {
        format!(
            r#"{{"name": "renamed", "description": "d2", "url": "{}", "enabled": false, "method": "PATCH",
                "topics": [{{"resourceType": "entry", "event": "published"}}],
                "headers": {{"secretHeaderSet": {{"secret": true}}, "x-new": {{"value": "v"}}}},
                "templates": {{}}, "ui": false, {version}}}"#,
            cap.url("/hook")
        )
    };
    let a = admin(
        &h,
        "PUT",
        &path,
        &replacement(r#""version": {"versionNo": "1.0"}"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["version"]["versionNo"], "2.0");
    assert_eq!(
        (&v["name"], &v["enabled"], &v["method"]),
        (&json!("renamed"), &json!(false), &json!("PATCH"))
    );
    assert_eq!(
        v["topics"],
        json!([{"resourceType": "entry", "event": "published"}])
    );
    assert_eq!(v["templates"], json!({}));
    assert_eq!(v["ui"], false);
    assert_eq!(
        v["headers"],
        json!({"secretHeaderSet": {"secret": true}, "x-new": {"value": "v"}})
    );
    assert!(v["version"]["modified"].as_str() >= v["version"]["created"].as_str());
    // The secret was kept: the native view (which also hides it) shows the header is there,
    // and delivery (below, in `delivers_what_contensis_sends`) sends it.
    let native = h
        .api("GET", &format!("/v1/subscriptions/{id}"), None)
        .await
        .json();
    assert_eq!(
        native["headers"]["secretHeaderSet"],
        json!({"secret": true})
    );

    // The same PUT again is stale now: 409, and nothing changes.
    let stale = admin(
        &h,
        "PUT",
        &path,
        &replacement(r#""version": {"versionNo": "1.0"}"#),
    )
    .await;
    let e = error(&stale, 409, "error");
    assert_eq!(e["data"]["currentVersionNo"], "2.0");
    assert_eq!(e["data"]["versionNo"], "1.0");
    assert_eq!(e["data"]["subscriptionId"], id.as_str());
    // No versionNo at all: a validation error.
    let missing = admin(&h, "PUT", &path, &replacement(r#""version": {}"#)).await;
    let e = error(&missing, 400, "Validation");
    assert_eq!(fields(&e), ["version.versionNo"]);
    let now = admin(&h, "GET", &path, "").await.json();
    assert_eq!(now["version"]["versionNo"], "2.0");

    // A PUT of what GET returned (the client's usual round trip) is accepted.
    let mut back = now.clone();
    back["description"] = json!("d3");
    let a = admin(&h, "PUT", &path, &back.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["version"]["versionNo"], "3.0");
    assert_eq!(a.json()["headers"], now["headers"]);

    // Unknown and malformed ids.
    for missing in [
        format!("{BASE}/{}", uuid::Uuid::new_v4()),
        format!("{BASE}/not-a-guid"),
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let a = admin(
                &h,
                method,
                &missing,
                &replacement(r#""version": {"versionNo": "1.0"}"#),
            )
            .await;
            let e = error(&a, 404, "error");
            assert_eq!(e["message"], "Subscription not found", "{method} {missing}");
        }
    }

    let del = admin(&h, "DELETE", &path, "").await;
    assert_eq!(del.status, 204, "{}", del.text());
    assert!(del.body.is_empty());
    error(&admin(&h, "GET", &path, "").await, 404, "error");
    error(&admin(&h, "DELETE", &path, "").await, 404, "error");
    assert_eq!(admin(&h, "GET", BASE, "").await.json(), json!([]));
}

#[tokio::test]
async fn every_validation_error_is_listed_in_the_contensis_shape() {
    let h = Herald::start().await;
    let ok_topic = r#"[{"resourceType": "entry", "event": "published"}]"#;
    let with = |extra: &str| {
        format!(
            r#"{{"name": "n", "url": "https://hooks.example.com/x", "topics": {ok_topic}{extra}}}"#
        )
    };
    // (body, fields that must be named)
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("{}".into(), vec!["name", "url", "topics"]),
        (r#"{"name": {"en-GB": ""}, "url": 5, "topics": []}"#.into(), vec!["name.en-GB", "url", "topics"]),
        (with(r#", "bogus": 1"#), vec!["bogus"]),
        (with(r#", "method": "TRACE", "enabled": "yes""#), vec!["method", "enabled"]),
        (
            r#"{"name": "n", "url": "https://hooks.example.com/x", "topics": [
                {"resourceType": "widget", "event": "created"},
                {"resourceType": "entry", "event": ["published", "exploded"]},
                {"resourceType": "entry", "event": ["workflowStateChanged"]},
                {"resourceType": "entry", "event": ["workflowEventRaised"]},
                {"resourceType": "entry", "event": ["published"], "workflowState": ["x"]},
                {"resourceType": "user", "event": ["created"], "contentTypeId": ["blog"]},
                {"resourceType": "entry"},
                {"event": "created", "dataFormat": "entry"}
            ]}"#
            .into(),
            vec![
                "topics[0].resourceType",
                "topics[1].event[1]",
                "topics[2].workflowState",
                "topics[3].workflowEvent",
                "topics[4].workflowState",
                "topics[5].contentTypeId",
                "topics[6].event",
                "topics[7].resourceType",
                "topics[7].dataFormat",
            ],
        ),
        (
            with(r#", "headers": {"A": "plain", "B": {"value": 1}, "C": {"secret": "yes"}, "D": {"value": "v", "x": 1}}"#),
            vec!["headers.A", "headers.B.value", "headers.C.secret", "headers.D.x"],
        ),
        (
            with(r#", "templates": {"widget": "{/}", "entry": 5, "asset.": "x"}"#),
            vec!["templates.widget", "templates.entry", "templates.asset."],
        ),
        // Refused when the subscription is compiled, mapped to the Contensis field.
        (
            r#"{"name": "n", "url": "ftp://hooks.example.com/x", "topics": [{"resourceType": "entry", "event": "published"}]}"#.into(),
            vec!["url"],
        ),
        (with(r#", "headers": {"content-length": {"value": "1"}}"#), vec!["headers.content-length"]),
        ("[1, 2]".into(), vec![""]),
    ];
    for (body, want) in cases {
        let a = admin(&h, "POST", BASE, &body).await;
        let e = error(&a, 400, "Validation");
        let got = fields(&e);
        for w in &want {
            assert!(
                got.iter().any(|g| g == w),
                "{w} missing from {got:?} for {body}"
            );
        }
    }
    // Not JSON at all, or JSON that repeats a key: 400 in the Error shape.
    for bad in ["{", r#"{"name": "a", "name": "b"}"#] {
        error(&admin(&h, "POST", BASE, bad).await, 400, "error");
    }
    // A projectId Herald cannot take as is.
    let a = admin(
        &h,
        "POST",
        "/api/management/projects/a%20b/events/webhooks/subscriptions",
        &with(""),
    )
    .await;
    assert_eq!(fields(&error(&a, 400, "Validation")), ["projectId"]);
    // Other methods.
    let a = admin(&h, "PATCH", BASE, "").await;
    error(&a, 405, "error");
    assert_eq!(a.headers.get("allow").unwrap(), "GET, POST");
    // Nothing was created along the way.
    assert_eq!(admin(&h, "GET", BASE, "").await.json(), json!([]));
    assert_eq!(
        h.api("GET", "/v1/subscriptions", None).await.json()["data"],
        json!([])
    );
}

#[tokio::test]
async fn tokens_are_scoped_to_projects() {
    const SCOPED: &str = "movies-token-0123456789";
    let h = Herald::start_with(Options {
        auth: format!(
            "admin_tokens = [\"{ADMIN_TOKEN}\"]\n[[auth.tokens]]\ntoken = \"{SCOPED}\"\nscopes = [\"project:movies\"]\n"
        ),
        ..Default::default()
    })
    .await;
    let body = r#"{"name": "n", "url": "https://hooks.example.com/x", "topics": [{"resourceType": "entry", "event": "published"}]}"#;
    let other = "/api/management/projects/other/events/webhooks/subscriptions";

    // No token, a wrong one: 401 in the Contensis shape.
    let a = h.request("GET", BASE, None, "", None).await;
    error(&a, 401, "error");
    error(
        &call(&h, "POST", BASE, body, "wrong-token-0123456789").await,
        401,
        "error",
    );

    // The scoped token works in its project…
    let mine = call(&h, "POST", BASE, body, SCOPED).await;
    assert_eq!(mine.status, 201, "{}", mine.text());
    let mine = mine.json()["id"].as_str().unwrap().to_string();
    // …and is refused in any other, whatever the method.
    for (method, path) in [
        ("GET", other.to_string()),
        ("POST", other.to_string()),
        ("GET", format!("{other}/{mine}")),
        ("PUT", format!("{other}/{mine}")),
        ("DELETE", format!("{other}/{mine}")),
    ] {
        let e = error(&call(&h, method, &path, body, SCOPED).await, 403, "error");
        assert_eq!(e["data"]["projectId"], "other", "{method} {path}");
    }
    // A subscription of another project is not found through this project's URL.
    let theirs = admin(&h, "POST", other, body).await;
    assert_eq!(theirs.status, 201);
    let theirs = theirs.json()["id"].as_str().unwrap().to_string();
    let e = error(
        &call(&h, "GET", &format!("{BASE}/{theirs}"), "", SCOPED).await,
        404,
        "error",
    );
    assert_eq!(e["message"], "Subscription not found");
    let list = call(&h, "GET", BASE, "", SCOPED).await.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    // The full-access token sees both projects.
    assert_eq!(
        admin(&h, "GET", other, "")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Through the native API the scoped token sees only its project's subscription.
    let native = h
        .request("GET", "/v1/subscriptions", None, "", Some(SCOPED))
        .await
        .json();
    let ids: Vec<&str> = native["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
}

#[tokio::test]
async fn the_native_api_sees_and_manages_the_same_subscription() {
    let h = Herald::start().await;
    let created = admin(&h, "POST", BASE, SEED_REQUEST).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    let native = h.api("GET", &format!("/v1/subscriptions/{id}"), None).await;
    assert_eq!(native.status, 200);
    let n = native.json();
    assert_eq!(n["dialect"], "contensis");
    assert_eq!(n["tenant"], json!({"kind": "project", "name": "movies"}));
    assert_eq!(n["format"], "contensis");
    assert_eq!(n["timeout"], "10s");
    assert_eq!(n["signed"], false);
    assert_eq!(
        n["retry"]["schedule"],
        json!([
            "2m 30s", "5m", "10m", "20m", "40m", "1h 20m", "2h 40m", "5h 20m", "10h 40m"
        ])
    );
    assert_eq!(n["filters"].as_array().unwrap().len(), 6);
    assert_eq!(
        n["filters"][1],
        json!({"types": ["entry.published"],
        "attributes": {"contenttype": ["news"], "owner": ["t.durden"], "project": ["movies"]}})
    );
    assert_eq!(n["version"], 1);

    // Disabled through the native API: Contensis shows it, with the next versionNo.
    let p = h
        .api(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let v = admin(&h, "GET", &format!("{BASE}/{id}"), "").await.json();
    assert_eq!(
        (&v["enabled"], &v["version"]["versionNo"]),
        (&json!(false), &json!("2.0"))
    );
    let seed: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    assert_eq!(
        v["topics"], seed["topics"],
        "the topics as written still describe the filters"
    );

    // New filters through the native API: the Contensis view shows topics made from them.
    let p = h
        .api(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"filters": [{"types": ["entry.published"], "attributes": {"project": ["movies"], "language": ["en-gb"]}}]})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let v = admin(&h, "GET", &format!("{BASE}/{id}"), "").await.json();
    assert_eq!(
        v["topics"],
        json!([{"resourceType": "entry", "event": ["published"], "language": ["en-gb"]}])
    );
    assert_eq!(v["version"]["versionNo"], "3.0");

    // A native subscription is not under any project.
    let native_id = h
        .subscribe(json!({"name": "native", "url": "https://hooks.example.com/n"}))
        .await;
    let list = admin(&h, "GET", BASE, "").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    error(
        &admin(&h, "GET", &format!("{BASE}/{native_id}"), "").await,
        404,
        "error",
    );

    // Deleted through the native API: gone from Contensis.
    let d = h
        .api("DELETE", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert_eq!(d.status, 204);
    error(
        &admin(&h, "GET", &format!("{BASE}/{id}"), "").await,
        404,
        "error",
    );
}

/// A full Contensis event context (what a template sees, spec §2.4) for an entry.
fn entry_event(
    event_id: &str,
    name: &str,
    entry_id: &str,
    content_type: &str,
    language: &str,
    project: &str,
    workflow: &str,
) -> String {
    format!(
        r#"{{
  "event": {{
    "id": "{event_id}",
    "name": "{name}",
    "resourceType": "entry",
    "dateTime": "2024-05-01T10:15:30.123Z",
    "resourceId": "{entry_id}",
    "resourceUrl": "https://cms-example.cloud.contensis.com/api/management/projects/{project}/entries/{entry_id}"
  }},
  "user": {{ "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" }},
  "resource": {{
    "entryTitle": "Title of {entry_id}",
    "entryDescription": "The first rule",
    "headline": "Headline of {entry_id}",
    "department": "Films",
    "sys": {{
      "id": "{entry_id}",
      "projectId": "{project}",
      "contentTypeId": "{content_type}",
      "dataFormat": "entry",
      "language": "{language}",
      "owner": "T.Durden"{workflow},
      "version": {{ "versionNo": "2.0", "published": "2024-05-01T10:15:30.123Z" }}
    }}
  }}
}}"#
    )
}

const APPROVED: &str = r#",
      "workflow": { "id": "contensisEntryApproval", "state": "versionComplete",
                    "transition": { "from": "awaitingApproval", "event": "approve", "invokedBy": "m.singer" } }"#;

#[tokio::test]
async fn delivers_what_contensis_sends() {
    let h = Herald::start().await;
    let templated = Capture::start().await;
    let plain = Capture::start().await;

    let body = format!(
        r#"{{
  "name": {{"en-GB": "Delivery"}},
  "url": "{}",
  "method": "PUT",
  "topics": [
    {{"resourceType": "entry", "event": ["published"], "contentTypeId": ["news", "blog"], "language": ["en-GB"], "owner": "t.durden"}},
    {{"resourceType": "entry", "event": ["workflowEventRaised"], "contentTypeId": ["blog"],
      "workflowEvent": ["contensisEntryApproval.awaitingApproval.approve"]}}
  ],
  "headers": {{
    "target": {{"value": "internal"}},
    "department": {{"value": "{{/resource/department}}"}},
    "x-secret": {{"secret": true, "value": "cs7vdsdvj~8"}}
  }},
  "templates": {{
    "entry": {{"event": "{{/event/name}}", "user": "{{/user/firstName}} {{/user/lastName}}", "id": "{{/resource/sys/id}}", "title": "{{/resource/entryTitle}}"}},
    "entry.news": {{"event": "{{/event/name}}", "id": "{{/resource/sys/id}}", "headline": "{{/resource/headline}}"}}
  }}
  VERSION
}}"#,
        templated.url("/hooks/{/resource/sys/id}")
    );
    let created = admin(&h, "POST", BASE, &body.replace("VERSION", "")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let a_id = created.json()["id"].as_str().unwrap().to_string();
    // Replace it once, sending the secret header back without its value: it keeps it.
    let put = body
        .replace(
            r#""secret": true, "value": "cs7vdsdvj~8""#,
            r#""secret": true"#,
        )
        .replace("VERSION", r#", "version": {"versionNo": "1.0"}"#);
    let a = admin(&h, "PUT", &format!("{BASE}/{a_id}"), &put).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["headers"]["x-secret"], json!({"secret": true}));

    // No templates: the default request structure.
    let created = admin(
        &h,
        "POST",
        BASE,
        &format!(
            r#"{{"name": "Default", "url": "{}", "topics": [{{"resourceType": "entry", "event": "published", "contentTypeId": "news", "language": "en-GB"}}]}}"#,
            plain.url("/default")
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let b_id = created.json()["id"].as_str().unwrap().to_string();
    // An empty template: an empty body (the UI's "empty payload").
    let empty = Capture::start().await;
    let created = admin(
        &h,
        "POST",
        BASE,
        &format!(
            r#"{{"name": "Empty", "url": "{}", "topics": [{{"resourceType": "entry", "event": "published", "contentTypeId": "news", "language": "en-GB"}}], "templates": {{"entry": ""}}}}"#,
            empty.url("/empty")
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());

    let events = [
        // Matching.
        entry_event(
            "ev-news",
            "published",
            "news-1",
            "news",
            "en-GB",
            "movies",
            "",
        ),
        entry_event(
            "ev-blog",
            "published",
            "blog-1",
            "blog",
            "en-GB",
            "movies",
            "",
        ),
        entry_event(
            "ev-wf",
            "workflowEventRaised",
            "blog-2",
            "blog",
            "fr-FR",
            "movies",
            APPROVED,
        ),
        // Other language, content type, project: nothing.
        entry_event(
            "ev-fr",
            "published",
            "news-2",
            "news",
            "fr-FR",
            "movies",
            "",
        ),
        entry_event(
            "ev-movie",
            "published",
            "movie-1",
            "movie",
            "en-GB",
            "movies",
            "",
        ),
        entry_event(
            "ev-other",
            "published",
            "news-3",
            "news",
            "en-GB",
            "other",
            "",
        ),
    ];
    for e in &events {
        h.ingest("/v1/ingest/contensis", "application/json", e.clone())
            .await;
    }
    let got = templated.wait_for(3, WAIT).await;
    let by_path = |p: &str| {
        got.iter()
            .find(|c| c.path == p)
            .unwrap_or_else(|| panic!("nothing at {p}: {got:#?}"))
    };

    // entry.news is more specific than entry.
    let news = by_path("/hooks/news-1");
    assert_eq!(news.method, "PUT");
    assert_eq!(
        std::str::from_utf8(&news.body).unwrap(),
        r#"{"event":"published","id":"news-1","headline":"Headline of news-1"}"#
    );
    for c in &got {
        assert_eq!(
            c.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(c.header("target"), Some("internal"));
        assert_eq!(c.header("department"), Some("Films"));
        assert_eq!(
            c.header("x-secret"),
            Some("cs7vdsdvj~8"),
            "the secret survived the PUT"
        );
    }
    let blog = by_path("/hooks/blog-1");
    assert_eq!(
        std::str::from_utf8(&blog.body).unwrap(),
        r#"{"event":"published","user":"Tyler Durden","id":"blog-1","title":"Title of blog-1"}"#
    );
    let wf = by_path("/hooks/blog-2");
    assert_eq!(
        std::str::from_utf8(&wf.body).unwrap(),
        r#"{"event":"workflowEventRaised","user":"Tyler Durden","id":"blog-2","title":"Title of blog-2"}"#
    );

    let got = plain.wait_for(1, WAIT).await;
    let d = &got[0];
    assert_eq!((d.method.as_str(), d.path.as_str()), ("POST", "/default"));
    assert_eq!(
        d.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // The default structure, laid out as Contensis documents it (spec §2.5).
    let want = format!(
        r#"{{
  "eventId": "ev-news",
  "eventName": "published",
  "subscriptionId": "{b_id}",
  "datetime": "2024-05-01T10:15:30.123Z",
  "invokedBy": {{ "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" }},
  "resource": {{
    "id": "news-1",
    "type": "entry",
    "projectId": "movies",
    "contentTypeId": "news",
    "title": "Title of news-1",
    "language": "en-GB",
    "url": "https://cms-example.cloud.contensis.com/api/management/projects/movies/entries/news-1"
  }}
}}"#
    );
    assert_eq!(std::str::from_utf8(&d.body).unwrap(), want);
    // No signature: Contensis authenticates with custom and secret headers only.
    assert_eq!(d.header("webhook-signature"), None);

    // Exactly those deliveries exist: the other events matched nothing (deliveries are made
    // when an event is accepted, so all six are routed by now).
    for (id, n) in [(&a_id, 3), (&b_id, 1)] {
        let log = h
            .api("GET", &format!("/v1/deliveries?subscription={id}"), None)
            .await
            .json();
        assert_eq!(log["data"].as_array().unwrap().len(), n, "{log}");
    }
    let got = empty.wait_for(1, WAIT).await;
    assert!(got[0].body.is_empty(), "{:?}", got[0].body);
    assert_eq!(
        got[0].header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!((templated.count(), plain.count(), empty.count()), (3, 1, 1));
}

#[tokio::test]
async fn the_seed_subscription_delivers_as_written() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    // Seed 001 verbatim, pointed at the receiver (its URL template included).
    let created = admin(
        &h,
        "POST",
        BASE,
        &seed_at(&cap.url("/handlewebhooks/{/resource/sys.id}")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let events = [
        // Topic 2: entry published, news, owner t.durden → the `entry.news` template.
        entry_event("s-1", "published", "news-1", "news", "en-GB", "movies", ""),
        // Topic 6: workflowStateChanged to awaitingApproval, blog → the `entry` template.
        entry_event(
            "s-2",
            "workflowStateChanged",
            "blog-3",
            "blog",
            "en-GB",
            "movies",
            r#",
      "workflow": { "id": "contensisEntryApproval", "state": "awaitingApproval" }"#,
        ),
        // Topic 4: workflowEventRaised approve, blog.
        entry_event(
            "s-3",
            "workflowEventRaised",
            "blog-4",
            "blog",
            "en-GB",
            "movies",
            APPROVED,
        ),
        // Topic 1 wants updated/created in fr-fr; topic 2 published news only: nothing.
        entry_event("s-4", "published", "blog-5", "blog", "en-GB", "movies", ""),
        entry_event("s-5", "updated", "blog-6", "blog", "en-GB", "movies", ""),
    ];
    for e in &events {
        h.ingest("/v1/ingest/contensis", "application/json", e.clone())
            .await;
    }
    let got = cap.wait_for(3, WAIT).await;
    let body_at = |p: &str| {
        let c = got
            .iter()
            .find(|c| c.path == p)
            .unwrap_or_else(|| panic!("nothing at {p}: {got:#?}"));
        assert_eq!(c.method, "POST");
        assert_eq!(
            c.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(c.header("target"), Some("internal"));
        assert_eq!(c.header("department"), Some("Films"));
        assert_eq!(c.header("secretHeaderSet"), Some("cs7vdsdvj~8"));
        assert_eq!(c.header("secretHeaderGet"), None);
        String::from_utf8(c.body.to_vec()).unwrap()
    };
    assert_eq!(
        body_at("/handlewebhooks/news-1"),
        r#"{"event":"published","id":"news-1","title":"Title of news-1","headline":"Headline of news-1"}"#
    );
    // The seed writes `{/user/firstname}`; the context has `firstName`, so both are empty.
    assert_eq!(
        body_at("/handlewebhooks/blog-3"),
        r#"{"event":"workflowStateChanged","user":" ","id":"blog-3","title":"Title of blog-3","description":"The first rule","department":"Films"}"#
    );
    assert_eq!(
        body_at("/handlewebhooks/blog-4"),
        r#"{"event":"workflowEventRaised","user":" ","id":"blog-4","title":"Title of blog-4","description":"The first rule","department":"Films"}"#
    );
    let id = created.json()["id"].as_str().unwrap().to_string();
    let log = h
        .api("GET", &format!("/v1/deliveries?subscription={id}"), None)
        .await
        .json();
    assert_eq!(log["data"].as_array().unwrap().len(), 3, "{log}");
}

#[tokio::test]
async fn a_bad_template_is_refused_when_saved() {
    let h = Herald::start().await;
    let body = r#"{"name": "n", "url": "https://hooks.example.com/{/resource/sys/id",
        "topics": [{"resourceType": "entry", "event": "published"}],
        "headers": {"x-id": {"value": "{/resource/sys/id"}},
        "templates": {"entry.news": {"id": "{/resource/sys/id"}, "Entry.News": "{/}"}}"#;
    let e = error(&admin(&h, "POST", BASE, body).await, 400, "Validation");
    let got = fields(&e);
    for want in ["url", "headers.x-id", "templates.entry.news"] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
    assert!(
        got.iter()
            .any(|g| g.eq_ignore_ascii_case("templates.entry.news") && g != "templates.entry.news"),
        "the key given twice (case-insensitively) is named: {got:?}"
    );
    assert_eq!(admin(&h, "GET", BASE, "").await.json(), json!([]));
}
