// DNS interception for real, as an injected Kubernetes pod has it: a network namespace
// with the init step's nftables rules (podInitRuleset with dns: port 53 redirected to the
// sidecar's responder, nothing leaving but the sidecar's uid), a resolv.conf naming a
// "cluster DNS" address as the kubelet writes one, the sidecars as uid 1337
// (test/helpers/dns-pod-harness.ts), and an unmodified app as root: it calls
// `http://backend:PORT/` with fetch and no HTTP_PROXY, its libc resolves `backend` (search
// domains and all) to the sidecar's 127.255.x.y, and the request goes through both
// sidecars, mutual TLS on, to the backend. Names outside the mesh are forwarded by the
// sidecar to the resolver. Linux, root, ip, nft and setpriv; skipped otherwise. The
// namespace, its /etc/netns directory and the harness are removed even when a test fails.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { podInitRuleset, SIDECAR_UID } from '../../src/k8s/inject.js';
import { inNetns, NETNS_ETC, run } from '../../src/runner/isolation/network.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { HARNESS_ARG } from '../helpers/dns-pod-harness.js';
import { REPO } from '../helpers/mesh-run.js';
import { nodeIn } from '../helpers/pods.js';

const missing = isolationMissing();
// Not `trellis-…`: the isolation runner's stale-run cleanup owns those names.
const NS = `trldns-${process.pid}`;
const RESOLV_CONF = 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n';

describe('DNS interception in a pod', { skip: missing.length > 0 ? `needs ${missing.join('; ')}` : false, timeout: 120_000 }, () => {
  let harness: ChildProcess | undefined;
  let ready: { appPort: number; admin: { host: string; port: number } };
  /** Sums the caller sidecar's trellis_dns_queries_total samples of `result`, read from inside the pod (its admin port is there). */
  const dnsQueries = async (result: string): Promise<number> =>
    Number(
      await nodeIn(
        NS,
        `const text = await (await fetch('http://127.0.0.1:${ready.admin.port}/metrics')).text();
         let sum = 0;
         for (const l of text.split('\\n')) if (l.startsWith('trellis_dns_queries_total{result="${result}"')) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
         console.log(sum);`,
      ),
    );

  before(async () => {
    await run('ip', ['netns', 'add', NS]);
    mkdirSync(join(NETNS_ETC, NS), { recursive: true });
    writeFileSync(join(NETNS_ETC, NS, 'resolv.conf'), RESOLV_CONF);
    // An interface with a route out, as a pod's eth0 (nothing is behind it): the stand-in
    // resolver listens on its address, and 10.96.0.10 is routable, so the redirect applies.
    for (const cmd of [
      'link set lo up',
      // Both ends inside the namespace: nothing is made on the host, and deleting the namespace removes it.
      'link add eth0 type veth peer name eth1',
      'addr add 10.250.0.2/24 dev eth0',
      'link set eth1 up',
      'link set eth0 up',
      'route add default dev eth0',
    ])
      await run('ip', ['-n', NS, ...cmd.split(' ')]);
    await run('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], podInitRuleset([], { dns: true }));
    // What the injector sets in the pod's securityContext: the sidecar may listen on port 80.
    await run('ip', ['netns', 'exec', NS, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start']);
    const [cmd = '', ...args] = inNetns(NS, [process.execPath, join(REPO, 'dist/test/helpers/dns-pod-harness.js'), HARNESS_ARG], SIDECAR_UID);
    harness = spawn(cmd, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: harness.stdout! });
    ready = await new Promise((resolve, reject) => {
      harness?.once('exit', (code) => reject(new Error(`the harness exited (${code}) before it was ready`)));
      lines.once('line', (line) => resolve(JSON.parse(line)));
    });
  });

  after(async () => {
    harness?.stdin?.end();
    if (harness && harness.exitCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          harness?.kill('SIGKILL');
          resolve();
        }, 5000);
        harness?.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await run('ip', ['netns', 'del', NS]).catch(() => undefined);
    rmSync(join(NETNS_ETC, NS), { recursive: true, force: true });
  });

  test('an app resolves `backend` to its sidecar and its plain HTTP request reaches the backend over mutual TLS', async () => {
    const out = await nodeIn(
      NS,
      `import dns from 'node:dns/promises';
       const { address } = await dns.lookup('backend', { family: 4 });
       const res = await fetch('http://backend:${ready.appPort}/hello');
       const on80 = await fetch('http://backend.default.svc.cluster.local/port-80');
       console.log(JSON.stringify({ address, status: res.status, body: await res.text(), on80: await on80.text(), proxy: process.env.HTTP_PROXY ?? null }));`,
    );
    const r = JSON.parse(out) as { address: string; status: number; body: string; on80: string; proxy: string | null };
    assert.match(r.address, /^127\.255\.\d+\.\d+$/);
    assert.equal(r.proxy, null, 'no HTTP_PROXY');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'backend saw /hello from web', "the backend's sidecar (STRICT) named the caller from its certificate");
    assert.equal(r.on80, 'backend saw /port-80 from web', 'port 80 of the full name too');
    assert.ok((await dnsQueries('mesh')) >= 1);
  });

  test('other names go to the cluster resolver through the sidecar', async () => {
    const out = await nodeIn(
      NS,
      `import dns from 'node:dns/promises';
       const { address } = await dns.lookup('www.example.test', { family: 4 });
       const missing = await dns.lookup('nowhere.invalid', { family: 4 }).then(() => 'found', (e) => e.code);
       console.log(JSON.stringify({ address, missing }));`,
    );
    const r = JSON.parse(out) as { address: string; missing: string };
    assert.equal(r.address, '192.0.2.1', 'forwarded to the resolver and back');
    assert.equal(r.missing, 'ENOTFOUND');
    assert.ok((await dnsQueries('forwarded')) >= 1);
  });
});
