import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

// Downloads a requirement's sdist from PyPI (it carries the project's tests) into dir and extracts it there, owned by
// whoever runs this; returns the extracted tree.
export async function downloadSdist(requirement: string, dir: string): Promise<string> {
  const pip = [
    '-m',
    'pip',
    'download',
    '--quiet',
    '--no-deps',
    '--no-binary',
    ':all:',
    requirement,
    '-d',
    dir,
  ];
  execFileSync('python3', pip);
  const sdist = (await readdir(dir)).find((name) => name.endsWith('.tar.gz'));
  if (!sdist) throw new Error(`pip downloaded no sdist of ${requirement}`);
  execFileSync('tar', ['xzf', sdist, '--no-same-owner', '-C', dir], { cwd: dir });
  return join(dir, sdist.replace(/\.tar\.gz$/, ''));
}
