//! The contract's rules on a decision, checked before the host acts on it.
//!
//! A decision that breaks any rule is not applied: the rollout pauses with every
//! violation listed, each naming the field.

use super::limits::Limits;
use super::model::{Action, Decision, MatchKind, Observation, Percent, Replicas, RequestRoute};

/// Most request routes a step may carry (Kruise's limit).
pub const MAX_ROUTES: usize = 16;
/// Most conditions in one route.
pub const MAX_CONDITIONS: usize = 16;
/// Longest header or cookie name or value.
pub const MAX_MATCH_TEXT: usize = 256;
/// Longest a module may ask the host to wait before deciding again.
pub const MAX_RECHECK_SECONDS: u32 = 7 * 24 * 3600;

/// Collects rule violations while a decision is converted and checked.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

impl Violations {
    /// Records one broken rule.
    pub fn push(&mut self, violation: String) {
        self.0.push(violation);
    }

    /// A share, or a violation naming `field`.
    pub fn percent(&mut self, field: &str, value: u8) -> Percent {
        Percent::new(value).unwrap_or_else(|e| {
            self.push(format!("{field}: {e}"));
            Percent::FULL
        })
    }

    /// The violations, if any.
    pub fn into_result(self) -> Result<(), Vec<String>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Checks a converted decision against the observation it answers and the module's limits.
pub fn check(decision: &Decision, input: &Observation, limits: &Limits, found: &mut Violations) {
    let steps = u32::try_from(input.steps.len()).unwrap_or(u32::MAX);
    if decision.step == 0 || decision.step > steps {
        found.push(format!(
            "step: {} is not a step of this rollout (1-{steps})",
            decision.step
        ));
    }
    if let Replicas::Count(n) = decision.target.replicas
        && n > input.workload.desired
    {
        found.push(format!(
            "target.replicas: {n} is more than the workload's {} desired replicas",
            input.workload.desired
        ));
    }
    check_routes(
        "target.traffic.matches",
        &decision.target.traffic.matches,
        found,
    );
    match &decision.action {
        Action::Hold { recheck_seconds }
        | Action::Pause {
            recheck_seconds: Some(recheck_seconds),
        } if *recheck_seconds > MAX_RECHECK_SECONDS => found.push(format!(
            "action: a recheck after {recheck_seconds}s is longer than the {MAX_RECHECK_SECONDS}s allowed"
        )),
        Action::Advance if decision.step <= input.current_step => found.push(format!(
            "action: advance must name a later step than the current step {}, not {}",
            input.current_step, decision.step
        )),
        Action::Abort { reason } if reason.len() > limits.max_message_bytes => found.push(format!(
            "action.abort: the reason is {} bytes, more than the {} allowed",
            reason.len(),
            limits.max_message_bytes
        )),
        _ => {}
    }
    if decision.message.len() > limits.max_message_bytes {
        found.push(format!(
            "message: {} bytes, more than the {} allowed",
            decision.message.len(),
            limits.max_message_bytes
        ));
    }
    if decision.memo.len() > limits.max_memo_bytes {
        found.push(format!(
            "memo: {} bytes, more than the {} allowed",
            decision.memo.len(),
            limits.max_memo_bytes
        ));
    }
}

fn check_routes(field: &str, routes: &[RequestRoute], found: &mut Violations) {
    if routes.len() > MAX_ROUTES {
        found.push(format!(
            "{field}: {} routes, more than the {MAX_ROUTES} allowed",
            routes.len()
        ));
        return;
    }
    for (i, route) in routes.iter().enumerate() {
        if route.conditions.len() > MAX_CONDITIONS {
            found.push(format!(
                "{field}[{i}].conditions: {} conditions, more than the {MAX_CONDITIONS} allowed",
                route.conditions.len()
            ));
            continue;
        }
        if route.conditions.is_empty() {
            found.push(format!(
                "{field}[{i}].conditions: a route needs at least one condition"
            ));
        }
        for (j, c) in route.conditions.iter().enumerate() {
            let at = format!("{field}[{i}].conditions[{j}]");
            if c.name.is_empty() || c.name.len() > MAX_MATCH_TEXT {
                found.push(format!("{at}.name: must be 1-{MAX_MATCH_TEXT} bytes"));
            }
            if c.value.len() > MAX_MATCH_TEXT {
                found.push(format!("{at}.value: longer than {MAX_MATCH_TEXT} bytes"));
            }
            if c.kind == MatchKind::RegularExpression
                && let Err(e) = regex::RegexBuilder::new(&c.value)
                    .size_limit(1 << 16)
                    .build()
            {
                found.push(format!("{at}.value: not a valid regular expression: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::model::{
        MatchSource, ReplicaCounts, RequestCondition, Step, StepTarget, Traffic,
    };

    fn observation() -> Observation {
        Observation {
            steps: vec![Step::default(); 3],
            current_step: 1,
            workload: ReplicaCounts {
                desired: 5,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn decision() -> Decision {
        Decision {
            step: 1,
            target: StepTarget {
                replicas: Replicas::Count(1),
                traffic: Traffic::default(),
            },
            action: Action::Hold { recheck_seconds: 5 },
            message: "ok".into(),
            memo: String::new(),
        }
    }

    type Mutation = Box<dyn Fn(&mut Decision)>;

    fn violations(d: &Decision) -> Vec<String> {
        let mut found = Violations::default();
        check(d, &observation(), &Limits::default(), &mut found);
        found.into_result().err().unwrap_or_default()
    }

    #[test]
    fn a_sound_decision_passes() {
        assert!(violations(&decision()).is_empty());
    }

    #[test]
    fn each_broken_rule_is_named() {
        let header = |value: &str, kind| RequestCondition {
            source: MatchSource::Header,
            name: "x-canary".into(),
            value: value.into(),
            kind,
        };
        let cases: Vec<(&str, Mutation)> = vec![
            ("step: 0", Box::new(|d| d.step = 0)),
            ("step: 4", Box::new(|d| d.step = 4)),
            (
                "target.replicas: 6",
                Box::new(|d| d.target.replicas = Replicas::Count(6)),
            ),
            (
                "message: 1025 bytes",
                Box::new(|d| d.message = "x".repeat(1025)),
            ),
            ("memo: 4097 bytes", Box::new(|d| d.memo = "x".repeat(4097))),
            (
                "advance must name a later step",
                Box::new(|d| d.action = Action::Advance),
            ),
            (
                "recheck after 999999999s",
                Box::new(|d| {
                    d.action = Action::Hold {
                        recheck_seconds: 999_999_999,
                    }
                }),
            ),
            (
                "not a valid regular expression",
                Box::new(move |d| {
                    d.target.traffic.matches = vec![RequestRoute {
                        conditions: vec![header("(", MatchKind::RegularExpression)],
                    }]
                }),
            ),
            (
                "at least one condition",
                Box::new(|d| d.target.traffic.matches = vec![RequestRoute::default()]),
            ),
            (
                "17 routes",
                Box::new(move |d| {
                    d.target.traffic.matches = vec![
                        RequestRoute {
                            conditions: vec![header("a", MatchKind::Exact)]
                        };
                        17
                    ]
                }),
            ),
        ];
        for (want, mutate) in cases {
            let mut d = decision();
            mutate(&mut d);
            let found = violations(&d);
            assert!(
                found.iter().any(|v| v.contains(want)),
                "expected a violation containing {want:?}, got {found:?}"
            );
        }
    }

    #[test]
    fn percent_violation_names_the_field() {
        let mut found = Violations::default();
        let p = found.percent("target.traffic.weight", 150);
        assert_eq!(p, Percent::FULL);
        assert_eq!(
            found.into_result().unwrap_err(),
            vec!["target.traffic.weight: 150 is outside 0-100".to_owned()]
        );
    }
}
