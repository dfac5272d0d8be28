//! The echo application of the end-to-end tests, as Kruise's e2e fixtures have it: a
//! Deployment, its Service and NGINX Ingress, and a Rollout of it.

/// The Ingress's host.
pub const HOST: &str = "echo.example.com";

/// A Deployment, its Service and Ingress, like Kruise's e2e fixtures.
pub fn app(image: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: {replicas}
  strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers: [{{name: echo, image: "{image}"}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{port: 80}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: echo}}
spec:
  ingressClassName: nginx
  rules:
  - host: {HOST}
    http:
      paths:
      - {{path: /apis/echo, pathType: Exact, backend: {{service: {{name: echo, port: {{number: 80}}}}}}}}
"#
    )
}

pub fn deployment(image: &str, replicas: u32) -> String {
    app(image, replicas)
        .split("\n---")
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub fn rollout(steps: &str) -> String {
    format!(
        r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {{name: echo}}
spec:
  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: echo}}}}
  strategy:
    canary:
      steps: {steps}
      trafficRoutings: [{{service: echo, gracePeriodSeconds: 0, ingress: {{name: echo}}}}]
"#
    )
}
