import { ensureLintTool, type InstalledLintTool, PinRefused } from './ensureLintTool.js';
import type { LintInput } from './lint.js';
import { CLASSIC_RUFF_RULES, describeFormatter, type LintTool, type ToolVersion } from './lintPlan.js';
import type { StageContext } from './types.js';

/** Waiting for a tool ended before it was ready: the stage was canceled, or ran out of time. */
export class WaitEnded extends Error {
  constructor(
    readonly canceled: boolean,
    what: string,
  ) {
    super(what);
  }
}

// `promise`, unless the signal aborts or `ms` pass first.
function within<T>(promise: Promise<T>, signal: AbortSignal, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new WaitEnded(false, what)), ms);
    const abort = () => reject(new WaitEnded(true, what));
    signal.addEventListener('abort', abort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
    });
  });
}

// One tool at its version, waited for within lint's time limit and its cancel signal (an install other builds wait
// for too goes on without this one); a pin that cannot be used names itself and where it was found.
async function install(
  input: LintInput,
  ctx: StageContext,
  tool: LintTool,
  version: ToolVersion,
): Promise<InstalledLintTool> {
  try {
    const what = `${tool} ${version.version}`;
    return await within(
      ensureLintTool(input.toolchain, tool, version.version),
      ctx.signal,
      input.timeoutMs,
      what,
    );
  } catch (error) {
    if (!(error instanceof PinRefused)) throw error;
    throw new PinRefused(`${tool}==${version.version} (${version.source}) cannot be used: ${error.message}`);
  }
}

// The versions the plan names, installed (a repository's pin once per version, from wheels, outside the sandbox).
export async function lintTools(input: LintInput, ctx: StageContext) {
  const { plan } = input;
  for (const note of plan.notes) ctx.log(`lint: ${note}`);
  ctx.log(`lint: ruff check ${plan.ruff.version} (version: ${plan.ruff.source})`);
  if (!plan.ruffConfigured) {
    ctx.log(
      `lint: the repository does not configure ruff: ruff checks its classic rules (${CLASSIC_RUFF_RULES})`,
    );
  }
  ctx.log(`lint: ${describeFormatter(plan)}`);
  const ruffTool = await install(input, ctx, 'ruff', plan.ruff);
  const blackTool = plan.black ? await install(input, ctx, 'black', plan.black) : undefined;
  return { ruffTool, blackTool };
}
