//! What a plan asks of the cluster: concrete writes, each a whole object or a patch,
//! carried out by `apply` as they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The object a write is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `apps/v1`, `v1`, …
    pub api_version: String,
    /// `Deployment`, `Service`, …
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Target {
    /// The object `kind` of `api_version` called `name` in `namespace`.
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Target {
        Target {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}/{}",
            self.api_version, self.kind, self.namespace, self.name
        )
    }
}

/// One write, in the order the plan lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Write {
    /// Create `object`. Its name is fixed, so a create whose answer was lost, made
    /// again, finds it there: that is no error.
    Create {
        /// The object.
        target: Target,
        /// The whole object.
        object: Value,
    },
    /// A JSON merge patch. With `missingOk`, an object that is not there (any more)
    /// is no error.
    Patch {
        /// The object.
        target: Target,
        /// The patch.
        patch: Value,
        /// A missing object is fine.
        #[serde(default)]
        missing_ok: bool,
    },
    /// Delete the object; one that is not there is no error.
    Delete {
        /// The object.
        target: Target,
        /// Let dependents go in the background (the canary Deployment's ReplicaSets).
        #[serde(default)]
        background: bool,
    },
}

impl Write {
    /// The object written.
    pub fn target(&self) -> &Target {
        match self {
            Write::Create { target, .. }
            | Write::Patch { target, .. }
            | Write::Delete { target, .. } => target,
        }
    }

    /// The write in a few words, naming the object: for errors and logs.
    pub fn describe(&self) -> String {
        let verb = match self {
            Write::Create { .. } => "create",
            Write::Patch { .. } => "patch",
            Write::Delete { .. } => "delete",
        };
        format!("{verb} {}", self.target())
    }

    /// A merge patch of an object that must exist.
    pub fn patch(target: Target, patch: Value) -> Write {
        Write::Patch {
            target,
            patch,
            missing_ok: false,
        }
    }
}
