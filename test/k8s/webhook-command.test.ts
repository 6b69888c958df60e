// `trellis webhook` end to end: the real CLI in a child process with a certificate on
// disk, answering one AdmissionReview over HTTPS, then stopping cleanly on SIGTERM; and
// started before its key pair exists (the leader writes it later), serving it once it does.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { eventually } from '../helpers/eventually.js';
import { makeLeaf, makeRoot } from '../helpers/test-pki.js';
import { admissionReview, deploymentPod } from './fixtures.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'trellis-webhook-'));
let child: ChildProcess | undefined;

after(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('trellis webhook serves /inject over TLS and stops on SIGTERM', async () => {
  const root = await makeRoot('webhook CLI CA');
  const leaf = await makeLeaf({ root, trust: [root] });
  writeFileSync(join(dir, 'tls.crt'), leaf.material.cert);
  writeFileSync(join(dir, 'tls.key'), leaf.material.key, { mode: 0o600 });
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'bin/trellis.js'), 'webhook', '--listen', '127.0.0.1:0', '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child = proc;
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => {
    out += c.toString('utf8');
  });
  const url = await eventually(() => /webhook: (https:\/\/127\.0\.0\.1:\d+\/inject)/.exec(out)?.[1] ?? false, { timeoutMs: 20_000 });
  const answer = await new Promise<{ response: { allowed: boolean; patch?: string } }>((resolve, reject) => {
    const req = request(url, { method: 'POST', ca: root.pem, checkServerIdentity: () => undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
    });
    req.on('error', reject);
    req.end(JSON.stringify(admissionReview(deploymentPod())));
  });
  assert.equal(answer.response.allowed, true);
  assert.ok(answer.response.patch, 'the pod is injected');
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('trellis webhook without a certificate is a usage error', async () => {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/trellis.js'), 'webhook', '--listen', '127.0.0.1:0'], { stdio: 'ignore' });
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  assert.equal(code, 2);
});

test('trellis webhook starts before its key pair exists and serves it once the files appear', async () => {
  const sub = join(dir, 'later');
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'bin/trellis.js'), 'webhook', '--listen', '127.0.0.1:0', '--tls-cert', join(sub, 'tls.crt'), '--tls-key', join(sub, 'tls.key')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child = proc;
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => {
    out += c.toString('utf8');
  });
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => {
    err += c.toString('utf8');
  });
  const url = await eventually(() => /webhook: (https:\/\/127\.0\.0\.1:\d+\/inject)/.exec(out)?.[1] ?? false, { timeoutMs: 20_000 });
  assert.match(err, /waiting for/);
  const root = await makeRoot('webhook CLI CA (later)');
  const leaf = await makeLeaf({ root, trust: [root] });
  const post = (): Promise<number | undefined> =>
    new Promise((resolve, reject) => {
      const req = request(url, { method: 'POST', ca: root.pem, checkServerIdentity: () => undefined }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end(JSON.stringify(admissionReview(deploymentPod())));
    });
  await assert.rejects(post(), 'no TLS before the key pair');
  mkdirSync(sub);
  writeFileSync(join(sub, 'tls.key'), leaf.material.key, { mode: 0o600 });
  writeFileSync(join(sub, 'tls.crt'), leaf.material.cert);
  assert.equal(await eventually(post, { timeoutMs: 20_000, what: 'the webhook to serve the key pair written after its start' }), 200);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
});
