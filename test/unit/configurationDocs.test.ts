import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const DOCS = new URL('../../docs/configuration.md', import.meta.url);

/**
 * Variables the code reads that are not the operator's to set, each with why. Everything else the code reads from
 * the environment is configuration and must be in docs/configuration.md.
 */
const NOT_CONFIGURATION: ReadonlyArray<[RegExp, string]> = [
  [/^CI_RUNNER_/, "the runner's own variables, set by the runner for the processes of a build"],
  [/^INIT_CWD$/, 'set by npm for `npm run serve`: the directory it was run from'],
  [/^npm_lifecycle_event$/, 'set by npm: the script it is running'],
];

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** `env` or `process.env`, not a property of something else (`config.buildEnv`, `selection.env`). */
const ENV = String.raw`(?<![\w.$])(?:process\.)?env`;
/** A name in quotes, captured (the one group of the pattern). */
const QUOTED = String.raw`['"\`]([A-Za-z_][A-Za-z0-9_]*)['"\`]`;

interface Source {
  path: string;
  text: string;
}

// Every .ts file under src/, recursively.
function sources(dir: string): Source[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.isFile() && entry.name.endsWith('.ts') ? [{ path, text: readFileSync(path, 'utf8') }] : [];
  });
}

// The index of the `)` that closes the `(` at `open`.
function closing(text: string, open: number): number {
  let depth = 0;
  for (let at = open; at < text.length; at++) {
    if (text[at] === '(') depth++;
    else if (text[at] === ')' && --depth === 0) return at;
  }
  return text.length;
}

// The statement starting at `from`: a `{ … }` block with its nested blocks, or the code up to the next `;`.
function statement(text: string, from: number): string {
  const start = from + (/^\s*/.exec(text.slice(from))?.[0].length ?? 0);
  if (text[start] !== '{') return text.slice(start, text.indexOf(';', start) + 1 || text.length);
  let depth = 0;
  for (let at = start; at < text.length; at++) {
    if (text[at] === '{') depth++;
    else if (text[at] === '}' && --depth === 0) return text.slice(start, at + 1);
  }
  return text.slice(start);
}

