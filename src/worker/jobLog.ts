import type { Job } from 'bullmq';

/** What one attempt of a build may write to its job's log in Redis (JOB_LOG_MAX_KB); the artefact has everything. */
export interface JobLogLimits {
  maxBytes: number;
}

const MAX_LINE_BYTES = 16 * 1024;

// A writer of one attempt's job log lines that stops at its budget, saying so once, so the log of a build that floods
// its output costs Redis at most `maxBytes` (the whole log is the artefact's reports/build.log and stage logs).
export function jobLog(job: Pick<Job, 'log'>, limits: JobLogLimits): (line: string) => void {
  let used = 0;
  let stopped = false;
  return (line) => {
    if (stopped) return;
    const cut =
      Buffer.byteLength(line) > MAX_LINE_BYTES ? `${line.slice(0, MAX_LINE_BYTES / 4)} …(cut)` : line;
    used += Buffer.byteLength(cut);
    if (used > limits.maxBytes) {
      stopped = true;
      const note = `job log stopped at ${Math.round(limits.maxBytes / 1024)} KiB: the artefact's reports/ has the whole log`;
      void job.log(note).catch(() => undefined);
      return;
    }
    void job.log(cut).catch(() => undefined);
  };
}
