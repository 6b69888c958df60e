// The listening sockets the runner holds for a sidecar (src/runner/held-listeners.ts) and
// the variable that names them (src/api/listen-fds.ts): a supervised process that listens
// on the descriptor it inherits is killed and restarted while a client keeps connecting at
// a bounded rate, and no connection is refused; once the runner closes its copy and the
// process is gone, nothing listens there any more. Loopback only: the pods' namespaces
// are test/e2e/isolated-protocols.test.ts's.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatListenFds, LISTEN_FDS_ENV, listenKey, parseListenFds } from '../../src/api/listen-fds.js';
import { TrellisError } from '../../src/errors.js';
import { HeldListeners } from '../../src/runner/held-listeners.js';
import { PortAllocator } from '../../src/runner/ports.js';
import { Supervised } from '../../src/runner/supervisor.js';
import { eventually } from '../helpers/eventually.js';

/** Connects, reads until the server ends, and says what came back: the server's pid, or the error's code. */
function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let body = '';
    s.setTimeout(30_000, () => s.destroy(new Error('timeout')));
    s.on('data', (c: Buffer) => (body += c.toString()));
    s.on('end', () => resolve(body));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

// Listens on the descriptor $TRELLIS_LISTEN_FDS names (as `trellis proxy` does) and answers its pid.
const SERVER = `const [, fd] = process.env.${LISTEN_FDS_ENV}.split('='); require('node:net').createServer((s) => s.end(String(process.pid))).listen({ fd: Number(fd) });`;

describe('held listeners', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-held-listeners-'));
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
    await rm(dir, { recursive: true, force: true });
  });

  test('a restarted process takes the same socket, and no connection made meanwhile is refused', async () => {
    const port = await new PortAllocator().free();
    const held = await HeldListeners.bind([{ host: '127.0.0.1', port }], 'a test');
    cleanup.push(() => held.close());
    assert.deepEqual(held.env, { [LISTEN_FDS_ENV]: `127.0.0.1:${port}=3` });
    const server = new Supervised({
      name: 'server',
      command: [process.execPath, '-e', SERVER],
      cwd: dir,
      env: { ...process.env, ...held.env },
      logFile: join(dir, 'server.log'),
      fds: held.fds,
    });
    server.start();
    cleanup.push(() => server.stop());
    const first = String(server.pid);
    await eventually(async () => assert.equal(await ask(port), first));

    // A connection every 20 ms (bounded: at most 500) until the restarted process has answered one.
    const answers: Promise<string>[] = [];
    let restarted = false;
    const load = (async () => {
      while (!restarted && answers.length < 500) {
        answers.push(
          ask(port).then((a) => {
            if (a !== first && /^\d+$/.test(a)) restarted = true;
            return a;
          }),
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await eventually(() => answers.length > 5);
    const killedAt = answers.length;
    process.kill(server.pid!, 'SIGKILL');
    await load;
    const all = await Promise.all(answers);
    assert.equal(server.restarts, 1);
    const second = String(server.pid);
    const line = all.join(' ');
    assert.ok(!all.includes('ECONNREFUSED'), `a connection was refused: ${line}`);
    // Only one the killed process had accepted may fail (closed or reset, unanswered), and
    // only before the new process answers.
    const firstNew = all.indexOf(second);
    all.forEach((a, i) => {
      if (a === first || a === second) return;
      assert.ok((a === '' || a === 'ECONNRESET') && i < firstNew, `connection ${i} failed (${a || 'closed unanswered'}): ${line}`);
    });
    assert.notEqual(second, first);
    // Connections made after the kill, while no process ran, were answered by the new one.
    assert.ok(all.slice(killedAt).filter((a) => a === second).length > 1, `answers after the kill: ${all.slice(killedAt).join(' ')}`);
    assert.equal(await ask(port), second);

    // Once the process is gone and the runner closes its copy, nothing listens there.
    await server.stop();
    held.close();
    assert.equal(await ask(port), 'ECONNREFUSED');
  });

  test('another child of the runner (an app) does not inherit the held sockets', { skip: process.platform !== 'linux' ? 'reads /proc' : false }, async () => {
    const held = await HeldListeners.bind([{ host: '127.0.0.1', port: await new PortAllocator().free() }], 'a test');
    cleanup.push(() => held.close());
    const [fd] = held.fds;
    assert.ok(fd !== undefined);
    const listed = execFileSync('ls', ['/proc/self/fd']).toString().split(/\s+/);
    assert.ok(!listed.includes(String(fd)), `descriptor ${fd} leaked into a child: ${listed.join(' ')}`);
  });

  test('a binder that cannot listen is a clear error, and nothing is left open', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => taken.close(r)));
    const port = (taken.address() as net.AddressInfo).port;
    await assert.rejects(HeldListeners.bind([{ host: '127.0.0.1', port }], 'a test'), (err: unknown) => {
      assert.ok(err instanceof TrellisError);
      assert.equal(err.code, 'TRELLIS_E_LISTEN_FAILED');
      assert.ok(err.message.includes(`a test at 127.0.0.1:${port}`), err.message);
      assert.match(err.message, /EADDRINUSE/);
      return true;
    });
  });
});

describe('$TRELLIS_LISTEN_FDS', () => {
  test('reads what the runner writes', () => {
    const text = formatListenFds([
      [listenKey('127.0.0.1', 15100), 3],
      [listenKey('::1', 15001), 4],
    ]);
    assert.equal(text, '127.0.0.1:15100=3,::1:15001=4');
    assert.deepEqual(
      parseListenFds(text),
      new Map([
        ['127.0.0.1:15100', 3],
        ['::1:15001', 4],
      ]),
    );
    assert.equal(parseListenFds(undefined).size, 0);
    assert.equal(parseListenFds('').size, 0);
  });

  test('anything malformed is a usage error naming the variable, never a guess', () => {
    const long = 'x'.repeat(10_000);
    for (const bad of [
      '127.0.0.1:15100',
      '127.0.0.1:15100=2',
      '127.0.0.1:0=3',
      '127.0.0.1:70000=3',
      ':15100=3',
      '127.0.0.1:15100=3,',
      `${long}:1=3`,
      'a:1=3,'.repeat(2000),
    ]) {
      assert.throws(
        () => parseListenFds(bad),
        (err: unknown) => err instanceof TrellisError && err.code === 'TRELLIS_E_USAGE' && err.message.includes(LISTEN_FDS_ENV) && err.message.length < 600,
        bad.slice(0, 40),
      );
    }
  });
});
