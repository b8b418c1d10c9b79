import type { Queue } from 'bullmq';
import { Gauge, type Registry } from 'prom-client';
import { QUEUE_STATES } from '../delivery/queue.js';

// Queue depth by state, read from Redis at scrape time.
export function queueDepthGauge(registry: Registry, queue: Queue): void {
  new Gauge({
    name: 'ci_queue_jobs',
    help: 'Build jobs in the queue by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const counts = await queue.getJobCounts(...QUEUE_STATES);
      for (const state of QUEUE_STATES) this.set({ state }, counts[state] ?? 0);
    },
  });
}
