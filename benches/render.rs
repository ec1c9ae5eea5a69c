//! Render cost per delivery: one compiled `Plan` turning one ~600-byte event into the request,
//! for each body shape, unsigned and signed. The subscription carries two headers and bearer
//! auth, as a typical one does. Run with `cargo bench --bench render`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use herald::model::{
    Attributes, DeliveryId, Dialect, Event, Format, HeaderSpec, HttpMethod, InputKind, Secret,
    Subscription, SubscriptionId, TargetAuth, Version,
};
use herald::render::{AttemptCtx, Plan, RenderDefaults};

const SITECORE: &str = r#"{"EventName":"item:saved","Item":{"Language":"en","Version":3,"Id":"4c3a401e-8b78-440a-bf88-736a71ce8e5a","Name":"Spring campaign landing page","ParentId":"8fb31904-1bbc-463c-821b-c7c1a87bf13e","TemplateId":"0133f52d-271f-4217-b1cd-04342e3457eb","TemplateName":"Landing Page","MasterId":"00000000-0000-0000-0000-000000000000","SharedFields":[{"Id":"a4f985d9-98b3-4b52-aaaf-4344f6e747c6","Value":"{88AD1387-D4DA-489D-BB4B-45540917E7ED}"}],"UnversionedFields":[],"VersionedFields":[{"Id":"25bed78c-4957-4165-998a-ca1b52f67497","Value":"<p>Spring is here</p>","Version":3,"Language":"en"}]},"WebhookItemId":"14d2921a-0000-4000-8000-000000000001","WebhookItemName":"Publish hook"}"#;

const CLOUDEVENT: &str = r#"{"specversion":"1.0","id":"0b8f1c7e-5d1a-4c8e-9e2f-3a4b5c6d7e8f","source":"https://cms.example.com/projects/website","type":"entry.published","subject":"entries/8f2c1d3e","time":"2024-05-01T10:00:00.123Z","datacontenttype":"application/json","data":{"entryId":"8f2c1d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f","contentType":"blogPost","language":"en-GB","version":"1.4","title":"Spring campaign: what we learned","slug":"spring-campaign-what-we-learned","author":{"id":"u-12","name":"A. Writer"},"tags":["campaign","spring","retrospective"],"publishedBy":"editor@example.com","environment":"production"}}"#;

fn subscription(format: Format, signed: bool) -> Subscription {
    Subscription {
        id: SubscriptionId(
            "95398c44-f232-41a8-b947-8aefec4ce6eb"
                .parse()
                .expect("uuid"),
        ),
        dialect: Dialect::Native,
        tenant: None,
        name: "Bench hook".into(),
        description: None,
        enabled: true,
        url: "https://hooks.example.com/cms/in".into(),
        method: HttpMethod::Post,
        filters: vec![],
        headers: vec![
            HeaderSpec {
                name: "X-Api-Key".into(),
                value: Secret::new("k-0123456789abcdef"),
                secret: true,
            },
            HeaderSpec {
                name: "X-Tenant".into(),
                value: Secret::new("website"),
                secret: false,
            },
        ],
        auth: Some(TargetAuth::Bearer {
            token: Secret::new("eyJhbGciOiJIUzI1NiJ9.e30.bench"),
        }),
        signing_secret: signed.then(|| Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
        format,
        retry: None,
        timeout: None,
        connect_timeout: None,
        template: None,
        extras: serde_json::Value::Null,
        disabled_reason: None,
        version: Version {
            created_by: "bench".into(),
            created_at_ms: 0,
            modified_by: "bench".into(),
            modified_at_ms: 0,
            version_no: 1,
        },
    }
}

fn event(kind: InputKind) -> Event {
    let (event_type, payload, attrs): (&str, &str, &[(&str, &str)]) = match kind {
        InputKind::CloudEvent => (
            "entry.published",
            CLOUDEVENT,
            &[("subject", "entries/8f2c1d3e"), ("language", "en-gb")],
        ),
        _ => (
            "item:saved",
            SITECORE,
            &[
                ("language", "en"),
                ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
                ("templatename", "landing page"),
                ("entityid", "4c3a401e-8b78-440a-bf88-736a71ce8e5a"),
            ],
        ),
    };
    let attributes: Attributes = attrs
        .iter()
        .map(|(n, v)| ((*n).into(), (*v).into()))
        .collect();
    Event {
        seq: 1,
        id: "0b8f1c7e-5d1a-4c8e-9e2f-3a4b5c6d7e8f".into(),
        source: kind.as_str().into(),
        kind,
        event_type: event_type.into(),
        time: Some("2024-05-01T10:00:00.123Z".into()),
        received_at_ms: 0,
        attributes,
        payload: Bytes::from_static(payload.as_bytes()),
    }
}

fn render(c: &mut Criterion) {
    let cases = [
        (
            "cloudevents/pass-through",
            Format::CloudEvents,
            InputKind::CloudEvent,
        ),
        (
            "cloudevents/wrap-sitecore",
            Format::CloudEvents,
            InputKind::Sitecore,
        ),
        ("raw", Format::Raw, InputKind::Sitecore),
        ("sitecore/rewrite", Format::Sitecore, InputKind::Sitecore),
        (
            "sitecore/from-cloudevent",
            Format::Sitecore,
            InputKind::CloudEvent,
        ),
    ];
    let defaults = RenderDefaults::default();
    let mut group = c.benchmark_group("render");
    for (name, format, kind) in cases {
        let e = event(kind);
        for signed in [false, true] {
            let plan = Plan::compile(&subscription(format, signed), &defaults).expect("compiles");
            let mut attempt = 0u32;
            let label = format!("{name}/{}", if signed { "signed" } else { "unsigned" });
            group.bench_function(label, |b| {
                b.iter(|| {
                    attempt = attempt.wrapping_add(1);
                    let ctx = AttemptCtx {
                        delivery: DeliveryId(7_123_456_789_012_345),
                        attempt,
                        timestamp_s: 1_714_557_600 + i64::from(attempt),
                    };
                    plan.render(black_box(&e), black_box(&ctx))
                        .expect("renders")
                })
            });
        }
    }
    group.finish();

    let sub = subscription(Format::Sitecore, true);
    c.bench_function("compile/sitecore-signed", |b| {
        b.iter(|| Plan::compile(black_box(&sub), &defaults).expect("compiles"))
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
