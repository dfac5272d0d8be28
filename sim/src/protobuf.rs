//! Protobuf request bodies, as kubectl's generators send them (`kubectl create
//! namespace|deployment|configmap|secret|service|job|role …`).
//!
//! A body is kube-apiserver's envelope: the bytes `k8s\0`, then a
//! `runtime.Unknown` holding the object's `apiVersion` and `kind` and the object
//! itself in protobuf. The object is decoded into kube-rs' `k8s-pb` types and
//! written as the JSON the API server would have received, so the rest of the
//! simulator sees no difference. `generated.rs` (written by `generate.py`) has a
//! `ToJson` for every type of the groups kubectl creates, with the JSON names
//! k8s-openapi spells.
//!
//! The JSON follows Kubernetes' conventions rather than protobuf's: `Time` as RFC
//! 3339, `IntOrString` as a number or a string, `Quantity` as its text,
//! `RawExtension` as the JSON it holds, 64-bit integers as numbers, and embedded
//! structs (`Volume`'s source, `Probe`'s handler) inline. Go writes a struct's
//! plain (non-pointer) scalar fields whatever their value, so a zero number, empty
//! string or `false` is dropped, as the JSON's `omitempty` would drop it; the
//! pointer fields whose zero means something (`replicas: 0`, `runAsUser: 0`,
//! `automountServiceAccountToken: false`, …) are listed in [`MEANINGFUL_ZERO`] and
//! kept. A body with fields these types do not know (a newer client's) is refused,
//! never stored without them.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::apimachinery::pkg::api::resource::{Quantity, QuantityValue};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{Duration, FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};

use crate::error::ApiError;

mod generated;

/// The envelope's first bytes.
const MAGIC: &[u8] = b"k8s\0";

/// Pointer fields (message, JSON field) whose zero value is a choice, not an absence.
const MEANINGFUL_ZERO: &[(&str, &str)] = &[
    ("DeploymentSpec", "replicas"),
    ("DeploymentSpec", "revisionHistoryLimit"),
    ("DeploymentSpec", "progressDeadlineSeconds"),
    ("ReplicaSetSpec", "replicas"),
    ("StatefulSetSpec", "replicas"),
    ("StatefulSetSpec", "revisionHistoryLimit"),
    ("RollingUpdateStatefulSetStrategy", "partition"),
    ("JobSpec", "parallelism"),
    ("JobSpec", "completions"),
    ("JobSpec", "activeDeadlineSeconds"),
    ("JobSpec", "backoffLimit"),
    ("JobSpec", "backoffLimitPerIndex"),
    ("JobSpec", "maxFailedIndexes"),
    ("JobSpec", "ttlSecondsAfterFinished"),
    ("JobSpec", "suspend"),
    ("JobSpec", "manualSelector"),
    ("CronJobSpec", "suspend"),
    ("CronJobSpec", "startingDeadlineSeconds"),
    ("CronJobSpec", "successfulJobsHistoryLimit"),
    ("CronJobSpec", "failedJobsHistoryLimit"),
    ("PodSpec", "terminationGracePeriodSeconds"),
    ("PodSpec", "activeDeadlineSeconds"),
    ("PodSpec", "automountServiceAccountToken"),
    ("PodSpec", "enableServiceLinks"),
    ("PodSpec", "shareProcessNamespace"),
    ("PodSpec", "hostUsers"),
    ("PodSpec", "priority"),
    ("SecurityContext", "runAsUser"),
    ("SecurityContext", "runAsGroup"),
    ("SecurityContext", "runAsNonRoot"),
    ("SecurityContext", "privileged"),
    ("SecurityContext", "readOnlyRootFilesystem"),
    ("SecurityContext", "allowPrivilegeEscalation"),
    ("PodSecurityContext", "runAsUser"),
    ("PodSecurityContext", "runAsGroup"),
    ("PodSecurityContext", "runAsNonRoot"),
    ("PodSecurityContext", "fsGroup"),
    ("ServiceAccount", "automountServiceAccountToken"),
    ("ConfigMap", "immutable"),
    ("Secret", "immutable"),
    ("ConfigMapVolumeSource", "defaultMode"),
    ("SecretVolumeSource", "defaultMode"),
    ("ConfigMapVolumeSource", "optional"),
    ("SecretVolumeSource", "optional"),
    ("ConfigMapKeySelector", "optional"),
    ("SecretKeySelector", "optional"),
    ("ConfigMapEnvSource", "optional"),
    ("SecretEnvSource", "optional"),
    ("ServiceSpec", "allocateLoadBalancerNodePorts"),
    ("ClientIpConfig", "timeoutSeconds"),
    ("HttpIngressPath", "pathType"),
    ("PodDisruptionBudgetSpec", "minAvailable"),
    ("PodDisruptionBudgetSpec", "maxUnavailable"),
    ("RollingUpdateDeployment", "maxUnavailable"),
    ("RollingUpdateDeployment", "maxSurge"),
    ("LeaseSpec", "leaseDurationSeconds"),
    ("LeaseSpec", "leaseTransitions"),
];

