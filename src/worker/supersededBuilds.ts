import type { Supersession } from '../delivery/supersession.js';

/** A build this process runs now. */
export interface RunningBuild {
  commitSha: string;
  controller: AbortController;
}

/** The abort reason of a build canceled because a newer commit of its branch was announced. */
export class Superseded extends Error {
  constructor(readonly by: string) {
    super(`superseded by ${by}`);
  }
}

// Aborts the running builds that the bridge marked as superseded.
export async function cancelSupersededBuilds(
  running: Map<string, RunningBuild>,
  supersession: Supersession,
): Promise<void> {
  const builds = [...running.values()];
  if (builds.length === 0) return;
  const marks = await supersession.supersededBy(builds.map((build) => build.commitSha));
  for (const [k, by] of marks.entries()) {
    const { controller } = builds[k] as RunningBuild;
    if (by && !controller.signal.aborted) controller.abort(new Superseded(by));
  }
}
