//! The Sitecore Common Audit Log webhook API (`/api/v1/eventConfigurations`): the seed's own
//! requests, every documented error with its problem body, the same webhook through the native
//! API, forwarded audit logs byte for byte at the capture receiver, and scoped tokens.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Capture, Herald, Options};

const WAIT: Duration = Duration::from_secs(20);
const CONFIGS: &str = "/api/v1/eventConfigurations";
const EVENT_NAME: &str = "sitecore.backbone.messages.audit.created";
const SCOPED_TOKEN: &str = "scoped-token-0123456789";

/// Seed 000's create request body, verbatim.
const SEED_CREATE: &str = r#"
{
  "space": "Development",
  "sourceSystem": {
    "$type": "AnySource"
  },
  "destinationSystem": {
    "$type": "Webhook",
    "secret": "<secret>",
    "targetUrl": "https://www.exampletartget.url/example-endpoint"
  },
  "eventName": "sitecore.backbone.messages.audit.created",
  "enabled": true
}"#;

/// Spec §3.3: the Personalize audit log (sent as a single object).
const PERSONALIZE_LOG: &str = r#"{
    "system": "Personalize",
    "time": "2025-01-08 08:17:32",
    "action": "experience_deleted",
    "entity": { "id": "574eedc0-79d9-4375-93ad-873737d4c8e1", "type": "EXPERIENCE",
                "extensions": { "entityLevelExtension": "AnyCustomValues" } },
    "sourceSystemUserContext": { "id": "user@example.com", "anonymousId": "dxGef14c",
                                 "IPAddress": "198.10.12.01", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)" },
    "extensions": { "eventLevelExtension": "AnyCustomValues" }
  }"#;

/// Cloud Portal logs (the "logged activities in the Sitecore Cloud Portal" examples).
const PORTAL_ROLES_ASSIGNED: &str = r#"{
    "action": "roles_assigned",
    "entity": {
      "id": "john@example.com",
      "type": "user"
    },
    "sourceSystemUserContext": {
      "id": "jane@example.com"
    },
    "extensions": {
      "roles": [
        {
          "role": "Organization User",
          "scope": "Organization"
        },
        {
          "tenantId": "fake1D2321-4324vdvsd3-44",
          "role": "User",
          "scope": "CDP"
        }
      ],
      "eventId": "1234567891011121314151617181920"
    },
    "time": "2025-05-27T11:20:16.216+00:00"
  }"#;

const PORTAL_USER_LOGIN: &str = r#"{
    "action": "user_login",
    "entity": { "id": "support.engineer@sitecore.example", "type": "support_user" },
    "sourceSystemUserContext": { "id": "support.engineer@sitecore.example" },
    "extensions": {
      "clientId": "app-client-0001",
      "eventId": "1234567891011121314151617181925",
      "reason": "Investigating support case 0042",
      "tenantId": "fake1D2321-4324vdvsd3-44"
    },
    "time": "2025-05-28T09:02:11.004+00:00"
  }"#;

const PORTAL_ROLES_REMOVED: &str = r#"{
    "action": "roles_removed",
    "entity": { "id": "john@example.com", "type": "user" },
    "sourceSystemUserContext": { "id": "jane@example.com" },
    "extensions": {
      "roles": [ { "tenantId": "fake1D2321-4324vdvsd3-44", "role": "User", "scope": "CDP" } ],
      "eventId": "1234567891011121314151617181922"
    },
    "time": "2025-06-02T15:41:09.120+00:00"
  }"#;

/// A JSON array of log objects, pretty-printed as the Cloud Portal examples are.
fn array(logs: &[&str]) -> String {
    format!("[\n  {}\n]", logs.join(",\n  "))
}

/// What the receiver must get for one log: the log's own bytes in a JSON array.
fn forwarded(log: &str) -> Vec<u8> {
    format!("[{log}]").into_bytes()
}