fn unsupported(message: String) -> ApiError {
    ApiError {
        code: 415,
        reason: "UnsupportedMediaType".into(),
        message,
        details: None,
    }
}

/// Decodes a protobuf body into the JSON object it carries.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request(
            "the protobuf body does not start with kube-apiserver's envelope (the bytes `k8s\\0`)",
        )
    })?;
    let unknown = Unknown::decode(envelope)
        .map_err(|e| ApiError::bad_request(format!("the protobuf envelope cannot be read: {e}")))?;
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(unsupported(format!(
            "the protobuf body is encoded with {:?}; send it unencoded, or as JSON",
            unknown.content_encoding.unwrap_or_default()
        )));
    }
    let meta = unknown.type_meta.unwrap_or_default();
    let api_version = meta.api_version.unwrap_or_default();
    let kind = meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let object = generated::decode(&api_version, &kind, &raw).ok_or_else(|| {
        unsupported(format!(
            "the simulator decodes protobuf bodies of Kubernetes' built-in kinds, not {kind} of {api_version}; send it as JSON or YAML (`kubectl apply -f`)"
        ))
    })?;
    let mut object = object.map_err(|e| match e {
        Undecodable::Newer => unsupported(format!(
            "the {kind} has fields newer than the Kubernetes types the simulator knows; send it as JSON or YAML (`kubectl apply -f`)"
        )),
        Undecodable::Invalid(e) => ApiError::bad_request(format!(
            "the protobuf body is not a valid {kind} of {api_version}: {e}"
        )),
    })?;
    if let Value::Object(map) = &mut object {
        let mut typed = Map::new();
        typed.insert("apiVersion".into(), api_version.into());
        typed.insert("kind".into(), kind.into());
        typed.append(map);
        return Ok(Value::Object(typed));
    }
    Ok(object)
}

/// Why an object cannot be decoded.
enum Undecodable {
    /// It has fields these types do not know: prost would skip them.
    Newer,
    /// It is not protobuf of its kind.
    Invalid(prost::DecodeError),
}

/// `raw` as a `T`, in JSON; refused when `T` does not hold all of it (prost skips
/// fields it does not know).
fn json_of<T: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, Undecodable> {
    let message = T::decode(raw).map_err(Undecodable::Invalid)?;
    // The same length: nothing was skipped. Otherwise, field by field.
    if message.encoded_len() != raw.len() && !holds_only_known(raw, &message.encode_to_vec()) {
        return Err(Undecodable::Newer);
    }
    Ok(message.to_json())
}

/// One field of a protobuf message on the wire.
struct WireField<'a> {
    tag: u64,
    wire_type: u64,
    /// The value: a varint's or a fixed number's bytes, a length-delimited field's
    /// content.
    payload: &'a [u8],
}

impl WireField<'_> {
    /// A map entry's zero key or value (tag 1 or 2): Go writes it, prost does not.
    fn is_map_entry_zero(&self) -> bool {
        (self.tag == 1 || self.tag == 2)
            && match self.wire_type {
                0 => self.payload == [0],
                2 => self.payload.is_empty(),
                _ => false,
            }
    }
}

fn read_varint(bytes: &mut &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some((value, i + 1));
        }
    }
    None
}

/// The fields of a message, in order; `None` when `bytes` is not one.
fn wire_fields(mut bytes: &[u8]) -> Option<Vec<WireField<'_>>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (key, _) = read_varint(&mut bytes)?;
        let (tag, wire_type) = (key >> 3, key & 7);
        let len = match wire_type {
            0 => {
                let mut rest = bytes;
                read_varint(&mut rest)?.1
            }
            1 => 8,
            2 => usize::try_from(read_varint(&mut bytes)?.0).ok()?,
            5 => 4,
            _ => return None,
        };
        let payload = bytes.get(..len)?;
        bytes = &bytes[len..];
        fields.push(WireField {
            tag,
            wire_type,
            payload,
        });
    }
    Some(fields)
}

/// Whether `original` holds nothing that `canonical`, prost's encoding of what it
/// decoded from it, lacks. Both write fields in tag order; they may differ only
/// where prost leaves out a map entry's zero key or value, which Go writes.
fn holds_only_known(original: &[u8], canonical: &[u8]) -> bool {
    let (Some(original), Some(canonical)) = (wire_fields(original), wire_fields(canonical)) else {
        return false;
    };
    let mut canonical = canonical.into_iter().peekable();
    for field in original {
        match canonical.peek() {
            Some(c) if c.tag == field.tag && c.wire_type == field.wire_type => {
                let same = c.payload == field.payload
                    || (field.wire_type == 2 && holds_only_known(field.payload, c.payload));
                if !same {
                    return false;
                }
                canonical.next();
            }
            _ if field.is_map_entry_zero() => {}
            _ => return false,
        }
    }
    canonical.next().is_none()
}

/// A Kubernetes type as its JSON.
trait ToJson {
    fn to_json(&self) -> Value;
    /// A plain field's zero: `omitempty` drops it.
    fn is_zero(&self) -> bool {
        false
    }
}

