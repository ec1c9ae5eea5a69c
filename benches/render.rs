//! Render cost per delivery: one compiled `Plan` turning one ~600-byte event into the request,
//! for each body shape, unsigned and signed. The subscription carries two headers and bearer
//! auth, as a typical one does. Then each template kind of the CMS dialects (never signed), on
//! that CMS's own event: the DatoCMS default body, a Mustache `custom_payload` with a section and
//! dotted names, the Contensis default request structure, and a Contensis `{/pointer}` template
//! with a whole-value embed (alone, then with a templated URL and header as well). Run with
//! `cargo bench --bench render`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use herald::model::{
    Attributes, DeliveryId, Dialect, Event, Format, HeaderSpec, HttpMethod, InputKind, Secret,
    Subscription, SubscriptionId, TargetAuth, Template, Version,
};
use herald::model::{OptDuration, OptText};
use herald::render::{AttemptCtx, Plan, RenderDefaults};

const SITECORE: &str = r#"{"EventName":"item:saved","Item":{"Language":"en","Version":3,"Id":"4c3a401e-8b78-440a-bf88-736a71ce8e5a","Name":"Spring campaign landing page","ParentId":"8fb31904-1bbc-463c-821b-c7c1a87bf13e","TemplateId":"0133f52d-271f-4217-b1cd-04342e3457eb","TemplateName":"Landing Page","MasterId":"00000000-0000-0000-0000-000000000000","SharedFields":[{"Id":"a4f985d9-98b3-4b52-aaaf-4344f6e747c6","Value":"{88AD1387-D4DA-489D-BB4B-45540917E7ED}"}],"UnversionedFields":[],"VersionedFields":[{"Id":"25bed78c-4957-4165-998a-ca1b52f67497","Value":"<p>Spring is here</p>","Version":3,"Language":"en"}]},"WebhookItemId":"14d2921a-0000-4000-8000-000000000001","WebhookItemName":"Publish hook"}"#;

const CLOUDEVENT: &str = r#"{"specversion":"1.0","id":"0b8f1c7e-5d1a-4c8e-9e2f-3a4b5c6d7e8f","source":"https://cms.example.com/projects/website","type":"entry.published","subject":"entries/8f2c1d3e","time":"2024-05-01T10:00:00.123Z","datacontenttype":"application/json","data":{"entryId":"8f2c1d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f","contentType":"blogPost","language":"en-GB","version":"1.4","title":"Spring campaign: what we learned","slug":"spring-campaign-what-we-learned","author":{"id":"u-12","name":"A. Writer"},"tags":["campaign","spring","retrospective"],"publishedBy":"editor@example.com","environment":"production"}}"#;

/// A DatoCMS record update as DatoCMS sends it (spec §1.8), ~1.2 KB.
const DATOCMS: &str = r#"{"site_id":"example-site-id","webhook_id":"123","environment":"main","is_environment_primary":true,"webhook_call_id":"456","event_triggered_at":"2024-08-26T14:30:00Z","attempted_auto_retries_count":0,"entity_type":"item","event_type":"update","entity":{"id":"39830648","type":"item","attributes":{"title":"Spring campaign: what we learned","slug":"spring-campaign-what-we-learned","author":"A. Writer","body":"<p>Spring is here</p>"},"relationships":{"item_type":{"data":{"id":"810928","type":"item_type"}},"creator":{"data":{"id":"42011","type":"account"}}},"meta":{"created_at":"2024-08-20T10:00:00Z","updated_at":"2024-08-26T14:30:00Z","published_at":"2024-08-21T09:00:00Z","first_published_at":"2024-08-21T09:00:00Z","status":"updated","current_version":"117626080"}},"previous_entity":{"id":"39830648","type":"item","attributes":{"title":"Spring campaign","slug":"spring-campaign"}},"related_entities":[{"id":"810928","type":"item_type","attributes":{"name":"Blog post","api_key":"blog_post"},"relationships":{}},{"id":"42011","type":"account","attributes":{"email":"writer@example.com"},"relationships":{}}]}"#;

/// A DatoCMS `custom_payload`: a section over `related_entities` and dotted names.
const MUSTACHE: &str = r#"{"event":"{{entity_type}}.{{event_type}}","id":"{{entity.id}}","title":"{{entity.attributes.title}}","status":"{{entity.meta.status}}","call":"{{webhook_call_id}}","retry":{{attempted_auto_retries_count}},"related":[{{#related_entities}}"{{type}}:{{id}}",{{/related_entities}}null]}"#;

