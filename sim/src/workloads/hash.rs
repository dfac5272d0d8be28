//! `pod-template-hash`: the same template always hashes the same.

use serde_json::Value;

/// The alphabet Kubernetes encodes hashes in (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 64 hex digits standing for a digest of `text` (an image's, a container's):
/// deterministic, shaped like SHA-256, not one (nothing verifies it).
pub fn stand_in_digest(text: &str) -> String {
    (0u64..4)
        .map(|seed| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

/// The hash of a pod template, ignoring its own `pod-template-hash` label.
pub fn template_hash(template: &Value) -> String {
    let mut template = template.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
        labels.remove("controller-revision-hash");
    }
    // serde_json's maps are ordered by key: the text is canonical.
    let text = serde_json::to_string(&template).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_templates_hash_equal_and_the_hash_label_is_ignored() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "v1"}]}});
        let b = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}, "spec": {"containers": [{"image": "v1"}]}});
        let c = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "v2"}]}});
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&c));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