/// A field of a message: its JSON, or nothing when it is not written.
trait Field {
    fn json(&self, meaningful_zero: bool) -> Option<Value>;
}

impl<T: ToJson> Field for Option<T> {
    fn json(&self, meaningful_zero: bool) -> Option<Value> {
        let value = self.as_ref()?;
        if value.is_zero() && !meaningful_zero {
            return None;
        }
        Some(value.to_json()).filter(|v| !v.is_null())
    }
}

impl<T: ToJson> Field for Vec<T> {
    fn json(&self, _: bool) -> Option<Value> {
        (!self.is_empty()).then(|| Value::Array(self.iter().map(ToJson::to_json).collect()))
    }
}

impl<T: ToJson> Field for BTreeMap<String, T> {
    fn json(&self, _: bool) -> Option<Value> {
        (!self.is_empty())
            .then(|| Value::Object(self.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()))
    }
}

/// A `bytes` field: base64, as Go writes `[]byte`.
struct Bytes<'a>(&'a Option<Vec<u8>>);

impl Field for Bytes<'_> {
    fn json(&self, _: bool) -> Option<Value> {
        let bytes = self.0.as_ref().filter(|b| !b.is_empty())?;
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        )
    }
}

/// A `map<string, bytes>` field (`binaryData`, a Secret's `data`).
struct BytesMap<'a>(&'a BTreeMap<String, Vec<u8>>);

impl Field for BytesMap<'_> {
    fn json(&self, _: bool) -> Option<Value> {
        (!self.0.is_empty()).then(|| {
            Value::Object(
                self.0
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            base64::engine::general_purpose::STANDARD.encode(v).into(),
                        )
                    })
                    .collect(),
            )
        })
    }
}

fn put(out: &mut Map<String, Value>, message: &str, key: &str, field: &dyn Field) {
    if let Some(value) = field.json(MEANINGFUL_ZERO.contains(&(message, key))) {
        out.insert(key.to_owned(), value);
    }
}

/// An embedded struct's fields, written as the parent's.
fn inline<T: ToJson>(out: &mut Map<String, Value>, field: &Option<T>) {
    if let Some(Value::Object(fields)) = field.as_ref().map(ToJson::to_json) {
        out.extend(fields);
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        self.clone().into()
    }
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value {
        (*self).into()
    }
    fn is_zero(&self) -> bool {
        !*self
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(&self) -> Value {
                (*self).into()
            }
            fn is_zero(&self) -> bool {
                *self == 0
            }
        }
    )*};
}
numbers!(i32, i64, u32, u64);

impl ToJson for f64 {
    fn to_json(&self) -> Value {
        (*self).into()
    }
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

/// RFC 3339 to the second, as `metav1.Time` writes itself; `null` for the zero time.
impl ToJson for Time {
    fn to_json(&self) -> Value {
        let seconds = self.seconds.unwrap_or(0);
        if seconds == 0 && self.nanos.unwrap_or(0) == 0 {
            return Value::Null;
        }
        jiff::Timestamp::from_second(seconds).map_or(Value::Null, |t| format!("{t:.0}").into())
    }
}

/// RFC 3339 to the microsecond, as `metav1.MicroTime` writes itself.
impl ToJson for MicroTime {
    fn to_json(&self) -> Value {
        let (seconds, nanos) = (self.seconds.unwrap_or(0), self.nanos.unwrap_or(0));
        if seconds == 0 && nanos == 0 {
            return Value::Null;
        }
        jiff::Timestamp::new(seconds, nanos).map_or(Value::Null, |t| format!("{t:.6}").into())
    }
}

impl ToJson for Duration {
    fn to_json(&self) -> Value {
        go_duration(self.duration.unwrap_or(0)).into()
    }
}

impl ToJson for IntOrString {
    fn to_json(&self) -> Value {
        if self.r#type == Some(1) {
            self.str_val.clone().unwrap_or_default().into()
        } else {
            self.int_val.unwrap_or(0).into()
        }
    }
    fn is_zero(&self) -> bool {
        self.r#type.unwrap_or(0) == 0 && self.int_val.unwrap_or(0) == 0
    }
}

impl ToJson for Quantity {
    fn to_json(&self) -> Value {
        self.string.clone().unwrap_or_default().into()
    }
}

impl ToJson for QuantityValue {
    fn to_json(&self) -> Value {
        self.string.clone().unwrap_or_default().into()
    }
}

/// The JSON a `RawExtension` or a `FieldsV1` holds; `null` when it is not JSON.
fn raw_json(raw: &Option<Vec<u8>>) -> Value {
    raw.as_deref()
        .and_then(|r| serde_json::from_slice(r).ok())
        .unwrap_or(Value::Null)
}

impl ToJson for RawExtension {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
}

impl ToJson for FieldsV1 {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
}

/// Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `300ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, div) = match n {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", trim(n, div));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let seconds = trim(n % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `n / div` with the fraction's trailing zeros dropped.
fn trim(n: u64, div: u64) -> String {
    let whole = n / div;
    let frac = n % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
