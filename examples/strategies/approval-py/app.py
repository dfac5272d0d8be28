"""An example strategy in Python: a person signs off every step.

The steps are the Rollout's own (weight, replicas, header and cookie matches),
but every step waits for an approval, whatever pause the Rollout wrote for it,
the last step included. An approval counts only once the step has soaked for
`minSoakSeconds` after its pods and traffic were in place: approving earlier
is remembered, and the rollout moves on when the soak ends. When more than
`maxFailedPods` canary pods fail, the release is rolled back.

Configuration (annotation `strategy.sluice.dev/config`), all optional:
    {"minSoakSeconds": 0, "maxFailedPods": 0}

Capabilities: none.

Build (see requirements.txt for the toolchain):
    componentize-py -d ../../../wit/v0.1.0 -w strategy-module componentize --stub-wasi app -o approval.wasm
"""

import json
from dataclasses import dataclass

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

SCHEMA = json.dumps(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "minSoakSeconds": {"type": "integer", "minimum": 0},
            "maxFailedPods": {"type": "integer", "minimum": 0},
        },
    }
)


@dataclass
class Config:
    min_soak_seconds: int = 0
    max_failed_pods: int = 0


FIELDS = {"minSoakSeconds": "min_soak_seconds", "maxFailedPods": "max_failed_pods"}


def parse_config(text: str) -> Config:
    """Parses a configuration; raising Err makes it the export's error."""
    if not text.strip():
        return Config()
    try:
        value = json.loads(text)
    except ValueError as e:
        raise Err(f"invalid configuration: {e}")
    if not isinstance(value, dict):
        raise Err('invalid configuration: expected a JSON object such as {"minSoakSeconds": 60}')
    config = Config()
    for key, v in value.items():
        if key not in FIELDS:
            raise Err(f"{key}: unknown field; the fields are {', '.join(FIELDS)}")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise Err(f"{key}: {json.dumps(v)} is not a whole number of at least 0")
        setattr(config, FIELDS[key], v)
    return config


def target(step: types.Step) -> types.StepTarget:
    """The step as the Rollout wrote it; pods default to the traffic share, as in Kruise."""
    replicas = step.replicas
    if replicas is None:
        replicas = types.Replicas_Percent(step.traffic_weight or 0)
    return types.StepTarget(
        replicas=replicas,
        traffic=types.Traffic(weight=step.traffic_weight, matches=step.matches),
    )


def describe_step(index: int, total: int, step: types.Step) -> str:
    share = f"{step.traffic_weight}% of traffic" if step.traffic_weight is not None else "no traffic shift"
    return f"step {index}/{total} ({share})"


class Strategy(exports.Strategy):
    def decide(self, input: types.Observation) -> types.Decision:
        config = parse_config(input.config)
        if not input.steps:
            raise Err("the Rollout has no steps: spec.strategy.canary.steps needs at least one")
        total = len(input.steps)
        index = min(max(input.current_step, 1), total)
        step = input.steps[index - 1]
        memo = input.memo

        def decision(action: types.Action, message: str) -> types.Decision:
            return types.Decision(step=index, target=target(step), action=action, message=message, memo=memo)

        if input.canary.failed > config.max_failed_pods:
            reason = f"{input.canary.failed} canary pods failed (at most {config.max_failed_pods} tolerated)"
            return decision(types.Action_Abort(reason), "canary pods are failing: rolling back")
        if input.paused:
            return decision(types.Action_Hold(30), "paused")
        name = describe_step(index, total, step)
        if index != input.current_step or input.step_state in (
            types.StepState.BEFORE_STEP_UPGRADE,
            types.StepState.STEP_UPGRADE,
            types.StepState.STEP_TRAFFIC_ROUTING,
        ):
            return decision(types.Action_Hold(5), f"{name}: moving pods and traffic")
        if input.step_state == types.StepState.COMPLETED:
            return decision(types.Action_Complete(), "done")

        # The step is in place. Remember since when: the host's lastUpdateTime moves
        # again when the step is approved, and the soak counts from readiness.
        ready_since = ready_since_for(memo, index, input.last_update_time)
        memo = json.dumps({"step": index, "readySince": ready_since})
        if not input.approved:
            return decision(
                types.Action_Pause(None),
                f"{name}: waiting for approval",
            )
        soaked_ms = input.now - ready_since
        needed_ms = config.min_soak_seconds * 1000
        if soaked_ms < needed_ms:
            left = (needed_ms - soaked_ms + 999) // 1000
            return decision(types.Action_Hold(left), f"{name}: approved; soaking {left}s more")
        if index == total:
            return decision(types.Action_Complete(), f"{name} approved: promoting the new version")
        index += 1
        step = input.steps[index - 1]
        return decision(types.Action_Advance(), f"{describe_step(index, total, step)}: approved, moving on")

    def validate_config(self, config: str) -> None:
        parse_config(config)

    def describe(self) -> types.ModuleInfo:
        return types.ModuleInfo(
            name="approval",
            version="0.1.0",
            description="Every step waits for a person, after a minimum soak; failed canary pods abort the release.",
            config_schema=SCHEMA,
        )


def ready_since_for(memo: str, index: int, last_update_time: int) -> int:
    try:
        kept = json.loads(memo) if memo else {}
    except ValueError:
        kept = {}
    if isinstance(kept, dict) and kept.get("step") == index and isinstance(kept.get("readySince"), int):
        return kept["readySince"]
    return last_update_time
