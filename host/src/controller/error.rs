//! Why a reconcile failed: one variant per stage, naming the object and the cause.

/// A reconcile error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the cluster failed.
    #[error("observe: reading {kind} failed: {source}")]
    Observe {
        /// What was read.
        kind: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the cluster failed.
    #[error("apply: {change} failed: {source}")]
    Apply {
        /// The change.
        change: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the Rollout's status failed.
    #[error("report: writing the status failed: {0}")]
    Report(#[source] kube::Error),
    /// The strategy could not be run at all (the runtime is gone).
    #[error("decide: {0}")]
    Decide(String),
}

impl Error {
    /// A mapper for read errors of `kind`.
    pub fn read(kind: &'static str) -> impl Fn(kube::Error) -> Error {
        move |source| Error::Observe { kind, source }
    }

    /// The label metrics count errors by.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Observe { .. } => "observe",
            Error::Apply { .. } => "apply",
            Error::Report(_) => "report",
            Error::Decide(_) => "decide",
        }
    }

    /// Whether the error is an optimistic-concurrency conflict (just retry).
    pub fn is_conflict(&self) -> bool {
        let api = match self {
            Error::Apply { source, .. } | Error::Report(source) | Error::Observe { source, .. } => {
                source
            }
            Error::Decide(_) => return false,
        };
        matches!(api, kube::Error::Api(e) if e.code == 409)
    }
}
