//! The one subscription model behind every management dialect (DESIGN §3).
//!
//! The native API, Sitecore audit, Contensis and DatoCMS views all read and write this type; a
//! subscription created through one is the same record seen through another. Values here are
//! already validated (the API layers parse → validate → build this), so the runtime never
//! re-checks them. Options mean "the user did not set it, use the daemon default", never "must be
//! Some by now".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::ids::SubscriptionId;
use super::secret::Secret;

/// Which management API created the subscription. Renderers and policies use it for dialect
/// defaults; every dialect can still list and edit it where it can express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Dialect {
    #[default]
    Native,
    SitecoreAudit,
    Contensis,
    DatoCms,
}

/// The tenant a subscription belongs to: Sitecore `space`, Contensis `projectId`, DatoCMS site.
/// `None` for native subscriptions that are not scoped. Admin tokens can be limited to scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tenant {
    pub kind: TenantKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TenantKind {
    Space,
    Project,
    Site,
}

/// HTTP method of the outbound request (Contensis lets a subscription choose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            _ => return None,
        })
    }

    pub fn to_http(self) -> http::Method {
        match self {
            HttpMethod::Get => http::Method::GET,
            HttpMethod::Post => http::Method::POST,
            HttpMethod::Put => http::Method::PUT,
            HttpMethod::Patch => http::Method::PATCH,
            HttpMethod::Delete => http::Method::DELETE,
        }
    }
}

/// The default body a subscription receives when it has no template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Format {
    /// The event as a structured-mode CloudEvent (a CloudEvent input passes through unchanged).
    #[default]
    CloudEvents,
    /// The bytes Herald received for this event.
    Raw,
    /// The Sitecore webhook event handler shape, `WebhookItemId`/`WebhookItemName` set to this
    /// subscription's id and name.
    Sitecore,
    /// Sitecore Common Audit Log forwarding: a JSON array of the audit-log objects.
    SitecoreAudit,
    /// DatoCMS's default webhook body (spec §1.8), with this webhook's id, the call id and the
    /// retry count filled in.
    DatoCms,
    /// Contensis's default webhook request structure (spec §2.5).
    Contensis,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CloudEvents => "cloudevents",
            Format::Raw => "raw",
            Format::Sitecore => "sitecore",
            Format::SitecoreAudit => "sitecore-audit",
            Format::DatoCms => "datocms",
            Format::Contensis => "contensis",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cloudevents" => Format::CloudEvents,
            "raw" => Format::Raw,
            "sitecore" => Format::Sitecore,
            "sitecore-audit" => Format::SitecoreAudit,
            "datocms" => Format::DatoCms,
            "contensis" => Format::Contensis,
            _ => return None,
        })
    }
}

/// A body template, kept as the user wrote it and compiled (parsed and checked) by
/// `render::Plan::compile` when the subscription is saved, so a bad template is refused then and
/// never re-parsed per delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Template {
    /// DatoCMS `custom_payload`: a Mustache template rendered over the default DatoCMS body.
    Mustache(String),
    /// Contensis `templates`: `(key, template)` pairs, the key being `resourceType` or
    /// `resourceType.contentTypeId`; templates hold `{/json/pointer}` placeholders resolved
    /// against the event context `{"event", "user", "resource"}`. The most specific key wins;
    /// no matching key means the format's default body.
    Contensis(#[serde(deserialize_with = "super::exact::vec")] Vec<(String, String)>),
}

/// One extra request header. `value` may be write-only (`secret`): stored, sent, never returned.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderSpec {
    /// A valid HTTP header name, as the user spelled it.
    pub name: String,
    pub value: Secret,
    pub secret: bool,
}

impl std::fmt::Debug for HeaderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("HeaderSpec");
        d.field("name", &self.name);
        if self.secret {
            d.field("value", &self.value);
        } else {
            d.field("value", &self.value.expose());
        }
        d.field("secret", &self.secret).finish()
    }
}

/// How Herald authenticates to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetAuth {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// Any header carrying a key: `X-Api-Key: …`, Sitecore audit's `X-Secret: …`.
    Header { name: String, value: Secret },
}

/// When to try again after a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// The delay before each retry; its length is the number of retries. Empty: no retries.
    #[serde(deserialize_with = "super::exact::vec")]
    pub schedule: Vec<Duration>,
    /// Relative jitter applied to each delay (0.2 = ±20%).
    pub jitter: f64,
}

/// Who changed it and when; `version_no` is Contensis's optimistic-concurrency counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// `Box<str>`, like the other strings kept per stored subscription: 8 bytes less than a
    /// `String` each (issue 5).
    pub created_by: Box<str>,
    pub created_at_ms: i64,
    pub modified_by: Box<str>,
    pub modified_at_ms: i64,
    pub version_no: u64,
}