fn create_body(space: &str, url: &str, secret: &str, enabled: bool) -> Value {
    json!({
        "space": space,
        "sourceSystem": {"$type": "AnySource"},
        "destinationSystem": {"$type": "Webhook", "secret": secret, "targetUrl": url},
        "eventName": EVENT_NAME,
        "enabled": enabled
    })
}

async fn call(h: &Herald, method: &str, path: &str, body: Option<Value>, token: &str) -> Answer {
    let (ct, bytes) = match body {
        Some(v) => (Some("application/json"), v.to_string()),
        None => (None, String::new()),
    };
    h.request(method, path, ct, bytes, Some(token)).await
}

type Answer = crate::support::daemon::Answer;

/// Creates a webhook with `token`, asserting `200`; returns its 32-hex id.
async fn create(h: &Herald, body: Value, token: &str) -> String {
    let a = call(h, "POST", CONFIGS, Some(body), token).await;
    assert_eq!(a.status, 200, "create: {}", a.text());
    a.json()["events"][0]["id"].as_str().unwrap().to_string()
}

/// Asserts an RFC 7807 problem answer with `status`; returns its body.
fn problem(a: &Answer, status: u16) -> Value {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/problem+json",
        "{}",
        a.text()
    );
    let v = a.json();
    assert_eq!(v["status"], status, "{v}");
    assert!(v["type"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(v["detail"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    let trace = v["traceId"].as_str().unwrap_or("");
    assert!(trace.starts_with("00-") && trace.len() == 55, "{v}");
    v
}

/// Asserts a `400` validation problem that names `field`.
fn invalid(a: &Answer, field: &str) -> Value {
    let v = problem(a, 400);
    assert_eq!(v["title"], "One or more validation errors occurred.", "{v}");
    let messages = v["errors"][field].as_array();
    assert!(
        messages.is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string)),
        "no error for `{field}`: {v}"
    );
    v
}

fn is_simple_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hyphenated(id: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    )
}

