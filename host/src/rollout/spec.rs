//! How the steps of an OpenKruise Rollout as written become the steps a strategy sees.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use crate::kruise::v1alpha1::CanaryStep;
use crate::kruise::v1alpha1::HeaderMatch;
use crate::strategy::model::{
    MatchKind, MatchSource, Percent, Replicas, RequestCondition, RequestRoute, Step,
};

/// Kruise's NGINX convention: a "header" of this name is a cookie match on the cookie
/// named by its value.
pub const COOKIE_HEADER: &str = "canary-by-cookie";

/// Converts steps as written to the steps a strategy sees, naming the field of each error.
pub fn steps(written: &[CanaryStep]) -> Result<Vec<Step>, Vec<String>> {
    let mut errors = Vec::new();
    let steps = written
        .iter()
        .enumerate()
        .map(|(i, s)| step(i, s, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

fn step(i: usize, s: &CanaryStep, errors: &mut Vec<String>) -> Step {
    let at = format!("spec.strategy.canary.steps[{i}]");
    let traffic_weight =
        s.weight.and_then(
            |w| match u8::try_from(w).ok().and_then(|w| Percent::new(w).ok()) {
                Some(p) => Some(p),
                None => {
                    errors.push(format!("{at}.weight: {w} is outside 0-100"));
                    None
                }
            },
        );
    let replicas = s.replicas.as_ref().and_then(|r| match replicas(r) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(format!("{at}.replicas: {e}"));
            None
        }
    });
    let pause_seconds = s.pause.duration.and_then(|d| match u32::try_from(d) {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push(format!(
                "{at}.pause.duration: {d} must be zero or more seconds"
            ));
            None
        }
    });
    let matches = s
        .matches
        .iter()
        .enumerate()
        .map(|(j, m)| RequestRoute {
            conditions: m
                .headers
                .iter()
                .enumerate()
                .map(|(k, h)| condition(&format!("{at}.matches[{j}].headers[{k}]"), h, errors))
                .collect(),
        })
        .collect();
    Step {
        traffic_weight,
        replicas,
        matches,
        pause_seconds,
    }
}

/// Parses Kruise's replicas: a count, or a percentage string.
pub fn replicas(r: &IntOrString) -> Result<Replicas, String> {
    match r {
        IntOrString::Int(n) => u32::try_from(*n)
            .map(Replicas::Count)
            .map_err(|_| format!("{n} must be zero or more pods")),
        IntOrString::String(s) => {
            let trimmed = s.trim();
            if let Some(pct) = trimmed.strip_suffix('%') {
                pct.trim()
                    .parse::<u8>()
                    .ok()
                    .and_then(|p| Percent::new(p).ok())
                    .map(Replicas::Percent)
                    .ok_or_else(|| format!("\"{s}\" must be a percentage from 0% to 100%"))
            } else {
                trimmed.parse::<u32>().map(Replicas::Count).map_err(|_| {
                    format!("\"{s}\" must be a pod count or a percentage such as \"20%\"")
                })
            }
        }
    }
}

fn condition(at: &str, h: &HeaderMatch, errors: &mut Vec<String>) -> RequestCondition {
    let kind = match h.kind.as_deref() {
        None | Some("Exact") => MatchKind::Exact,
        Some("RegularExpression") => MatchKind::RegularExpression,
        Some(other) => {
            errors.push(format!(
                "{at}.type: \"{other}\" is not a match type; use Exact or RegularExpression"
            ));
            MatchKind::Exact
        }
    };
    if h.name == COOKIE_HEADER {
        RequestCondition {
            source: MatchSource::Cookie,
            name: h.value.clone(),
            value: "always".into(),
            kind: MatchKind::Exact,
        }
    } else {
        RequestCondition {
            source: MatchSource::Header,
            name: h.name.clone(),
            value: h.value.clone(),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<Step>, Vec<String>> {
        let written: Vec<CanaryStep> = serde_yaml_ng::from_str(yaml).expect("yaml");
        steps(&written)
    }

    #[test]
    fn kruise_steps_convert() {
        let got = parse(
            r#"
- weight: 20
- replicas: "40%"
  pause: {duration: 60}
- replicas: 3
  matches:
  - headers:
    - {type: RegularExpression, name: user-agent, value: ".*Android.*"}
    - {name: canary-by-cookie, value: beta}
"#,
        )
        .unwrap();
        assert_eq!(got[0].traffic_weight, Some(Percent::new(20).unwrap()));
        assert_eq!(got[0].replicas, None);
        assert_eq!(got[0].pause_seconds, None);
        assert_eq!(
            got[1].replicas,
            Some(Replicas::Percent(Percent::new(40).unwrap()))
        );
        assert_eq!(got[1].pause_seconds, Some(60));
        assert_eq!(got[2].replicas, Some(Replicas::Count(3)));
        let conditions = &got[2].matches[0].conditions;
        assert_eq!(conditions[0].kind, MatchKind::RegularExpression);
        assert_eq!(conditions[0].source, MatchSource::Header);
        assert_eq!(
            conditions[1],
            RequestCondition {
                source: MatchSource::Cookie,
                name: "beta".into(),
                value: "always".into(),
                kind: MatchKind::Exact
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let errors = parse(
            r#"
- weight: 150
- replicas: "120%"
- replicas: "x"
  pause: {duration: -1}
- matches: [{headers: [{type: Prefix, name: a, value: b}]}]
"#,
        )
        .unwrap_err();
        let expected = [
            "spec.strategy.canary.steps[0].weight: 150 is outside 0-100",
            "spec.strategy.canary.steps[1].replicas: \"120%\" must be a percentage from 0% to 100%",
            "spec.strategy.canary.steps[2].replicas: \"x\" must be a pod count or a percentage such as \"20%\"",
            "spec.strategy.canary.steps[2].pause.duration: -1 must be zero or more seconds",
            "spec.strategy.canary.steps[3].matches[0].headers[0].type: \"Prefix\" is not a match type; use Exact or RegularExpression",
        ];
        assert_eq!(errors, expected);
    }
}