/// [`Subscription::extras`]: a JSON value that costs 8 bytes, not 32, while it is `Null` (as it
/// is for native subscriptions). Reads and writes go through `Deref`/`DerefMut` to the
/// [`serde_json::Value`]; it serializes as that value.
#[derive(Clone, Default, PartialEq)]
pub struct ExtrasValue(Option<Box<serde_json::Value>>);

/// What an empty [`ExtrasValue`] reads as.
static NULL: serde_json::Value = serde_json::Value::Null;

impl std::ops::Deref for ExtrasValue {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        self.0.as_deref().unwrap_or(&NULL)
    }
}

impl std::ops::DerefMut for ExtrasValue {
    fn deref_mut(&mut self) -> &mut serde_json::Value {
        self.0
            .get_or_insert_with(|| Box::new(serde_json::Value::Null))
    }
}

impl From<serde_json::Value> for ExtrasValue {
    fn from(v: serde_json::Value) -> Self {
        ExtrasValue((!v.is_null()).then(|| Box::new(v)))
    }
}

impl std::fmt::Debug for ExtrasValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for ExtrasValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExtrasValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(ExtrasValue::from)
    }
}

/// An `Option<Duration>` in 8 bytes instead of 16, for the per-subscription timeouts (issue 5:
/// a million subscriptions stay in memory). Whole nanoseconds, `u64::MAX` meaning none; a
/// duration of 584 years or more is kept as the longest one that fits. It serializes exactly as
/// the `Option<Duration>` it replaced, so stored subscriptions read back unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OptDuration(u64);

impl OptDuration {
    pub const NONE: OptDuration = OptDuration(u64::MAX);

    pub fn get(self) -> Option<Duration> {
        (self.0 != u64::MAX).then_some(Duration::from_nanos(self.0))
    }

    pub fn is_none(self) -> bool {
        self.0 == u64::MAX
    }
}

impl Default for OptDuration {
    fn default() -> Self {
        OptDuration::NONE
    }
}

impl From<Option<Duration>> for OptDuration {
    fn from(d: Option<Duration>) -> Self {
        match d {
            None => OptDuration::NONE,
            Some(d) => OptDuration(
                u64::try_from(d.as_nanos()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1)),
            ),
        }
    }
}

impl From<Duration> for OptDuration {
    fn from(d: Duration) -> Self {
        Some(d).into()
    }
}

impl std::fmt::Debug for OptDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for OptDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OptDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Duration>::deserialize(d).map(OptDuration::from)
    }
}

/// Optional text in 8 bytes (one thin pointer; an `Option<Box<str>>` takes 16), for the
/// descriptive fields few subscriptions set (issue 5: a million subscriptions stay in memory).
/// It serializes as the `Option<String>` it replaced.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OptText(Option<Box<Box<str>>>);

impl OptText {
    pub const NONE: OptText = OptText(None);

    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref().map(|s| &**s)
    }

    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl From<Option<String>> for OptText {
    fn from(s: Option<String>) -> Self {
        OptText(s.map(|s| Box::new(s.into_boxed_str())))
    }
}

impl From<&str> for OptText {
    fn from(s: &str) -> Self {
        OptText(Some(Box::new(s.into())))
    }
}

impl std::fmt::Debug for OptText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_deref().fmt(f)
    }
}

impl Serialize for OptText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_deref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OptText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d).map(OptText::from)
    }
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub dialect: Dialect,
    /// Boxed, like the other optional parts below that most subscriptions leave unset: with a
    /// million subscriptions in memory every inline byte counts (issue 5).
    pub tenant: Option<Box<Tenant>>,
    pub name: Box<str>,
    pub description: OptText,
    /// Disabled subscriptions match nothing; deliveries already queued still go out.
    pub enabled: bool,
    /// Target URL (absolute http/https).
    pub url: Box<str>,
    pub method: HttpMethod,
    /// Any filter matching selects the event; no filters selects every event.
    #[serde(deserialize_with = "super::exact::boxed")]
    pub filters: Box<[Filter]>,
    #[serde(deserialize_with = "super::exact::boxed")]
    pub headers: Box<[HeaderSpec]>,
    /// Boxed, like `retry`: most subscriptions have neither, and inline they would take 80 bytes
    /// of every stored subscription instead of 16 (issue 5: a million of them stay in memory).
    pub auth: Option<Box<TargetAuth>>,
    /// Standard Webhooks secret (`whsec_<base64>`); when set, every request is signed.
    pub signing_secret: Option<Secret>,
    pub format: Format,
    /// `None`: the daemon's `[delivery] retry_schedule`. Boxed (see `auth`).
    pub retry: Option<Box<RetryPolicy>>,
    /// `None`: the daemon's `[delivery] timeout`.
    pub timeout: OptDuration,
    /// `None`: the daemon's `[delivery] connect_timeout` (DatoCMS uses 2 s).
    #[serde(default)]
    pub connect_timeout: OptDuration,
    /// The body template, if any; `None` sends the format's default body. Dialects also template
    /// the URL (DatoCMS: Mustache; Contensis: `{/pointer}`) and Contensis header values.
    #[serde(default)]
    pub template: Option<Box<Template>>,
    /// Why the subscription was disabled by Herald itself (a `410 Gone`), if it was.
    pub disabled_reason: OptText,
    pub version: Version,
    /// What a dialect needs to show the subscription back exactly as it was written (the
    /// DatoCMS `events` list, a Contensis localized name, Sitecore `logLevel`, …) and that the
    /// common fields above do not carry. `Null` for native subscriptions.
    #[serde(default)]
    pub extras: ExtrasValue,
}

