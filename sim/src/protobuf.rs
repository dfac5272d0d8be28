//! Protobuf request bodies.
//!
//! `kubectl create -f`, `apply`, `patch`, `scale` and `set image` send JSON and work.
//! kubectl's generators (`kubectl create namespace|deployment|configmap …`) send
//! protobuf bodies and do not fall back when refused; the simulator does not decode
//! protobuf, so it answers 415 with a message saying what to do instead.

use serde_json::Value;

use crate::error::ApiError;

/// Refuses a protobuf body with the workaround.
pub fn decode(_body: &[u8]) -> Result<Value, ApiError> {
    Err(ApiError {
        code: 415,
        reason: "UnsupportedMediaType".into(),
        message: "the Sluice simulator accepts JSON and YAML bodies, not protobuf: kubectl's generators (`kubectl create namespace|deployment|configmap …`) send protobuf; write the object as YAML and use `kubectl apply -f` or `kubectl create -f` instead".into(),
        details: None,
    })
}
