import { type BytecodePlace, keepBytecode, seedBytecode } from '../stages/bytecodeCache.js';
import type { StageContext } from '../stages/types.js';
import type { BuildState } from './stageDefinition.js';

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

// Where a build's kept bytecode lives (its repository's, in the runner's cache).
function bytecodePlace(state: BuildState): BytecodePlace {
  return { src: state.layout.src, cacheDir: state.cacheDir, repository: state.repository };
}

// Puts the repository's kept bytecode beside the fresh checkout's sources, before any process of the build runs.
export async function seedBuildBytecode(state: BuildState, ctx: StageContext): Promise<void> {
  if (!state.bytecodeCache) return;
  // A cache that cannot be read costs this build its compiling, never its verdict.
  const seeded = await seedBytecode(bytecodePlace(state)).catch((error: unknown) => {
    ctx.log(`could not use the kept bytecode: ${message(error)}`);
    return 0;
  });
  if (seeded > 0) ctx.log(`${seeded} bytecode file(s) from the repository's earlier builds`);
}

// Keeps the bytecode the build's run compiled from its sources, once the tests ran.
export async function keepBuildBytecode(state: BuildState, ctx: StageContext): Promise<void> {
  if (!state.bytecodeCache || !state.results.test) return;
  const kept = await keepBytecode(bytecodePlace(state)).catch((error: unknown) => {
    ctx.log(`could not keep the bytecode: ${message(error)}`);
    return 0;
  });
  if (kept > 0) ctx.log(`kept ${kept} new bytecode file(s) for later builds`);
}
