import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from './exitCodes.js';

type Options = NonNullable<ParseArgsConfig['options']>;

// Parses a command's arguments; prints its usage and returns undefined for --help, throws with the usage otherwise.
export function parseCommand(argv: string[], usage: string, options: Options) {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } },
      allowPositionals: true,
    });
  } catch (error) {
    // "Unknown option '--shaa'. To specify a positional argument starting with a '-', ..." -> its first sentence.
    const first = (error as Error).message.split('. ')[0];
    throw new UsageError(`${first} (--help lists the options)`);
  }
  if (parsed.values.help) {
    process.stdout.write(`${usage}\n`);
    return undefined;
  }
  return parsed;
}