#[tokio::test]
async fn seed_request_and_the_webhook_lifecycle() {
    let h = Herald::start().await;
    // The seed's curl sends `--data-raw` without a Content-Type: curl makes it form-urlencoded.
    let a = h
        .request(
            "POST",
            CONFIGS,
            Some("application/x-www-form-urlencoded"),
            SEED_CREATE,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.headers.get("content-type").unwrap(), "application/json");
    let v = a.json();
    let id = v["events"][0]["id"].as_str().unwrap().to_string();
    assert!(is_simple_id(&id), "{id}");
    assert_eq!(
        v,
        json!({"events": [{"id": id, "enabled": true, "name": EVENT_NAME, "description": null}]})
    );

    // GET: Sitecore's full object, secret echoed, keys in Sitecore's order.
    let got = call(&h, "GET", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let full = got.json();
    let keys: Vec<&str> = full
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want_keys = vec![
        "id",
        "organizationId",
        "sourceSystem",
        "destinationSystem",
        "space",
        "sourceSystemStatus",
        "logLevel",
        "createdBy",
        "createdDate",
        "updatedBy",
        "updatedDate",
        "eventName",
        "enabled",
    ];
    want_keys.sort_unstable();
    assert_eq!(keys, want_keys);
    assert!(got.text().starts_with(&format!(
        "{{\"id\":\"{id}\",\"organizationId\":null,\"sourceSystem\":{{\"$type\":\"AnySource\"}},\
         \"destinationSystem\":{{\"secret\":\"<secret>\",\
         \"targetUrl\":\"https://www.exampletartget.url/example-endpoint\",\"contentType\":null,\
         \"$type\":\"Webhook\"}},\"space\":\"Development\",\"sourceSystemStatus\":null,\
         \"logLevel\":\"FailuresOnly\",\"createdBy\":"
    )), "{}", got.text());
    assert_eq!(full["eventName"], EVENT_NAME);
    assert_eq!(full["enabled"], true);
    let created = full["createdDate"].as_str().unwrap().to_string();
    assert_eq!(
        created.len(),
        "2026-12-22T12:10:18.8610786+00:00".len(),
        "{created}"
    );
    assert!(created.ends_with("+00:00"), "{created}");
    assert_eq!(full["updatedDate"], created.as_str());
    assert_eq!(full["createdBy"], full["updatedBy"]);

    // The hyphenated form of the id finds the same webhook.
    let again = call(
        &h,
        "GET",
        &format!("{CONFIGS}/{}", hyphenated(&id)),
        None,
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!((again.status, again.json()), (200, full.clone()));

    // List.
    let list = call(&h, "GET", CONFIGS, None, ADMIN_TOKEN).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let events = list.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["name"], EVENT_NAME);
    assert_eq!(events[0]["destinationSystem"], full["destinationSystem"]);
    let other_space = call(
        &h,
        "GET",
        &format!("{CONFIGS}?space=prod"),
        None,
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(other_space.json(), json!({"events": []}));
    let this_space = call(
        &h,
        "GET",
        &format!("{CONFIGS}?space=development"),
        None,
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(this_space.json()["events"].as_array().unwrap().len(), 1);

    // PATCH: merge semantics, only what is sent changes; answers with the full object.
    let p = call(
        &h,
        "PATCH",
        &format!("{CONFIGS}/{id}"),
        Some(json!({"destinationSystem": {
            "secret": "new-4fcae82f", "targetUrl": "https://webhook.site/new-example-endpoint"}})),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let p = p.json();
    assert_eq!(
        p["destinationSystem"],
        json!({"secret": "new-4fcae82f", "targetUrl": "https://webhook.site/new-example-endpoint",
               "contentType": null, "$type": "Webhook"})
    );
    assert_eq!(
        (p["enabled"].clone(), p["space"].clone()),
        (json!(true), json!("Development"))
    );
    assert_eq!(p["createdDate"], created.as_str());
    assert!(p["updatedDate"].as_str().unwrap() >= created.as_str());
    let p = call(
        &h,
        "PATCH",
        &format!("{CONFIGS}/{id}"),
        Some(json!({"enabled": false, "logLevel": "All"})),
        ADMIN_TOKEN,
    )
    .await
    .json();
    assert_eq!(
        (p["enabled"].clone(), p["logLevel"].clone()),
        (json!(false), json!("All"))
    );
    assert_eq!(p["destinationSystem"]["secret"], "new-4fcae82f");
    // GET, change one field, PATCH it all back: read-only fields that repeat their value pass.
    let mut round = call(&h, "GET", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN)
        .await
        .json();
    round["enabled"] = json!(true);
    let r = call(
        &h,
        "PATCH",
        &format!("{CONFIGS}/{id}"),
        Some(round),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["enabled"], true);

    // DELETE → 204, then it is gone for both APIs.
    let d = call(&h, "DELETE", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN).await;
    assert_eq!((d.status, d.body.len()), (204, 0));
    problem(
        &call(&h, "GET", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN).await,
        404,
    );
    problem(
        &call(&h, "DELETE", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN).await,
        404,
    );
    let native = h
        .api(
            "GET",
            &format!("/v1/subscriptions/{}", hyphenated(&id)),
            None,
        )
        .await;
    assert_eq!(native.status, 404);
}

#[tokio::test]
async fn one_model_with_the_native_api() {
    let h = Herald::start().await;
    let id = create(
        &h,
        create_body(
            "Production",
            "https://siem.example.com/audit",
            "s3cr3t",
            true,
        ),
        ADMIN_TOKEN,
    )
    .await;
    let native_path = format!("/v1/subscriptions/{}", hyphenated(&id));

    // The webhook is a native subscription of dialect sitecore-audit.
    let n = h.api("GET", &native_path, None).await;
    assert_eq!(n.status, 200, "{}", n.text());
    let n = n.json();
    assert_eq!(n["id"], hyphenated(&id));
    assert_eq!(n["dialect"], "sitecore-audit");
    assert_eq!(n["tenant"], json!({"kind": "space", "name": "production"}));
    assert_eq!(n["name"], EVENT_NAME);
    assert_eq!(n["url"], "https://siem.example.com/audit");
    assert_eq!(n["method"], "POST");
    assert_eq!(n["format"], "sitecore-audit");
    assert_eq!(n["auth"], json!({"type": "header", "name": "X-Secret"}));
    assert_eq!(
        n["filters"],
        json!([{"types": [EVENT_NAME], "attributes": {"space": ["production", "*"]}}])
    );
    assert!(
        !n.to_string().contains("s3cr3t"),
        "the native API must not show the secret"
    );

    // Changed natively, seen by Sitecore clients.
    let p = h
        .api(
            "PATCH",
            &native_path,
            Some(json!({"url": "https://siem.example.com/v2"})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let d = h.api("POST", &format!("{native_path}/disable"), None).await;
    assert_eq!(d.status, 200, "{}", d.text());
    let s = call(&h, "GET", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN)
        .await
        .json();
    assert_eq!(
        s["destinationSystem"]["targetUrl"],
        "https://siem.example.com/v2"
    );
    assert_eq!(s["destinationSystem"]["secret"], "s3cr3t");
    assert_eq!(s["enabled"], false);
    assert_eq!(s["space"], "Production");

    // A native subscription is not a Sitecore webhook: not listed, not found.
    let native_id = h
        .subscribe(json!({"name": "native", "url": "https://example.com/hook"}))
        .await;
    let list = call(&h, "GET", CONFIGS, None, ADMIN_TOKEN).await.json();
    let ids: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    for path in [
        format!("{CONFIGS}/{native_id}"),
        format!("{CONFIGS}/{}", native_id.replace('-', "")),
    ] {
        problem(&call(&h, "GET", &path, None, ADMIN_TOKEN).await, 404);
        problem(
            &call(
                &h,
                "PATCH",
                &path,
                Some(json!({"enabled": false})),
                ADMIN_TOKEN,
            )
            .await,
            404,
        );
        problem(&call(&h, "DELETE", &path, None, ADMIN_TOKEN).await, 404);
    }

    // Deleted natively, gone for Sitecore clients.
    assert_eq!(h.api("DELETE", &native_path, None).await.status, 204);
    problem(
        &call(&h, "GET", &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN).await,
        404,
    );
}

#[tokio::test]
async fn every_error_has_its_status_and_problem_body() {
    let h = Herald::start().await;
    let good = || {
        create_body(
            "Production",
            "https://siem.example.com/audit",
            "s3cr3t",
            true,
        )
    };
    let with = |path: &[&str], v: Option<Value>| {
        let mut body = good();
        let mut at = &mut body;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        let obj = at.as_object_mut().unwrap();
        match v {
            Some(v) => obj.insert(path[path.len() - 1].into(), v),
            None => obj.remove(path[path.len() - 1]),
        };
        body
    };
    // Create: each invalid field is named.
    let cases: Vec<(Value, &str)> = vec![
        (with(&["space"], None), "space"),
        (with(&["space"], Some(json!(""))), "space"),
        (with(&["sourceSystem"], None), "sourceSystem"),
        (
            with(&["sourceSystem", "$type"], Some(json!("CDP"))),
            "sourceSystem.$type",
        ),
        (with(&["sourceSystem", "$type"], None), "sourceSystem.$type"),
        (with(&["destinationSystem"], None), "destinationSystem"),
        (
            with(&["destinationSystem", "$type"], Some(json!("Email"))),
            "destinationSystem.$type",
        ),
        (
            with(&["destinationSystem", "secret"], None),
            "destinationSystem.secret",
        ),
        (
            with(&["destinationSystem", "secret"], Some(json!(""))),
            "destinationSystem.secret",
        ),
        (
            with(&["destinationSystem", "targetUrl"], None),
            "destinationSystem.targetUrl",
        ),
        (
            with(
                &["destinationSystem", "targetUrl"],
                Some(json!("www.example.com/hook")),
            ),
            "destinationSystem.targetUrl",
        ),
        (
            with(
                &["destinationSystem", "targetUrl"],
                Some(json!("ftp://example.com/x")),
            ),
            "destinationSystem.targetUrl",
        ),
        (
            // Refused by the store's compile step (credentials in the URL), same shape.
            with(
                &["destinationSystem", "targetUrl"],
                Some(json!("https://u:p@example.com/x")),
            ),
            "destinationSystem.targetUrl",
        ),
        (with(&["eventName"], None), "eventName"),
        (
            with(&["eventName"], Some(json!("sitecore.other"))),
            "eventName",
        ),
        (with(&["enabled"], None), "enabled"),
        (with(&["enabled"], Some(json!("yes"))), "enabled"),
        (with(&["logLevel"], Some(json!("Verbose"))), "logLevel"),
        (
            with(&["targetUrl"], Some(json!("https://x.example/"))),
            "targetUrl",
        ),
        (json!(["not", "an", "object"]), "$"),
    ];
    for (body, field) in cases {
        let a = call(&h, "POST", CONFIGS, Some(body.clone()), ADMIN_TOKEN).await;
        let v = invalid(&a, field);
        assert_eq!(
            v["type"], "https://tools.ietf.org/html/rfc9110#section-15.5.1",
            "{body}"
        );
    }
    // Several problems at once are all reported.
    let a = call(&h, "POST", CONFIGS, Some(json!({})), ADMIN_TOKEN).await;
    let v = invalid(&a, "space");
    for f in ["sourceSystem", "destinationSystem", "eventName", "enabled"] {
        assert!(v["errors"][f].is_array(), "{f}: {v}");
    }
    // Not JSON at all, and a media type that is not JSON.
    let a = h
        .request(
            "POST",
            CONFIGS,
            Some("application/json"),
            "{\"space\":",
            Some(ADMIN_TOKEN),
        )
        .await;
    invalid(&a, "$");
    let a = h
        .request(
            "POST",
            CONFIGS,
            Some("application/xml"),
            "<x/>",
            Some(ADMIN_TOKEN),
        )
        .await;
    problem(&a, 415);
    // Nothing was created by any of that.
    let list = call(&h, "GET", CONFIGS, None, ADMIN_TOKEN).await.json();
    assert_eq!(list, json!({"events": []}));

    // Auth: missing, malformed, wrong → 401 problem with a Bearer challenge.
    for token in [None, Some("nope-not-the-token-at-all")] {
        let a = h.request("GET", CONFIGS, None, "", token).await;
        let v = problem(&a, 401);
        assert_eq!(v["title"], "Unauthorized");
        assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let a = h
        .request(
            "POST",
            CONFIGS,
            Some("application/json"),
            good().to_string(),
            None,
        )
        .await;
    problem(&a, 401);

    // Unknown ids: well-formed, malformed.
    for id in ["7050346545d5447da57b64be6416ac78", "not-an-id"] {
        for method in ["GET", "DELETE"] {
            let v = problem(
                &call(&h, method, &format!("{CONFIGS}/{id}"), None, ADMIN_TOKEN).await,
                404,
            );
            assert_eq!(v["title"], "Not Found");
        }
        let a = call(
            &h,
            "PATCH",
            &format!("{CONFIGS}/{id}"),
            Some(json!({"enabled": true})),
            ADMIN_TOKEN,
        )
        .await;
        problem(&a, 404);
    }

    // Methods the routes do not have.
    let a = call(&h, "PUT", CONFIGS, Some(good()), ADMIN_TOKEN).await;
    problem(&a, 405);
    assert_eq!(a.headers.get("allow").unwrap(), "GET, POST");

    // PATCH: anything but secret, targetUrl, logLevel, enabled is refused, naming the field.
    let id = create(&h, good(), ADMIN_TOKEN).await;
    let path = format!("{CONFIGS}/{id}");
    let a = call(&h, "PUT", &path, Some(good()), ADMIN_TOKEN).await;
    problem(&a, 405);
    assert_eq!(a.headers.get("allow").unwrap(), "GET, PATCH, DELETE");
    let patches: Vec<(Value, &str)> = vec![
        (json!({"space": "Development"}), "space"),
        (json!({"eventName": "sitecore.other"}), "eventName"),
        (json!({"sourceSystem": {"$type": "CDP"}}), "sourceSystem"),
        (json!({"organizationId": "org_x"}), "organizationId"),
        (json!({"id": "00000000000000000000000000000000"}), "id"),
        (json!({"description": "x"}), "description"),
        (
            json!({"destinationSystem": {"$type": "Email"}}),
            "destinationSystem.$type",
        ),
        (
            json!({"destinationSystem": {"contentType": "text/xml"}}),
            "destinationSystem.contentType",
        ),
        (
            json!({"destinationSystem": {"targetUrl": "nope"}}),
            "destinationSystem.targetUrl",
        ),
        (
            json!({"destinationSystem": {"secret": ""}}),
            "destinationSystem.secret",
        ),
        (json!({"destinationSystem": "x"}), "destinationSystem"),
        (json!({"logLevel": "Verbose"}), "logLevel"),
        (json!({"enabled": "false"}), "enabled"),
        (json!([]), "$"),
    ];
    for (body, field) in patches {
        let a = call(&h, "PATCH", &path, Some(body.clone()), ADMIN_TOKEN).await;
        let v = invalid(&a, field);
        assert!(v["detail"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    // None of those changed anything.
    let now = call(&h, "GET", &path, None, ADMIN_TOKEN).await.json();
    assert_eq!(now["space"], "Production");
    assert_eq!(now["destinationSystem"]["secret"], "s3cr3t");
    assert_eq!(now["createdDate"], now["updatedDate"]);

    // List query errors.
    invalid(
        &call(&h, "GET", &format!("{CONFIGS}?limit=0"), None, ADMIN_TOKEN).await,
        "limit",
    );
    invalid(
        &call(&h, "GET", &format!("{CONFIGS}?after=x"), None, ADMIN_TOKEN).await,
        "after",
    );
}

#[tokio::test]
async fn forwarded_logs_arrive_byte_for_byte() {
    let h = Herald::start().await;
    let cap = Capture::start().await;
    let production = create(
        &h,
        create_body(
            "Production",
            &cap.url("/production"),
            "mys3cr3tstr1ingforauth1!x",
            true,
        ),
        ADMIN_TOKEN,
    )
    .await;
    let prod = create(
        &h,
        create_body("prod", &cap.url("/prod"), "portal-secret", true),
        ADMIN_TOKEN,
    )
    .await;
    let disabled = create(
        &h,
        create_body("Production", &cap.url("/disabled"), "off-secret", false),
        ADMIN_TOKEN,
    )
    .await;
    let deliveries_of = |id: String| {
        let h = &h;
        async move {
            let a = h
                .api("GET", &format!("/v1/deliveries?subscription={id}"), None)
                .await;
            assert_eq!(a.status, 200, "{}", a.text());
            a.json()["data"].as_array().unwrap().len()
        }
    };

    // One object, for space Production: only that space's enabled webhook.
    h.ingest(
        "/v1/ingest/sitecore-audit?space=Production",
        "application/json",
        PERSONALIZE_LOG,
    )
    .await;
    let got = cap.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/production")
    );
    assert_eq!(r.header("x-secret"), Some("mys3cr3tstr1ingforauth1!x"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, forwarded(PERSONALIZE_LOG));
    // Routing happens at ingest, so the other space and the disabled webhook have no delivery.
    assert_eq!(deliveries_of(prod.clone()).await, 0);
    assert_eq!(deliveries_of(disabled.clone()).await, 0);

    // An array for space prod: one request per log, none for Production.
    h.ingest(
        "/v1/ingest/sitecore-audit?space=prod",
        "application/json",
        array(&[PORTAL_ROLES_ASSIGNED, PORTAL_USER_LOGIN]),
    )
    .await;
    let got = cap.wait_for(3, WAIT).await;
    let mut at_prod: Vec<_> = got[1..]
        .iter()
        .map(|c| (c.path.clone(), c.body.to_vec()))
        .collect();
    at_prod.sort();
    let mut want = vec![
        ("/prod".to_string(), forwarded(PORTAL_ROLES_ASSIGNED)),
        ("/prod".to_string(), forwarded(PORTAL_USER_LOGIN)),
    ];
    want.sort();
    assert_eq!(at_prod, want);
    for c in &got[1..] {
        assert_eq!(c.method, "POST");
        assert_eq!(c.header("x-secret"), Some("portal-secret"));
        assert_eq!(c.header("content-type"), Some("application/json"));
    }
    assert_eq!(deliveries_of(production.clone()).await, 1);

    // An array without a space: every space's enabled webhook gets every log.
    h.ingest(
        "/v1/ingest/sitecore-audit",
        "application/json",
        array(&[PERSONALIZE_LOG, PORTAL_ROLES_REMOVED]),
    )
    .await;
    let got = cap.wait_for(7, WAIT).await;
    let mut broadcast: Vec<_> = got[3..]
        .iter()
        .map(|c| {
            (
                c.path.clone(),
                c.header("x-secret").unwrap_or("").to_string(),
                c.body.to_vec(),
            )
        })
        .collect();
    broadcast.sort();
    let mut want = vec![
        (
            "/prod".into(),
            "portal-secret".into(),
            forwarded(PERSONALIZE_LOG),
        ),
        (
            "/prod".into(),
            "portal-secret".into(),
            forwarded(PORTAL_ROLES_REMOVED),
        ),
        (
            "/production".into(),
            "mys3cr3tstr1ingforauth1!x".into(),
            forwarded(PERSONALIZE_LOG),
        ),
        (
            "/production".into(),
            "mys3cr3tstr1ingforauth1!x".into(),
            forwarded(PORTAL_ROLES_REMOVED),
        ),
    ];
    want.sort();
    assert_eq!(broadcast, want);
    assert_eq!(deliveries_of(disabled.clone()).await, 0);

    // A secret changed by PATCH is what the next delivery carries; a single object without a
    // space, a space spelled in another case.
    let p = call(
        &h,
        "PATCH",
        &format!("{CONFIGS}/{production}"),
        Some(json!({"destinationSystem": {"secret": "rotated-secret"}})),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text());
    h.ingest(
        "/v1/ingest/sitecore-audit?space=PRODUCTION",
        "application/json",
        PERSONALIZE_LOG,
    )
    .await;
    let got = cap.wait_for(8, WAIT).await;
    let r = &got[7];
    assert_eq!(r.path, "/production");
    assert_eq!(r.header("x-secret"), Some("rotated-secret"));
    assert_eq!(r.body, forwarded(PERSONALIZE_LOG));

    // Enabled by PATCH, the formerly disabled webhook receives the next log.
    let p = call(
        &h,
        "PATCH",
        &format!("{CONFIGS}/{disabled}"),
        Some(json!({"enabled": true})),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text());
    h.ingest(
        "/v1/ingest/sitecore-audit?space=Production",
        "application/json",
        PERSONALIZE_LOG,
    )
    .await;
    let got = cap.wait_for(10, WAIT).await;
    let mut last: Vec<_> = got[8..]
        .iter()
        .map(|c| {
            (
                c.path.clone(),
                c.header("x-secret").unwrap_or("").to_string(),
            )
        })
        .collect();
    last.sort();
    assert_eq!(
        last,
        [
            ("/disabled".to_string(), "off-secret".to_string()),
            ("/production".to_string(), "rotated-secret".to_string())
        ]
    );
    assert_eq!(deliveries_of(prod).await, 4);
    assert_eq!(cap.count(), 10);
}

#[tokio::test]
async fn scoped_tokens_see_only_their_space() {
    let h = Herald::start_with(Options {
        auth: format!(
            "admin_tokens = [\"{ADMIN_TOKEN}\"]\n\
             [[auth.tokens]]\ntoken = \"{SCOPED_TOKEN}\"\nscopes = [\"space:Production\"]\n"
        ),
        ..Options::default()
    })
    .await;
    // The scoped token creates in its space (spelled in any case), not in another.
    let mine = create(
        &h,
        create_body("production", "https://a.example.com/x", "s1", true),
        SCOPED_TOKEN,
    )
    .await;
    let a = call(
        &h,
        "POST",
        CONFIGS,
        Some(create_body("prod", "https://a.example.com/y", "s2", true)),
        SCOPED_TOKEN,
    )
    .await;
    let v = problem(&a, 403);
    assert_eq!(v["title"], "Forbidden");
    // The full-access token creates anywhere.
    let theirs = create(
        &h,
        create_body("prod", "https://b.example.com/x", "s3", true),
        ADMIN_TOKEN,
    )
    .await;

    let ids = |v: Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let scoped_list = call(&h, "GET", CONFIGS, None, SCOPED_TOKEN).await;
    assert_eq!(ids(scoped_list.json()), [mine.as_str()]);
    let mut all = ids(call(&h, "GET", CONFIGS, None, ADMIN_TOKEN).await.json());
    all.sort();
    let mut want = vec![mine.clone(), theirs.clone()];
    want.sort();
    assert_eq!(all, want);
    assert_eq!(
        ids(call(
            &h,
            "GET",
            &format!("{CONFIGS}?space=prod"),
            None,
            SCOPED_TOKEN
        )
        .await
        .json()),
        Vec::<String>::new()
    );

    // Another space's webhook does not exist for the scoped token.
    let theirs_path = format!("{CONFIGS}/{theirs}");
    problem(
        &call(&h, "GET", &theirs_path, None, SCOPED_TOKEN).await,
        404,
    );
    problem(
        &call(
            &h,
            "PATCH",
            &theirs_path,
            Some(json!({"enabled": false})),
            SCOPED_TOKEN,
        )
        .await,
        404,
    );
    problem(
        &call(&h, "DELETE", &theirs_path, None, SCOPED_TOKEN).await,
        404,
    );
    let still = call(&h, "GET", &theirs_path, None, ADMIN_TOKEN)
        .await
        .json();
    assert_eq!(still["enabled"], true);

    // Its own it reads, changes and deletes; natively too.
    let mine_path = format!("{CONFIGS}/{mine}");
    let g = call(&h, "GET", &mine_path, None, SCOPED_TOKEN).await;
    assert_eq!(
        (g.status, g.json()["space"].clone()),
        (200, json!("production"))
    );
    let p = call(
        &h,
        "PATCH",
        &mine_path,
        Some(json!({"logLevel": "All"})),
        SCOPED_TOKEN,
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text());
    let n = h
        .request(
            "GET",
            &format!("/v1/subscriptions/{}", hyphenated(&mine)),
            None,
            "",
            Some(SCOPED_TOKEN),
        )
        .await;
    assert_eq!(n.status, 200, "{}", n.text());
    let n = h
        .request(
            "GET",
            &format!("/v1/subscriptions/{}", hyphenated(&theirs)),
            None,
            "",
            Some(SCOPED_TOKEN),
        )
        .await;
    assert_eq!(n.status, 404);
    let d = call(&h, "DELETE", &mine_path, None, SCOPED_TOKEN).await;
    assert_eq!(d.status, 204);
}
