import { access } from 'node:fs/promises';

// True when something exists at path (file, directory or link).
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
