//! Reading and writing the parts of a JSON object every kind shares.

use serde_json::{Map, Value, json};

/// Read access to an object's metadata.
pub struct Meta<'a>(Option<&'a Map<String, Value>>);

impl<'a> Meta<'a> {
    /// The metadata of `object`.
    pub fn of(object: &'a Value) -> Self {
        Meta(object.get("metadata").and_then(Value::as_object))
    }

    /// A metadata field.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(field)).filter(|v| !v.is_null())
    }

    /// A string metadata field, or empty.
    pub fn str(&self, field: &str) -> &'a str {
        self.get(field).and_then(Value::as_str).unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &'a str {
        self.str("name")
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &'a str {
        self.str("namespace")
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &'a str {
        self.str("uid")
    }

    /// `metadata.generation`.
    pub fn generation(&self) -> u64 {
        self.get("generation").and_then(Value::as_u64).unwrap_or(0)
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Option<&'a Map<String, Value>> {
        self.get("labels").and_then(Value::as_object)
    }

    /// One label.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels()
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    }

    /// One annotation.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.get("annotations")
            .and_then(Value::as_object)
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    /// `metadata.finalizers`.
    pub fn finalizers(&self) -> Vec<&'a str> {
        self.get("finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `metadata.ownerReferences`.
    pub fn owner_references(&self) -> &'a [Value] {
        self.get("ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The uid of the controller owner, if any.
    pub fn controller_uid(&self) -> Option<&'a str> {
        self.owner_references()
            .iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .and_then(|r| r.get("uid"))
            .and_then(Value::as_str)
    }
}

/// `metadata`, created if absent.
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("made an object above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("made an object above")
}

/// (namespace, name) of an object.
pub fn key(object: &Value) -> (String, String) {
    let m = Meta::of(object);
    (m.namespace().to_owned(), m.name().to_owned())
}

/// `metadata.resourceVersion`, or empty.
pub fn resource_version(object: &Value) -> &str {
    Meta::of(object).str("resourceVersion")
}

/// The object without `metadata` and `status`: what generation tracks.
pub fn without_meta_and_status(object: &Value) -> Value {
    match object {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A value at a dotted path such as `spec.template`.
pub fn at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(object, |v, part| v.get(part))
        .filter(|v| !v.is_null())
}

/// A number at a dotted path.
pub fn int_at(object: &Value, path: &str) -> Option<i64> {
    at(object, path).and_then(Value::as_i64)
}

/// Sets a value at a dotted path, creating objects on the way.
pub fn set_at(object: &mut Value, path: &str, value: Value) {
    let mut cur = object;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("made an object above");
        if i == parts.len() - 1 {
            map.insert((*part).to_owned(), value);
            return;
        }
        cur = map.entry((*part).to_owned()).or_insert_with(|| json!({}));
    }
}

/// A fresh uid.
pub fn new_uid() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| {
        bytes[r]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    format!(
        "{}-{}-4{}-a{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        &h(8..10)[1..],
        h(10..16)
    )
}

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `n` random characters of the alphabet Kubernetes uses for generated names.
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
