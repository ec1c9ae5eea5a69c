//! Decode stage benchmarks: body bytes → `Vec<Event>` (`herald::decode::decode`).
//!
//! Three inputs: one ~600-byte structured CloudEvent, a 100-event NDJSON batch of the same
//! event (throughput is per event, so ns/event reads straight off), and a Sitecore `item:saved`
//! body; plus simd-json alone on the same event as a same-run reference. Run briefly with
//! `cargo bench --bench decode -- --quick`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::decode::{Limits, decode};
use herald::model::InputKind;
use simd_json::prelude::*;

const CLOUD_EVENT: &str = r#"{
  "specversion": "1.0",
  "id": "A234-1234-1234",
  "source": "https://cms.example.com/sites/main",
  "type": "com.example.cms.entry.published",
  "subject": "Entries/Blog/Hello-World",
  "time": "2024-08-26T14:30:00Z",
  "datacontenttype": "application/json",
  "language": "EN-GB",
  "contenttype": "blogPost",
  "priority": 3,
  "data": {
    "id": "39830648",
    "title": "Hello \"world\"",
    "slug": "hello-world",
    "tags": ["news", "release"],
    "author": {"id": "42011", "name": "Mark Smith"},
    "body": "<p>First post of the year, with an escaped \\ backslash and a ] bracket. Lorem ipsum dolor sit amet.</p>"
  }
}"#;

const SITECORE_ITEM_SAVED: &str = r#"{
  "EventName": "item:saved",
  "Item": {
    "Language": "da-DK",
    "Version": 3,
    "Id": "{B1A6F0D4-35B1-4F0B-A6F0-35B14F0BA6F0}",
    "Name": "Home",
    "ParentId": "{0DE95AE4-41AB-4D01-9EB0-67441B7C2450}",
    "TemplateId": "{76036F5E-CBCE-46D1-AF0A-4143F9B557AA}",
    "TemplateName": "Sample Item",
    "MasterId": "00000000-0000-0000-0000-000000000000",
    "SharedFields": [{"Id": "a4f985d9-98b3-4b52-aaaf-4344f6e747c6", "Value": "{88AD1387-D4DA-489D-BB4B-45540917E7ED}"}],
    "UnversionedFields": [{"Id": "52807595-0f8f-4b20-8d2a-cb71d28c6103", "Value": "sitecore\\admin", "Language": "da-DK"}],
    "VersionedFields": [
      {"Id": "75577384-3c97-45da-a847-81b00500e250", "Value": "Welcome to \"Sitecore\"", "Version": 3, "Language": "da-DK"},
      {"Id": "a60acd61-a6db-4182-8329-c957982cec74", "Value": "<p>Rich <b>text</b> body</p>", "Version": 3, "Language": "da-DK"}
    ]
  },
  "Changes": {
    "FieldChanges": [
      {"FieldId": "75577384-3c97-45da-a847-81b00500e250", "Value": "Welcome to \"Sitecore\"", "OriginalValue": "Welcome"}
    ],
    "PropertyChanges": [],
    "IsUnversionedFieldChanged": false,
    "IsSharedFieldChanged": false
  },
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "WebhookItemName": "Sample Webhook Event Handler"
}"#;

fn limits() -> Limits {
    Limits {
        max_batch_items: 10_000,
        max_json_depth: 64,
    }
}

fn bench(c: &mut Criterion) {
    let limits = limits();
    let mut g = c.benchmark_group("decode");

    let one = Bytes::from_static(CLOUD_EVENT.as_bytes());
    g.throughput(Throughput::Elements(1));
    g.bench_function("cloudevent_single", |b| {
        b.iter(|| {
            decode(
                InputKind::CloudEvent,
                Some("application/cloudevents+json"),
                black_box(&one),
                &limits,
                0,
            )
            .expect("valid")
        })
    });

    // One event per line: the pretty-printed event compacted onto one line.
    let line: String = CLOUD_EVENT.lines().map(str::trim).collect();
    let ndjson = Bytes::from(vec![line.as_str(); 100].join("\n"));
    g.throughput(Throughput::Elements(100));
    g.bench_function("cloudevent_ndjson_100", |b| {
        b.iter(|| {
            decode(
                InputKind::CloudEvent,
                Some("application/x-ndjson"),
                black_box(&ndjson),
                &limits,
                0,
            )
            .expect("valid")
        })
    });

    // Reference point on the same machine in the same run (this box's speed drifts): simd-json
    // alone turning the same event into a borrowed value tree, copy of the input included.
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_simd_json_borrowed_value", |b| {
        let mut scratch = Vec::with_capacity(CLOUD_EVENT.len());
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(black_box(CLOUD_EVENT.as_bytes()));
            simd_json::to_borrowed_value(&mut scratch)
                .map(|v| black_box(v).is_object())
                .expect("valid")
        })
    });

    let saved = Bytes::from_static(SITECORE_ITEM_SAVED.as_bytes());
    g.throughput(Throughput::Elements(1));
    g.bench_function("sitecore_item_saved", |b| {
        b.iter(|| {
            decode(
                InputKind::Sitecore,
                Some("application/json"),
                black_box(&saved),
                &limits,
                0,
            )
            .expect("valid")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
