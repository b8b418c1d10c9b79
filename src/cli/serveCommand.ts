import { resolve } from 'node:path';
import { UnavailableError, UsageError } from './exitCodes.js';
import { parseCommand } from './parseCommand.js';
import { NotARepositoryError, serveLocalRepository } from './serveLocalRepository.js';
import { SERVE_USAGE } from './usage.js';

// `ci-runner serve`: git's own http-backend behind the project's server, for a newcomer's first real build.
export async function serveCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, SERVE_USAGE, { port: { type: 'string' }, host: { type: 'string' } });
  if (!args) return 0;
  const path = args.positionals[0];
  if (!path || args.positionals.length > 1)
    throw new UsageError('give one repository path (--help for usage)');
  const port = args.values.port === undefined ? 0 : Number(args.values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port must be 0-65535, got "${args.values.port}"`);
  // `npm run serve` runs in the package's directory; the path is relative to where the user typed it.
  const cwd = process.env.npm_lifecycle_event === 'serve' ? process.env.INIT_CWD : undefined;
  const dir = resolve(cwd ?? process.cwd(), path);
  const served = await serveLocalRepository(dir, {
    host: args.values.host as string | undefined,
    port,
  }).catch((error: Error) => error);
  if (served instanceof NotARepositoryError) throw new UsageError(served.message);
  if (served instanceof Error) throw new UnavailableError(`cannot listen: ${served.message}`);
  const { server, url, top, head, branch } = served;
  process.stdout.write(`serving ${top} at ${url}\n`);
  if (head) {
    process.stdout.write(`try: npm run enqueue -- --repo ${url} --sha ${head} --branch ${branch}\n`);
  }
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => resolveStop());
    process.once('SIGTERM', () => resolveStop());
  });
  await server.close();
  return 0;
}
