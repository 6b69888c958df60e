// Test helpers for the load generator: servers on port 0 that are closed in after(),
// and the `trellis` CLI run as a child process (asynchronously, so servers in this
// process keep answering while it runs).
import { execFile } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const TRELLIS = join(REPO, 'bin', 'trellis.js');

/** Servers to close when the file's tests are done. */
export class Servers {
  readonly #all: net.Server[] = [];

  async listen<S extends net.Server>(server: S): Promise<{ server: S; port: number; url: string }> {
    this.#all.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    return { server, port, url: `http://127.0.0.1:${port}/` };
  }

  http(handler: http.RequestListener): Promise<{ server: http.Server; port: number; url: string }> {
    return this.listen(http.createServer(handler));
  }

  /** Closes every server, ending connections a stalled server still holds. */
  async close(): Promise<void> {
    await Promise.all(this.#all.map((s) => new Promise<void>((r) => {
      s.close(() => r());
      if ('closeAllConnections' in s && typeof s.closeAllConnections === 'function') s.closeAllConnections();
    })));
  }
}

/** A JSON admin API answering GET path → body from `routes`, 404 otherwise. */
export function jsonApi(routes: Record<string, unknown>): http.RequestListener {
  return (req, res) => {
    const body = routes[req.url ?? ''];
    res.statusCode = body === undefined ? 404 : 200;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body ?? { code: 'TRELLIS_E_NOT_FOUND' }));
  };
}

/** Runs `trellis ARGS` and resolves with its exit code and output (bounded to 30 s). */
export function trellis(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, ...args], { cwd: REPO, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