// The body of the function or arrow whose parameter list opens at `open` (a return type may hold `{ … }` on its line).
function functionBody(text: string, open: number): string {
  const close = closing(text, open) + 1;
  const arrow = /^\s*(?::[^=;{]*)?=>/.exec(text.slice(close));
  if (arrow) return statement(text, close + arrow[0].length);
  const start = text.slice(close).search(/\{\s*\n/);
  return start < 0 ? '' : statement(text, close + start);
}

// Whether code reads the variable an identifier names: `reader(env, name` or `env[name]` (not `env[name] = …`).
function readsNamed(code: string, identifier: string): boolean {
  const reader = String.raw`\w\(\s*${ENV}\s*,\s*${identifier}\b`;
  const index = String.raw`${ENV}\??\.?\[\s*${identifier}\s*\](?!\s*=[^=])`;
  return new RegExp(`${reader}|${index}`).test(code);
}

// The strings of an array literal, or of the file's list a name refers to.
function elements(text: string, list: string): string[] {
  if (!list.startsWith('[')) return listElements(text, list);
  return [...list.matchAll(/(['"])([^'"]*)\1/g)].map((element) => element[2] as string);
}

// The string elements of `const <list> = [...]` in a file, following `...other` spreads of the file's lists.
function listElements(text: string, list: string, seen = new Set<string>()): string[] {
  if (seen.has(list)) return [];
  seen.add(list);
  const declaration = new RegExp(String.raw`\bconst\s+${list}\b[^=]*=\s*\[([^\]]*)\]`).exec(text);
  if (!declaration) return [];
  const items = declaration[1] as string;
  const strings = [...items.matchAll(/(['"])([^'"]*)\1/g)].map((match) => match[2] as string);
  const spread = [...items.matchAll(/\.\.\.(\w+)/g)].flatMap((match) =>
    listElements(text, match[1] as string, seen),
  );
  return [...strings, ...spread];
}

/**
 * Reader helpers whose definition also reads a name built from the one passed: `secretValue(env, 'X')` reads `X` and
 * `X_FILE`. Maps the helper to the prefixes and suffixes it adds.
 */
function derivedNames(files: Source[]): Map<string, Array<[string, string]>> {
  const helpers = new Map<string, Array<[string, string]>>();
  for (const { text } of files) {
    for (const match of text.matchAll(
      /\bfunction\s+(\w+)\s*(?:<[^>]*>)?\(\s*env\b[^,)]*,\s*(\w+)\s*:\s*string/g,
    )) {
      const [, helper = '', parameter = ''] = match;
      const code = functionBody(text, (match.index ?? 0) + match[0].indexOf('('));
      const built = new RegExp(
        String.raw`\w\(\s*env\s*,\s*\`([A-Z0-9_]*)\$\{${parameter}\}([A-Z0-9_]*)\``,
        'g',
      );
      const affixes = [...code.matchAll(built)].map((found): [string, string] => [
        found[1] ?? '',
        found[2] ?? '',
      ]);
      if (affixes.length > 0) helpers.set(helper, affixes);
    }
  }
  return helpers;
}

// Every environment variable name the code under src/ reads, with the files that read it.
function variablesRead(files: Source[]): Map<string, Set<string>> {
  const found = new Map<string, Set<string>>();
  const add = (name: string, path: string) => {
    if (!NAME.test(name)) return;
    const where = found.get(name) ?? new Set<string>();
    where.add(path.slice(SRC.length));
    found.set(name, where);
  };
  const derived = derivedNames(files);
  for (const { path, text } of files) {
    // reader(env, 'NAME', …): text, optional, integer, boolean, choice, secretValue, topic, any helper of the kind.
    for (const match of text.matchAll(new RegExp(String.raw`\b(\w+)\(\s*${ENV}\s*,\s*${QUOTED}`, 'g'))) {
      const [, helper = '', name = ''] = match;
      add(name, path);
      for (const [prefix, suffix] of derived.get(helper) ?? []) add(`${prefix}${name}${suffix}`, path);
    }
    // env.NAME, env?.NAME, process.env.NAME (not an assignment to it), env['NAME'], process.env['NAME'].
    for (const match of text.matchAll(new RegExp(String.raw`${ENV}\??\.([A-Za-z_]\w*)\b(?!\s*=[^=])`, 'g')))
      add(match[1] as string, path);
    for (const match of text.matchAll(new RegExp(String.raw`${ENV}\??\.?\[\s*${QUOTED}\s*\]`, 'g')))
      add(match[1] as string, path);
    // Local wrappers that pass their first parameter on as the name: `seconds('CHECKOUT_TIMEOUT_SEC', 120)`.
    const wrappers = /(?:\bconst\s+(\w+)\s*=\s*\(|\bfunction\s+(\w+)\s*\()\s*(\w+)\s*:\s*string/g;
    for (const match of text.matchAll(wrappers)) {
      const [, arrow, declared, parameter = ''] = match;
      const wrapper = arrow ?? declared ?? '';
      if (!readsNamed(functionBody(text, (match.index ?? 0) + match[0].indexOf('(')), parameter)) continue;
      for (const call of text.matchAll(new RegExp(String.raw`\b${wrapper}\(\s*${QUOTED}`, 'g')))
        add(call[1] as string, path);
    }
    // Names read from a list: `for (const name of LIST) { … optional(env, name) … }`.
    for (const match of text.matchAll(/\bfor\s*\(\s*const\s+(\w+)\s+of\s+(\[[^\]]*\]|\w+)\s*\)/g)) {
      const [, item = '', list = ''] = match;
      if (!readsNamed(statement(text, (match.index ?? 0) + match[0].length), item)) continue;
      for (const name of elements(text, list)) add(name, path);
    }
    // …and `['A', 'B'].some((name) => optional(env, name))`, or the same over a named list.
    const callbacks =
      /(\[[^\]]*\]|\b\w+)\.(?:some|every|map|flatMap|forEach|filter|find)\(\s*\(?\s*(\w+)\s*\)?\s*=>/g;
    for (const match of text.matchAll(callbacks)) {
      const [, list = '', item = ''] = match;
      if (!readsNamed(statement(text, (match.index ?? 0) + match[0].length), item)) continue;
      for (const name of elements(text, list)) add(name, path);
    }
  }
  for (const name of found.keys())
    if (NOT_CONFIGURATION.some(([rule]) => rule.test(name))) found.delete(name);
  return found;
}

const read = variablesRead(sources(SRC));

test('the extractor finds the variables the code reads, by every way it reads them', () => {
  assert.ok(
    read.size >= 30,
    `only ${read.size} variables found: the extractor no longer sees how src/ reads them`,
  );
  for (const name of [
    'KAFKA_BROKERS', // text(env, 'KAFKA_BROKERS')
    'SELECT_DEFAULT', // choice(env, …)
    'REDIS_PASSWORD_FILE', // secretValue(env, 'REDIS_PASSWORD') reads it too
    'CHECKOUT_TIMEOUT_SEC', // seconds('CHECKOUT_TIMEOUT_SEC', 120)
    'S3_ENDPOINT', // urlOf('S3_ENDPOINT', …)
    'PIP_FIND_LINKS', // for (const name of INDEX_VARIABLES) optional(env, name)
    'SSL_CERT_FILE', // env[name] over the pass-through list
    'XDG_CACHE_HOME', // env.XDG_CACHE_HOME
  ])
    assert.ok(read.has(name), `${name} is read by src/ but the extractor did not find it`);
});

test('every environment variable the code reads is documented in docs/configuration.md', () => {
  const docs = readFileSync(DOCS, 'utf8');
  const missing = [...read]
    .filter(([name]) => !docs.includes(`\`${name}\``))
    .map(([name, where]) => `${name} (${[...where].join(', ')})`);
  assert.deepEqual(
    missing,
    [],
    `read by src/ but not in docs/configuration.md as \`NAME\`: ${missing.join('; ')}`,
  );
});
