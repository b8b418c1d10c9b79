import type { Worker } from 'bullmq';

/**
 * A worker process's build slots (WORKER_CONCURRENCY), shared by the BullMQ workers of the shared queue and of its
 * host's own queue: while every slot is taken both stop fetching, so a job never sits taken by a busy process while
 * another could start it. Reports each change of the free count (the host's heartbeat carries it).
 */
export class BuildSlots {
  private busy = 0;
  private paused = false;
  private stopped = false;
  private readonly workers: Worker[] = [];

  constructor(
    readonly capacity: number,
    private readonly changed: (free: number) => void = () => undefined,
  ) {}

  get free(): number {
    return Math.max(0, this.capacity - this.busy);
  }

  // The workers to pause while all slots are taken (only with more than one: one worker's concurrency does it).
  attach(worker: Worker): void {
    this.workers.push(worker);
  }

  // Takes a slot; false when none is free (a fetch that raced the pause): the caller hands its job back.
  take(): boolean {
    if (this.busy >= this.capacity) return false;
    this.busy += 1;
    this.update();
    return true;
  }

  give(): void {
    this.busy = Math.max(0, this.busy - 1);
    this.update();
  }

  // The workers are closing: never resume them again.
  stop(): void {
    this.stopped = true;
  }

  private update(): void {
    const full = this.busy >= this.capacity;
    if (this.workers.length > 1 && full !== this.paused && !this.stopped) {
      this.paused = full;
      for (const worker of this.workers)
        void (full ? worker.pause(true) : worker.resume()).catch(() => undefined);
    }
    this.changed(this.free);
  }
}
