use super::*;

const FILE: &str = r#"# an app and its rollout
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: echo
  namespace: team
spec:
  objectRef:
    workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}
  strategy:
    canary:
      steps:
      - weight: 20
        pause: {}
      - weight: 10
        pauze: {duration: 60}
      trafficRoutings:
      - service: echo
        ingress: {name: echo}
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: again, namespace: team}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}
  strategy: {canary: {steps: [{weight: 20}]}}
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: typed, namespace: team}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: other}}
  strategy: {canary: {steps: [{weight: "twenty"}]}}
"#;

fn findings() -> Vec<Finding> {
    let (manifests, mut findings) = manifests("app.yaml", FILE);
    assert_eq!(manifests.len(), 3, "the Deployment is not a Rollout");
    findings.extend(check(&manifests, Options::default()));
    findings.sort_by_key(|f| f.line);
    findings
}

#[test]
fn documents_start_where_they_start() {
    let docs = documents(FILE);
    assert_eq!(docs.len(), 4);
    assert_eq!(
        docs.iter().map(|d| d.line).collect::<Vec<_>>(),
        [1, 6, 25, 32]
    );
    assert!(
        docs[1]
            .text
            .starts_with("apiVersion: rollouts.kruise.io/v1alpha1")
    );
}

#[test]
fn each_finding_names_the_field_at_its_line() {
    let got: Vec<(usize, String, String)> = findings()
        .into_iter()
        .map(|f| (f.line, f.rollout, f.message))
        .collect();
    let want: &[(usize, &str, &str)] = &[
        // Steps must not go down (Kruise's rule and words; Kruise names no step,
        // so the first weight is shown).
        (
            17,
            "team/echo",
            "Spec.Strategy.Canary.Steps.Weight: Invalid value",
        ),
        // A misspelt field is dropped by the API server: named, at its line.
        (
            20,
            "team/echo",
            "spec.strategy.canary.steps[1].pauze: unknown field",
        ),
        // The second Rollout on the same workload (Kruise's rule and words, across
        // the files), at the start of its document.
        (
            25,
            "team/again",
            "This rollout conflict with Rollout(team/echo)",
        ),
        // A wrong type, found while reading, at the field.
        (
            37,
            "team/typed",
            "spec.strategy.canary.steps[0].weight: invalid type",
        ),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((line, rollout, message), (wline, wrollout, wmessage)) in got.iter().zip(want) {
        assert_eq!((line, rollout.as_str()), (wline, *wrollout), "{message}");
        assert!(
            message.contains(wmessage),
            "{message:?} should say {wmessage:?}"
        );
    }
}

#[test]
fn a_clean_file_has_no_findings() {
    let clean = r#"apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: echo}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}
  strategy: {canary: {steps: [{weight: 20, pause: {}}, {weight: 100}], trafficRoutings: [{service: echo, ingress: {name: echo}}]}}
"#;
    let (manifests, findings) = manifests("ok.yaml", clean);
    assert!(findings.is_empty());
    assert_eq!(check(&manifests, Options::default()), []);
}

#[test]
fn not_yaml_is_a_finding_at_its_line() {
    let (manifests, findings) = manifests("bad.yaml", "kind: Rollout\n---\nspec: value: other\n");
    assert!(manifests.is_empty());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].line, 3);
    assert!(
        findings[0].message.starts_with("not YAML"),
        "{:?}",
        findings[0]
    );
}
