import type { Queue } from 'bullmq';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ReportStore } from '../delivery/reportStore.js';
import { queueDepthGauge } from '../ops/queueDepthGauge.js';
import type { BuildEvents } from './buildEvents.js';

// The worker's Prometheus registry: the phase document's build metrics plus stages, caches, retries and the outbox.
export function createWorkerMetrics(events: BuildEvents, store: ReportStore, queue: Queue): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const latency = new Histogram({
    name: 'ci_build_latency_sec',
    help: 'Build duration in seconds, checkout to artefact',
    buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200],
    registers,
  });
  const ok = new Counter({ name: 'ci_build_ok_total', help: 'Builds that PASSED', registers });
  const fail = new Counter({ name: 'ci_build_fail_total', help: 'Builds that FAILED', registers });
  const errored = new Counter({ name: 'ci_build_errored_total', help: 'Builds that ERRORED', registers });
  const stages = new Histogram({
    name: 'ci_stage_duration_sec',
    help: 'Stage duration in seconds by stage and outcome',
    labelNames: ['stage', 'outcome'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers,
  });
  const hits = new Counter({
    name: 'ci_cache_hits_total',
    help: 'Cache hits',
    labelNames: ['cache'],
    registers,
  });
  const misses = new Counter({
    name: 'ci_cache_misses_total',
    help: 'Cache misses',
    labelNames: ['cache'],
    registers,
  });
  const retries = new Counter({
    name: 'ci_build_retries_total',
    help: 'Builds retried after an infrastructure fault',
    registers,
  });
  const flaky = new Counter({
    name: 'ci_flaky_tests_total',
    help: 'Tests that failed and then passed on a re-run of the same build',
    registers,
  });
  const superseded = new Counter({
    name: 'ci_builds_superseded_total',
    help: 'Builds not finished because a newer commit of their branch was announced: running (canceled), before_start',
    labelNames: ['when'],
    registers,
  });
  for (const when of ['running', 'before_start']) superseded.inc({ when }, 0);
  const egressRefused = new Counter({
    name: 'ci_egress_refused_total',
    help: 'Connections builds asked their egress proxy for and were refused (destination not allowed, or local)',
    registers,
  });
  const published = new Counter({
    name: 'ci_reports_published_total',
    help: 'Reports acknowledged by Kafka',
    registers,
  });
  new Gauge({
    name: 'ci_reports_unpublished',
    help: 'Reports recorded but not yet acknowledged by Kafka (outbox size)',
    registers,
    async collect() {
      this.set(await store.backlog());
    },
  });
  queueDepthGauge(registry, queue);

  events.on('buildFinished', ({ status, durationMs }) => {
    latency.observe(durationMs / 1000);
    (status === 'PASSED' ? ok : status === 'FAILED' ? fail : errored).inc();
  });
  events.on('stageFinished', ({ stage, outcome, durationMs }) =>
    stages.observe({ stage, outcome }, durationMs / 1000),
  );
  events.on('cache', ({ cache, hit }) => (hit ? hits : misses).inc({ cache }));
  events.on('retry', () => retries.inc());
  events.on('reportPublished', () => published.inc());
  events.on('flakyTests', ({ count }) => flaky.inc(count));
  events.on('egressRefused', ({ count }) => egressRefused.inc(count));
  events.on('superseded', ({ when }) => superseded.inc({ when }));
  return registry;
}
