// Test helper for the traffic-shifting e2e tests: a mesh of a `client` (the test plays
// its app, sending through its sidecar) calling a `shop` service in versions v1 and v2
// (test/fixtures/apps/version-server.js, which v2 can be told to fail or be slow), the
// trellis CLI as a child process, and a count of which version answered.
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, request, TRELLIS } from './mesh-run.js';

const ECHO = join(REPO, 'test', 'fixtures', 'apps', 'echo-server.js');
const VERSIONED = join(REPO, 'test', 'fixtures', 'apps', 'version-server.js');

/** Writes the mesh file (and a route file when `routes` is given) into a new temp folder. */
export async function writeShopMesh(o: { v2Env?: Record<string, string>; routes?: string }): Promise<{ dir: string; meshFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-traffic-'));
  const env = Object.entries(o.v2Env ?? {})
    .map(([k, v]) => `${k}: "${v}"`)
    .join(', ');
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(
    meshFile,
    `# client calls shop; shop runs v1 and v2
apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: traffic
spec:
${o.routes ? '  include: [routes.yaml]\n' : ''}  services:
    - name: client
      command: node ${ECHO}
      upstreams: [shop]
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
    - name: shop
      command: node ${VERSIONED}
      public: {}
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
      versions:
        - name: v1
        - name: v2
          env: { ${env} }
`,
  );
  if (o.routes) await writeFile(join(dir, 'routes.yaml'), o.routes);
  return { dir, meshFile };
}

/** A split of shop between v1 and v2, with a comment the edits must keep. */
export function shopRoutes(v1: number, v2: number): string {
  return `# the split of shop
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop-split
spec:
  parentRefs: [{ name: shop }]
  rules:
    - backendRefs:
        - name: shop-v1   # stable
          weight: ${v1}
        - name: shop-v2
          weight: ${v2}
`;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `trellis ARGS...` to the end (bounded by `timeoutMs`). */
export function trellisCli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, ...args], { cwd: REPO, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Sends `n` requests to `path` through the client's sidecar listener, `concurrency` at a
 * time; counts the versions (and instances, when the app names them) that answered, and failures.
 */
export async function countVersions(
  port: number,
  n: number,
  concurrency = 8,
  path = '/',
): Promise<{ versions: Record<string, number>; instances: Record<string, number>; failures: string[] }> {
  const versions: Record<string, number> = {};
  const instances: Record<string, number> = {};
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        try {
          const r = await request(port, path);
          if (r.status !== 200) {
            failures.push(`${r.status} ${r.headers['trellis-error'] ?? ''} ${r.body}`);
            continue;
          }
          const b = JSON.parse(r.body) as { version: string; instance?: string };
          versions[b.version] = (versions[b.version] ?? 0) + 1;
          if (b.instance !== undefined) instances[b.instance] = (instances[b.instance] ?? 0) + 1;
        } catch (err) {
          failures.push(String(err));
        }
      }
    }),
  );
  return { versions, instances, failures };
}
