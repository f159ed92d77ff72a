/**
 * k6 version of the load test: the same scenarios.json, open model (constant-arrival-rate), one k6
 * scenario per route at rate × weight. loadtest/run.ts starts it when `k6` is on the PATH:
 *
 *   k6 run --summary-export=summary.json -e BASE_URL=http://127.0.0.1:3000 -e LEVEL=1 \
 *     [-e SCENARIO=api] [-e RATE=100] [-e DURATION=30] [-e P95_MS=..] [-e P99_MS=..] [-e MAX_ERROR_RATE=..] \
 *     loadtest/k6.js
 *
 * Exit code 99 when a threshold is crossed (k6's own rule); run.ts judges the figures again itself.
 */

import { sleep } from 'k6';
import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';

const file = JSON.parse(open('./scenarios.json'));
const base = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const level = Number(__ENV.LEVEL || 1);
const rate = Number(__ENV.RATE || file.defaults.rate);
const duration = Number(__ENV.DURATION || file.defaults.duration);
const limits = {
  maxErrorRate: Number(__ENV.MAX_ERROR_RATE || file.defaults.thresholds.maxErrorRate),
  p95Ms: Number(__ENV.P95_MS || file.defaults.thresholds.p95Ms),
  p99Ms: Number(__ENV.P99_MS || file.defaults.thresholds.p99Ms),
};

function resolveScenario(name) {
  const key = name || Object.keys(file.scenarios).find((k) => file.scenarios[k].levels.includes(level));
  const spec = file.scenarios[key];
  if (!spec) throw new Error(`no scenario ${name || `for level ${level}`} in scenarios.json`);
  return (spec.extends ? resolveScenario(spec.extends) : []).concat(spec.routes);
}
const routes = resolveScenario(__ENV.SCENARIO);

const taskDuration = new Trend('task_duration', true);
const taskFailed = new Rate('task_failed');
const taskFlows = new Counter('task_flows');

const scenarios = {};
const thresholds = {
  http_req_failed: [`rate<=${limits.maxErrorRate}`],
  http_req_duration: [`p(95)<=${limits.p95Ms}`, `p(99)<=${limits.p99Ms}`],
};
for (const route of routes) {
  // Per minute so that small weights (0.05 of 20/s = 1/s) keep their share; k6 spreads arrivals evenly.
  const perMinute = Math.max(1, Math.round(rate * route.weight * 60));
  scenarios[route.name] = {
    executor: 'constant-arrival-rate',
    rate: perMinute,
    timeUnit: '1m',
    duration: `${duration}s`,
    preAllocatedVUs: Math.max(2, Math.ceil(perMinute / 60)),
    maxVUs: Math.max(20, Math.ceil(perMinute / 6)),
    exec: route.flow === 'task' ? 'taskFlow' : 'request',
    env: { ROUTE: route.name },
    tags: { route: route.name },
  };
  // A threshold per route makes k6 keep (and --summary-export write) the route's sub-metrics.
  if (route.flow !== 'task') {
    thresholds[`http_req_duration{route:${route.name}}`] = ['max>=0'];
    thresholds[`http_reqs{route:${route.name}}`] = ['count>=0'];
    thresholds[`http_req_failed{route:${route.name}}`] = ['rate>=0'];
  } else {
    const own = { ...limits, ...(route.thresholds || {}) };
    thresholds.task_duration = [`p(95)<=${own.p95Ms}`, `p(99)<=${own.p99Ms}`];
    thresholds.task_failed = [`rate<=${own.maxErrorRate}`];
    thresholds.task_flows = ['count>=0'];
  }
}

export const options = {
  scenarios,
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(95)', 'p(99)'],
  discardResponseBodies: false,
};

// run.ts signs in (through the generated client) and passes the access token: writes need it.
const json = { headers: { 'content-type': 'application/json', authorization: __ENV.AUTHORIZATION || '' } };

export function setup() {
  const response = http.post(`${base}/api/items`, JSON.stringify({ name: 'load test seed' }), json);
  return { itemId: response.json('id') };
}

function byName(name) {
  return routes.find((route) => route.name === name);
}

export function request(data) {
  const route = byName(__ENV.ROUTE);
  const url = `${base}${route.path.replace('{itemId}', String(data.itemId))}`;
  if (route.method === 'POST') http.post(url, JSON.stringify(route.body || {}), json);
  else http.get(url);
}

export function taskFlow() {
  const route = byName(__ENV.ROUTE);
  const started = Date.now();
  const timeoutMs = route.timeoutMs || 30000;
  let ok = false;
  const enqueued = http.post(`${base}${route.path}`, JSON.stringify(route.body || {}), json);
  if (enqueued.status === 202) {
    const id = enqueued.json('id');
    while (Date.now() - started < timeoutMs) {
      sleep((route.pollIntervalMs || 100) / 1000);
      const state = http
        .get(`${base}${(route.pollPath || '/api/tasks/{id}').replace('{id}', id)}`)
        .json('state');
      if (state === 'completed') ok = true;
      if (state === 'completed' || state === 'failed' || state === 'cancelled') break;
    }
  }
  taskFlows.add(1);
  taskFailed.add(!ok);
  if (ok) taskDuration.add(Date.now() - started);
}
