// Runs an ES module script in a fresh Node process (`node --input-type=module -e`), for
// tests about what a process loads: the test runner's own process has loaded far more
// long before. Resolves with the JSON value of the last line the script prints.
import { execFile } from 'node:child_process';

/** `script` run with `args` as its process.argv[1..] in `cwd`; rejects with its stderr when it fails. */
export function runModuleScript<T>(script: string, args: readonly string[], cwd: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script, ...args], { cwd, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as T);
    });
  });
}
