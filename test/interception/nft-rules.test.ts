// The interception rules generator (src/interception/nft-rules.ts), the subnet plan and
// the isolation preflight: pure functions, plus `nft -c` (a dry run) on the generated
// ruleset where nft and root are at hand.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { podRuleset, type PodInterception } from '../../src/interception/nft-rules.js';
import { collidingRoutes, parseSubnet, SubnetPlan } from '../../src/runner/isolation/subnet.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { hostsFile } from '../../src/runner/isolation/pods.js';

const POD: PodInterception = {
  table: 'trellis',
  sidecarUid: 1337,
  outbound: [{ service: 'postgres', vip: '10.213.128.12', port: 5432, listener: 15100 }],
  inbound: [{ appPort: 8080, listener: 15006 }],
  openPorts: [15000],
  probeSources: ['10.213.0.2'],
  inboundClosedTo: ['10.213.0.1'],
};

test('a pod ruleset redirects each upstream, each app port, and excludes the sidecar uid', () => {
  const r = podRuleset(POD);
  assert.match(r, /ip daddr 10\.213\.128\.12 tcp dport 5432 redirect to :15100/);
  assert.match(r, /tcp dport 8080 redirect to :15006/);
  assert.match(r, /chain output \{\n.*\n {4}meta skuid 1337 accept\n/, 'the sidecar is excluded before any redirect');
  assert.match(r, /ip saddr 10\.213\.0\.2 tcp dport 8080 accept/, 'health probes reach the app');
  assert.match(r, /ip saddr 10\.213\.0\.1 tcp dport 15006 reject/, 'the host is kept from a non-public pod');
  assert.ok(r.indexOf('delete table ip trellis') < r.indexOf('table ip trellis {'), 'replacing is idempotent');
});

test("with a DNS responder, the app's queries to port 53 go to it, the sidecar's own do not", () => {
  const r = podRuleset({ ...POD, dnsRedirect: 15053 });
  assert.match(r, /chain output \{\n.*\n {4}meta skuid 1337 accept\n {4}udp dport 53 redirect to :15053\n {4}tcp dport 53 redirect to :15053\n/);
  assert.doesNotMatch(podRuleset(POD), /dport 53/, 'absent: DNS is not intercepted');
  assert.throws(() => podRuleset({ ...POD, dnsRedirect: 0 }), RangeError);
  assert.throws(() => podRuleset({ ...POD, dnsRedirect: 8080 }), RangeError, 'an app port that is the DNS port');
});

test('nothing unchecked becomes rule text', () => {
  assert.throws(() => podRuleset({ ...POD, table: 'x; flush ruleset' }), RangeError);
  assert.throws(() => podRuleset({ ...POD, outbound: [{ service: 's', vip: '10.0.0.1 accept', port: 1, listener: 2 }] }), RangeError);
  assert.throws(() => podRuleset({ ...POD, inbound: [{ appPort: 70000, listener: 15006 }] }), RangeError);
  assert.throws(() => podRuleset({ ...POD, sidecarUid: 0 }), RangeError, 'root is never the excluded uid');
  assert.throws(() => podRuleset({ ...POD, inbound: [{ appPort: 15000, listener: 15006 }] }), RangeError, 'an app port that is a sidecar port');
});

test('nft accepts the generated ruleset (dry run)', { skip: isolationMissing().length > 0 ? 'needs root and nft' : false }, () => {
  execFileSync('nft', ['-c', '-f', '-'], { input: podRuleset(POD) });
  execFileSync('nft', ['-c', '-f', '-'], { input: podRuleset({ ...POD, dnsRedirect: 15053 }) });
});

test('the subnet plan keeps pods and virtual addresses apart, and finds colliding routes', () => {
  const plan = new SubnetPlan(parseSubnet('10.213.7.9/16'));
  assert.equal(plan.subnet.cidr, '10.213.0.0/16');
  assert.equal(plan.gateway, '10.213.0.1');
  assert.equal(plan.control, '10.213.0.2');
  assert.equal(plan.pod(), '10.213.0.10');
  assert.equal(plan.vip(), '10.213.128.10');
  assert.throws(() => parseSubnet('10.213.0.0/30'), /--isolate-subnet/);
  assert.throws(() => parseSubnet('300.1.0.0/16'), /--isolate-subnet/);
  const routes = [
    { dst: 'default', dev: 'eth0' },
    { dst: '10.213.4.0/24', dev: 'wg0' },
    { dst: '192.0.2.0/24', dev: 'eth0' },
    { dst: '10.213.0.0/16', dev: 'trlabcdefbr' },
  ];
  assert.deepEqual(
    collidingRoutes(plan.subnet, routes, (dev) => dev === 'trlabcdefbr'),
    ['10.213.4.0/24 dev wg0'],
  );
});

test('the preflight names everything that is missing', () => {
  assert.match(isolationMissing('darwin', 0).join(), /Linux/);
  const missing = isolationMissing('linux', 1000, () => undefined);
  assert.equal(missing.length, 4);
  assert.match(missing.join('\n'), /root[\s\S]*ip on PATH[\s\S]*nft on PATH[\s\S]*setpriv on PATH/);
  assert.deepEqual(
    isolationMissing('linux', 0, (exe) => `/usr/sbin/${exe}`),
    [],
  );
});

test("a pod's hosts file names every service in its own namespace and by full name", () => {
  const hosts = hostsFile(
    new Map([
      ['backend', '10.213.128.10'],
      ['echo.ns-a', '10.213.128.11'],
    ]),
    'default',
  );
  assert.match(hosts, /^10\.213\.128\.10\tbackend backend\.default backend\.default\.svc backend\.default\.svc\.cluster\.local$/m);
  assert.match(hosts, /^10\.213\.128\.11\techo\.ns-a echo\.ns-a\.svc/m, 'another namespace: no bare name');
});

test("a pod's hosts file names every ExternalService's hosts by its virtual address, and nothing that is not a DNS name", () => {
  const hosts = hostsFile(
    new Map([['backend', '10.213.128.10']]),
    'default',
    new Map([
      ['10.213.128.11', ['api.example.test', 'api2.example.test']],
      ['10.213.128.12', ['bad host\n10.0.0.1 backend', 'ledger.example.test']],
      ['10.213.128.13', []],
    ]),
  );
  assert.match(hosts, /^10\.213\.128\.11\tapi\.example\.test api2\.example\.test$/m);
  assert.match(hosts, /^10\.213\.128\.12\tledger\.example\.test$/m, 'a name with blanks or a line break is left out');
  assert.doesNotMatch(hosts, /10\.213\.128\.13/, 'no line for an ExternalService without hosts');
  assert.doesNotMatch(hosts, /^10\.0\.0\.1/m);
});

test('an HTTP ExternalService redirect to the HTTP proxy listener is a valid rule (dry run)', {
  skip: isolationMissing().length > 0 ? 'needs root and nft' : false,
}, () => {
  execFileSync('nft', ['-c', '-f', '-'], {
    input: podRuleset({ ...POD, outbound: [...POD.outbound, { service: 'api', vip: '10.213.128.40', port: 80, listener: 15001 }] }),
  });
});
