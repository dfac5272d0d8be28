//! Resource paths: `/api/v1/...` and `/apis/<group>/<version>/...`.

use crate::error::ApiError;
use crate::resources::Registry;

/// What a resource path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API group; empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, for namespaced paths.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub plural: String,
    /// Object name, for object paths.
    pub name: Option<String>,
    /// `status`, `scale`, …
    pub subresource: Option<String>,
}

/// What a path under `/api` or `/apis` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A group/version's resource list.
    Discovery {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// A group's versions (`/apis/<group>`).
    Group(String),
    /// A resource.
    Resource(Target),
}

/// Parses `path`, using the registry to tell a namespaced list from a namespace's
/// subresource.
pub fn parse(path: &str, registry: &Registry) -> Result<Route, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group] => return Ok(Route::Group((*group).to_owned())),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return Err(ApiError::no_route(path)),
    };
    if rest.is_empty() {
        return Ok(Route::Discovery { group, version });
    }
    let namespaced_list = |plural: &str| {
        registry
            .find(&group, &version, plural)
            .is_some_and(|t| t.namespaced)
    };
    let s = |x: &&str| (*x).to_owned();
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if namespaced_list(plural) => Target {
            group,
            version,
            namespace: Some(s(ns)),
            plural: s(plural),
            name: tail.first().map(s),
            subresource: tail.get(1).map(s),
        },
        [plural, tail @ ..] => Target {
            group,
            version,
            namespace: None,
            plural: s(plural),
            name: tail.first().map(s),
            subresource: tail.get(1).map(s),
        },
        [] => return Err(ApiError::no_route(path)),
    };
    if rest.len() > 5 {
        return Err(ApiError::no_route(path));
    }
    Ok(Route::Resource(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse(path, &Registry::builtin()).expect("parses") {
            Route::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        let t = target("/api/v1/namespaces/default/pods/web-1/status");
        assert_eq!(
            (
                t.namespace.as_deref(),
                t.plural.as_str(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            (Some("default"), "pods", Some("web-1"), Some("status"))
        );
        let t = target("/api/v1/namespaces/default");
        assert_eq!(
            (t.namespace, t.plural.as_str(), t.name.as_deref()),
            (None, "namespaces", Some("default"))
        );
        let t = target("/api/v1/namespaces/default/finalize");
        assert_eq!(
            (t.plural.as_str(), t.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
        let t = target("/apis/apps/v1/deployments");
        assert_eq!(
            (t.group.as_str(), t.namespace, t.name),
            ("apps", None, None)
        );
        let t = target("/apis/apps/v1/namespaces/x/deployments/web/scale");
        assert_eq!(t.subresource.as_deref(), Some("scale"));
        assert_eq!(
            parse("/apis/apps/v1", &Registry::builtin()).unwrap(),
            Route::Discovery {
                group: "apps".into(),
                version: "v1".into()
            }
        );
    }
}
