//! The CustomResourceDefinitions Sluice serves, as a real API server takes them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::kruise::v1alpha1::Rollout;
use crate::modules::{ClusterStrategyModule, StrategyModule};

/// Rollout, StrategyModule and ClusterStrategyModule.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        rollout(),
        served(StrategyModule::crd()),
        served(ClusterStrategyModule::crd()),
    ]
}

/// The Rollout's.
pub fn rollout() -> CustomResourceDefinition {
    served(Rollout::crd())
}

/// `crd` without what kube-apiserver warns about at every apply: the formats
/// schemars gives unsigned integers (`uint64`), which OpenAPI does not know; the
/// schema's `minimum: 0` still says what they meant.
fn served(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            known_formats(schema);
        }
    }
    crd
}

fn known_formats(schema: &mut JSONSchemaProps) {
    if schema
        .format
        .as_deref()
        .is_some_and(|f| f.starts_with("uint"))
    {
        schema.format = None;
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        known_formats(child);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        known_formats(items);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        known_formats(extra);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_is_structural_and_every_format_known() {
        for crd in super::all() {
            let value = serde_json::to_value(&crd).expect("json");
            let name = crd.metadata.name.clone().unwrap_or_default();
            assert_eq!(
                sluice_sim::resources::structural_errors(&value),
                Vec::<(String, String)>::new(),
                "{name}"
            );
            assert!(!value.to_string().contains("\"format\":\"uint"), "{name}");
        }
    }
}
