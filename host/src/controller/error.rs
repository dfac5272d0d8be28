//! Why a reconcile failed: one variant per stage, naming the object and the cause.
//! (The decide stage does not fail a reconcile: a module that cannot decide is a
//! condition on its Rollout.)

/// A reconcile error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the cluster failed.
    #[error("observe: reading {what} for Rollout {rollout} failed: {source}")]
    Observe {
        /// `namespace/name` of the Rollout.
        rollout: String,
        /// What was read.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A write failed.
    #[error("apply: {write} failed: {source}")]
    Apply {
        /// The write, naming its object.
        write: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the Rollout's status failed.
    #[error("report: writing the status of Rollout {rollout} failed: {source}")]
    Report {
        /// `namespace/name` of the Rollout.
        rollout: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The status to write could not be serialised.
    #[error("report: the status of Rollout {rollout} cannot be serialised: {source}")]
    Serialise {
        /// `namespace/name` of the Rollout.
        rollout: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The label metrics count errors by.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Observe { .. } => "observe",
            Error::Apply { .. } => "apply",
            Error::Report { .. } | Error::Serialise { .. } => "report",
        }
    }

    /// Whether the error is an optimistic-concurrency conflict (just retry).
    pub fn is_conflict(&self) -> bool {
        let api = match self {
            Error::Apply { source, .. }
            | Error::Report { source, .. }
            | Error::Observe { source, .. } => source,
            Error::Serialise { .. } => return false,
        };
        matches!(api, kube::Error::Api(e) if e.code == 409)
    }
}
