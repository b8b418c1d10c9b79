import { keepBytecode, planBytecode, seedBytecode } from '../stages/bytecodeCache.js';
import type { StageContext } from '../stages/types.js';
import type { BuildState } from './stageDefinition.js';

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

// Puts the branch's kept bytecode beside the fresh checkout's sources, before any process of the build runs; and
// takes, from that checkout, what this build may keep afterwards. Sandboxed builds only: they all see the checkout
// at the same path, which the file names inside pytest's bytecode carry.
export async function seedBuildBytecode(state: BuildState, ctx: StageContext): Promise<void> {
  const { layout } = state;
  const written =
    state.results.checkout?.outcome === 'passed' ? state.results.checkout.value.written : undefined;
  if (!state.bytecodeCache || layout.inside.src === layout.src || !written) return;
  const place = {
    src: layout.src,
    cacheDir: state.cacheDir,
    repository: state.repository,
    branch: state.input.branchName,
  };
  // A cache that cannot be read costs this build its compiling, never its verdict.
  try {
    state.bytecode = await planBytecode(place, written);
    const seeded = await seedBytecode(layout.src, state.bytecode);
    if (seeded > 0) ctx.log(`${seeded} bytecode file(s) from the branch's earlier builds`);
  } catch (error) {
    ctx.log(`could not use the kept bytecode: ${message(error)}`);
  }
}

// Keeps the bytecode the build's run compiled from its checkout's sources, once the tests ran.
export async function keepBuildBytecode(state: BuildState, ctx: StageContext): Promise<void> {
  if (!state.bytecode || !state.results.test) return;
  const kept = await keepBytecode(state.layout.src, state.bytecode).catch((error: unknown) => {
    ctx.log(`could not keep the bytecode: ${message(error)}`);
    return 0;
  });
  if (kept > 0) ctx.log(`kept ${kept} new bytecode file(s) for the branch's later builds`);
}
