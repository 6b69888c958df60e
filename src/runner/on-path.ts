// Whether a program can be run by name: the runner's check for the optional programs a
// mesh uses (a service's `requires`, Prometheus).
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The path of the executable `exe` on PATH, or undefined. */
export function findOnPath(exe: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, exe);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* next */
    }
  }
  return undefined;
}
