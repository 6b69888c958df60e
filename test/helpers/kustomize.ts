// Test helper: `kubectl kustomize DIR` when kubectl is installed (Debian's kubectl
// package; scripts/install-test-deps.sh installs it), so tests can compare Trellis's
// own rendering with kustomize's. `kubectlMissing` says why a test skips.
import { execFile, execFileSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';

function findKubectl(): string | undefined {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 30_000 });
    return undefined;
  } catch {
    return 'kubectl is not installed (apt-get install kubectl, or run scripts/install-test-deps.sh): the kustomize build is not compared';
  }
}

/** Why kustomize tests must skip, or undefined when kubectl runs. */
export const kubectlMissing = findKubectl();

/** The objects `kubectl kustomize dir` builds. */
export function kubectlKustomize(dir: string): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    execFile('kubectl', ['kustomize', dir], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`kubectl kustomize ${dir}: ${stderr || error.message}`));
      else
        resolve(
          parseAllDocuments(stdout)
            .map((d) => d.toJS() as Record<string, unknown>)
            .filter((o) => o !== null),
        );
    });
  });
}
