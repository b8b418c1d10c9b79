import { ConfigError } from './errors.js';

/** Which branches a setting applies to, from a comma-separated glob list such as "*,!main,!release/*". */
export type BranchFilter = (branch: string) => boolean;

// One glob as a regular expression: `*` is any run of characters (`/` included), `?` one character, the rest literal.
function globToRegExp(glob: string): RegExp {
  const body = glob
    .split('')
    .map((char) => (char === '*' ? '.*' : char === '?' ? '.' : char.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`);
}

// Compiles a glob list: a branch is in when it matches some pattern without `!` (or the list has none) and no pattern
// with `!`. Throws ConfigError, naming `variable`, on an empty pattern.
export function compileBranchFilter(list: string, variable: string): BranchFilter {
  const patterns = list.split(',').map((pattern) => pattern.trim());
  const include: RegExp[] = [];
  const exclude: RegExp[] = [];
  for (const pattern of patterns) {
    const negated = pattern.startsWith('!');
    const glob = negated ? pattern.slice(1).trim() : pattern;
    if (!glob) throw new ConfigError(`${variable} has an empty pattern in "${list}"`);
    (negated ? exclude : include).push(globToRegExp(glob));
  }
  return (branch) =>
    (include.length === 0 || include.some((re) => re.test(branch))) && !exclude.some((re) => re.test(branch));
}
