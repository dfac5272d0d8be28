// An example strategy in JavaScript: the canary's share rises in equal steps.
//
// Step k of n sends ceil(100 * k / n) percent of the traffic, and the same share
// of the pods, to the canary. Each step lasts `interval` seconds once its pods
// and traffic are in place; the last step (100%) completes the release. When
// more than `maxFailedPods` canary pods fail, the release is rolled back. No
// approvals: it runs on its own. Only the number of steps is read from the
// Rollout; their weights are this module's.
//
// Configuration (annotation `strategy.sluice.dev/config`), all optional:
//   {"interval": 60, "maxFailedPods": 0}
//
// Capabilities: `log` (it logs each step it starts and why it rolls back).
//
// Build: npm ci && npm run build   (writes linear.wasm)

import { log } from 'sluice:strategy/log@0.1.0';

const DEFAULTS = { interval: 60, maxFailedPods: 0 };

const SCHEMA = JSON.stringify({
  type: 'object',
  additionalProperties: false,
  properties: {
    interval: { type: 'integer', minimum: 0 },
    maxFailedPods: { type: 'integer', minimum: 0 },
  },
});

// A thrown string becomes the `err` of the export's result: the host reports
// it on the Rollout as the module's own words.
function parseConfig(text) {
  if (text.trim() === '') return { ...DEFAULTS };
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw `invalid configuration: ${e.message}`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw 'invalid configuration: expected a JSON object such as {"interval": 60}';
  }
  const config = { ...DEFAULTS };
  for (const [key, v] of Object.entries(value)) {
    if (!(key in DEFAULTS)) {
      throw `${key}: unknown field; the fields are ${Object.keys(DEFAULTS).join(', ')}`;
    }
    if (!Number.isInteger(v) || v < 0) {
      throw `${key}: ${JSON.stringify(v)} is not a whole number of at least 0`;
    }
    config[key] = v;
  }
  return config;
}

function weightOf(step, total) {
  return step >= total ? 100 : Math.ceil((100 * step) / total);
}

function target(weight) {
  return {
    replicas: { tag: 'percent', val: weight },
    traffic: { weight, matches: [] },
  };
}

function decision(step, weight, action, message) {
  return { step, target: target(weight), action, message, memo: '' };
}

const hold = (seconds) => ({ tag: 'hold', val: seconds });

export const strategy = {
  decide(input) {
    const config = parseConfig(input.config);
    const total = Math.max(input.steps.length, 1);
    const step = Math.min(Math.max(input.currentStep, 1), total);
    const weight = weightOf(step, total);

    if (input.canary.failed > config.maxFailedPods) {
      const reason = `${input.canary.failed} canary pods failed (at most ${config.maxFailedPods} tolerated)`;
      log('warn', `${input.rollout}: rolling back: ${reason}`);
      return decision(step, weight, { tag: 'abort', val: reason }, 'canary pods are failing: rolling back');
    }
    if (input.paused) {
      return decision(step, weight, hold(30), 'paused');
    }
    const converging = `step ${step}/${total}: shifting ${weight}% to the canary`;
    if (step !== input.currentStep) {
      log('info', `${input.rollout}: ${converging}`);
      return decision(step, weight, hold(5), converging);
    }
    switch (input.stepState) {
      case 'before-step-upgrade':
      case 'step-upgrade':
      case 'step-traffic-routing':
        return decision(step, weight, hold(5), converging);
      case 'completed':
        return decision(step, weight, { tag: 'complete' }, 'done');
      default: {
        if (step === total) {
          return decision(step, 100, { tag: 'complete' }, 'all traffic on the new version');
        }
        // u64 fields arrive as BigInt.
        const waited = Math.floor(Number(BigInt(input.now) - BigInt(input.lastUpdateTime)) / 1000);
        if (waited >= config.interval) {
          const next = step + 1;
          const nextWeight = weightOf(next, total);
          const message = `step ${next}/${total}: shifting ${nextWeight}% to the canary`;
          log('info', `${input.rollout}: ${message}`);
          return decision(next, nextWeight, { tag: 'advance' }, message);
        }
        const left = config.interval - waited;
        return decision(
          step,
          weight,
          { tag: 'pause', val: left },
          `step ${step}/${total}: ${weight}% on the canary, next step in ${left}s`,
        );
      }
    }
  },

  validateConfig(config) {
    parseConfig(config);
  },

  describe() {
    return {
      name: 'linear',
      version: '0.1.0',
      description: 'Traffic rises in equal steps, one step per interval; failed canary pods abort the release.',
      configSchema: SCHEMA,
    };
  },
};