impl Subscription {
    /// Whether this subscription wants `event` (enabled and a filter matches).
    pub fn wants(&self, event: &super::event::Event, event_type_lc: &str) -> bool {
        self.enabled && super::filter::any_matches(&self.filters, event, event_type_lc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn extras_store_nothing_for_null_and_read_as_the_value() {
        let cases = [Value::Null, json!({"a": 1}), json!([1, "x"]), json!("s")];
        for v in cases {
            let e = ExtrasValue::from(v.clone());
            assert_eq!(e.0.is_none(), v.is_null(), "{v}");
            assert_eq!(*e, v);
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(text, v.to_string());
            let back: ExtrasValue = serde_json::from_str(&text).unwrap();
            assert_eq!(back, e, "{v}");
        }
        let mut e = ExtrasValue::default();
        assert!(e.is_null());
        *e = json!({"k": true});
        assert_eq!(e.get("k"), Some(&Value::Bool(true)));
    }

    /// The compact fields store what the types they replaced stored, so subscriptions written
    /// before them read back unchanged, and write the same JSON.
    #[test]
    fn compact_fields_read_and_write_what_the_options_did() {
        let durations = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_millis(2_000)),
            Some(Duration::new(30, 5)),
        ];
        for d in durations {
            let stored = serde_json::to_string(&d).unwrap();
            let c: OptDuration = serde_json::from_str(&stored).unwrap();
            assert_eq!(c.get(), d, "{stored}");
            assert_eq!(c.is_none(), d.is_none());
            assert_eq!(serde_json::to_string(&c).unwrap(), stored);
            assert_eq!(OptDuration::from(d), c);
        }
        // Beyond 584 years: kept as the longest that fits, never as "none".
        let huge = OptDuration::from(Duration::MAX);
        assert_eq!(huge.get(), Some(Duration::from_nanos(u64::MAX - 1)));
        assert_eq!(OptDuration::default(), OptDuration::NONE);

        for t in [
            None,
            Some(String::new()),
            Some("410 Gone: disabled".to_string()),
        ] {
            let stored = serde_json::to_string(&t).unwrap();
            let c: OptText = serde_json::from_str(&stored).unwrap();
            assert_eq!(c.as_deref(), t.as_deref(), "{stored}");
            assert_eq!(c.is_none(), t.is_none());
            assert_eq!(serde_json::to_string(&c).unwrap(), stored);
        }
        assert_eq!(OptText::from("x").as_deref(), Some("x"));
        assert_eq!(std::mem::size_of::<OptDuration>(), 8);
        assert_eq!(std::mem::size_of::<OptText>(), 8);
    }

    /// A stored subscription without the optional fields reads them as none, as it did while
    /// they were `Option`s: serde reads a missing field as an absent option, and the compact
    /// types deserialize through one.
    #[test]
    fn missing_optional_fields_read_as_none() {
        let sub = crate::render::fixtures::subscription(Format::CloudEvents);
        let mut stored = serde_json::to_value(&sub).unwrap();
        let fields = [
            "description",
            "timeout",
            "connect_timeout",
            "disabled_reason",
        ];
        for f in fields {
            assert!(stored.as_object_mut().unwrap().remove(f).is_some(), "{f}");
        }
        let back: Subscription = serde_json::from_value(stored).unwrap();
        assert!(back.description.is_none() && back.disabled_reason.is_none());
        assert!(back.timeout.is_none() && back.connect_timeout.is_none());
        assert_eq!(back, sub);
    }
}
