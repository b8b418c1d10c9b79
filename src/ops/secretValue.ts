import { readFileSync } from 'node:fs';
import { type Env, optional } from './configValues.js';
import { ConfigError } from './errors.js';

// The content of the file a variable names, or a ConfigError naming the variable and why it cannot be read.
export function configFile(variable: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`${variable} names ${path}, which cannot be read (${code})`);
  }
}

// A secret from `NAME`, or from the file `NAME_FILE` names (the Docker-secrets convention; one trailing newline is
// dropped). Both set is an error; neither is undefined. The value itself is never part of an error message.
export function secretValue(env: Env, name: string): string | undefined {
  const direct = optional(env, name);
  const file = optional(env, `${name}_FILE`);
  if (direct !== undefined && file !== undefined)
    throw new ConfigError(`${name} and ${name}_FILE are both set; set one`);
  if (file === undefined) return direct;
  const value = configFile(`${name}_FILE`, file).replace(/\r?\n$/, '');
  if (!value) throw new ConfigError(`${name}_FILE names ${file}, which is empty`);
  return value;
}