/// A Contensis event context (spec §2.4), ~1 KB.
const CONTENSIS: &str = r#"{"event":{"id":"5a8c7e2d-1f3b-4c6a-9e0d-2b4f6a8c0e1d","name":"published","resourceType":"entry","dateTime":"2024-05-01T10:15:30.123Z","resourceId":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","resourceUrl":"https://cms-example.cloud.contensis.com/api/management/projects/website/entries/d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","subscriptionId":"3a7ce8e3-9c9f-4242-be20-35edb29c4a07"},"user":{"username":"a.writer","firstName":"Ann","lastName":"Writer"},"resource":{"entryTitle":"Spring campaign: what we learned","entryDescription":"A retrospective","department":"Marketing","slug":"spring-campaign-what-we-learned","tags":["campaign","spring"],"body":"<p>Spring is here</p>","sys":{"id":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","projectId":"website","contentTypeId":"blogPost","dataFormat":"entry","language":"en-GB","owner":"a.writer","workflow":{"id":"contensisEntryBasic","state":"versionComplete"},"version":{"versionNo":"2.0","published":"2024-05-01T10:15:30.123Z"}}}}"#;

/// A Contensis template: the whole `sys` object embedded, plus string fields.
const POINTER: &str = r#"{"event":"{/event/name}","by":"{/user/firstName} {/user/lastName}","id":"{/resource/sys/id}","title":"{/resource/entryTitle}","sys":"{/resource/sys}"}"#;

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
        description: OptText::NONE,
        enabled: true,
        url: "https://hooks.example.com/cms/in".into(),
        method: HttpMethod::Post,
        filters: Box::default(),
        headers: Box::new([
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
        ]),
        auth: Some(Box::new(TargetAuth::Bearer {
            token: Secret::new("eyJhbGciOiJIUzI1NiJ9.e30.bench"),
        })),
        signing_secret: signed.then(|| Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
        format,
        retry: None,
        timeout: OptDuration::NONE,
        connect_timeout: OptDuration::NONE,
        template: None,
        extras: Default::default(),
        disabled_reason: OptText::NONE,
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
        InputKind::DatoCms => (
            "item.update",
            DATOCMS,
            &[
                ("entityid", "39830648"),
                ("contenttype", "810928"),
                ("environment", "main"),
                ("environmenttype", "primary"),
                ("site", "example-site-id"),
            ],
        ),
        InputKind::Contensis => (
            "entry.published",
            CONTENSIS,
            &[
                ("entityid", "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad"),
                ("contenttype", "blogpost"),
                ("language", "en-gb"),
                ("owner", "a.writer"),
                ("project", "website"),
            ],
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

    // The CMS dialects' template kinds, each on its CMS's own event. Dialect subscriptions
    // carry no signing secret and no auth here, only one custom header.
    let dialect = |dialect: Dialect, format: Format, template: Option<Template>| {
        let mut sub = subscription(format, false);
        sub.dialect = dialect;
        sub.auth = None;
        sub.headers = sub.headers[..1].into();
        sub.template = template.map(Box::new);
        sub
    };
    let contensis_templated = {
        let mut sub = dialect(
            Dialect::Contensis,
            Format::Contensis,
            Some(Template::Contensis(vec![("entry".into(), POINTER.into())])),
        );
        sub.url = "https://hooks.example.com/contensis/{/resource/sys.id}".into();
        sub.headers[0].value = Secret::new("{/resource/department}");
        sub
    };
    let templates = [
        (
            "datocms/default-body",
            dialect(Dialect::DatoCms, Format::DatoCms, None),
            InputKind::DatoCms,
        ),
        (
            "datocms/mustache-custom-payload",
            dialect(
                Dialect::DatoCms,
                Format::DatoCms,
                Some(Template::Mustache(MUSTACHE.into())),
            ),
            InputKind::DatoCms,
        ),
        (
            "contensis/default-structure",
            dialect(Dialect::Contensis, Format::Contensis, None),
            InputKind::Contensis,
        ),
        (
            "contensis/pointer-template-embed",
            dialect(
                Dialect::Contensis,
                Format::Contensis,
                Some(Template::Contensis(vec![("entry".into(), POINTER.into())])),
            ),
            InputKind::Contensis,
        ),
        (
            "contensis/pointer-template+url+header",
            contensis_templated,
            InputKind::Contensis,
        ),
    ];
    let compiled_templates = [
        ("compile/datocms-mustache", templates[1].1.clone()),
        (
            "compile/contensis-pointer+url+header",
            templates[4].1.clone(),
        ),
    ];
    for (name, sub, kind) in templates {
        let e = event(kind);
        let plan = Plan::compile(&sub, &defaults).expect("compiles");
        let mut attempt = 0u32;
        group.bench_function(name, |b| {
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
    group.finish();

    let sub = subscription(Format::Sitecore, true);
    c.bench_function("compile/sitecore-signed", |b| {
        b.iter(|| Plan::compile(black_box(&sub), &defaults).expect("compiles"))
    });
    // Template parsing happens here, once per save or load, never per delivery.
    for (name, sub) in compiled_templates {
        c.bench_function(name, |b| {
            b.iter(|| Plan::compile(black_box(&sub), &defaults).expect("compiles"))
        });
    }
}

criterion_group!(benches, render);
criterion_main!(benches);
