// `trellis load` end to end: the real CLI in a child process. Bad flags and unknown
// targets exit 2 with a message that says what is wrong; a run exits 0 and prints a
// report, or one JSON object with --json.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jsonApi, Servers, trellis } from './helpers.js';

const servers = new Servers();
let url: string;
let control: string;
before(async () => {
  url = (await servers.http((_req, res) => res.end('ok'))).url;
  control = (
    await servers.http(
      jsonApi({
        '/v1/services': { services: [{ name: 'backend', protocol: 'http', public: null, upstreams: [], versions: [], instances: [] }] },
        '/v1/proxies': { proxies: [] },
      }),
    )
  ).url;
});
after(() => servers.close());

async function usageError(args: string[], message: RegExp): Promise<void> {
  const r = await trellis('load', ...args);
  assert.equal(r.code, 2, `exit code of trellis load ${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.equal(r.stdout, '');
}

describe('trellis load', () => {
  it('exits 2 for a rate that is not above 0', async () => {
    await usageError([url, '--rate', '0'], /--rate must be a number above 0 \(requests per second\); got "0"/);
    await usageError([url, '--rate', 'fast'], /--rate must be a number above 0/);
  });

  it('exits 2 for a negative, zero or unit-less duration', async () => {
    await usageError([url, '--duration=-1s'], /--duration must be a duration above 0 with a unit, such as 500ms, 10s or 1m; got "-1s"/);
    await usageError([url, '--duration', '-1s'], /--duration must be a duration above 0 with a unit, such as 500ms, 10s or 1m; got "-1s"/);
    await usageError([url, '--rate', '-5'], /--rate must be a number above 0 \(requests per second\); got "-5"/);
    await usageError([url, '--duration', '0s'], /--duration must be a duration above 0/);
    await usageError([url, '--duration', '10'], /with a unit/);
  });

  it('exits 2 for a URL that is not on loopback, or not http', async () => {
    await usageError(['http://10.0.0.1:8080/'], /refusing to send load to 10\.0\.0\.1: only loopback addresses \(127\.0\.0\.0\/8, ::1, localhost\)/);
    await usageError(['http://example.com/'], /only loopback/);
    await usageError(['https://127.0.0.1/'], /only http:\/\/ URLs/);
  });

  it('exits 2 for an unknown service, naming the services there are', async () => {
    await usageError(['nosuch', '--control', control], /no service named "nosuch" in the mesh at .*; its services are: backend/);
    await usageError(['backend', '--from', 'nosuch', '--control', control], /no service named "nosuch" \(--from\)/);
  });

  it('exits 2 for a service that is not public when --from is missing, saying to use --from', async () => {
    await usageError(['backend', '--control', control], /backend is not public.*add --from SERVICE/);
  });

  it('exits 2 for a target that is neither, a missing target, and other bad flags', async () => {
    await usageError(['Not A Target!'], /neither an http:\/\/ URL nor a service name/);
    await usageError([], /name a TARGET/);
    await usageError([url, '--header', 'no colon'], /--header expects 'Name: value'/);
    await usageError([url, '--body', 'a', '--body-size', '3'], /--body or --body-size, not both/);
    await usageError([url, '--connections', '1.5'], /--connections must be a whole number above 0/);
    await usageError([url, '--bogus'], /Unknown option '--bogus'/);
    await usageError([url, '--from', 'frontend'], /--from needs a service name as TARGET/);
  });

  it('exits 1 when the control plane cannot be reached', async () => {
    const r = await trellis('load', 'backend', '--from', 'frontend', '--control', 'http://127.0.0.1:1');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach the control plane at http:\/\/127\.0\.0\.1:1/);
  });

  it('prints one JSON object with --json', async () => {
    const r = await trellis('load', url, '--rate', '100', '--duration', '500ms', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & { latencyUs: Record<string, number>; errors: Record<string, unknown> };
    for (const field of [
      'url',
      'protocol',
      'method',
      'rate',
      'achievedRps',
      'scheduled',
      'sent',
      'completed',
      'statuses',
      'errors',
      'latencyUs',
      'sendLagUs',
    ]) {
      assert.ok(field in j, `field ${field}`);
    }
    for (const p of ['p50', 'p90', 'p99', 'p999', 'max']) assert.equal(typeof j.latencyUs[p], 'number', p);
    for (const k of ['total', 'connect', 'reset', 'timeout', 'protocol', 'status']) assert.ok(k in j.errors, `errors.${k}`);
    assert.equal(j.rate, 100);
    assert.equal(j.scheduled, 50);
    assert.equal(j.completed, 50);
    assert.equal(j.protocol, 'http/1.1');
    assert.equal(r.stderr, '', 'no progress line when stderr is not a terminal');
  });

  it('prints a report with percentiles, asked vs achieved rate and errors, and exits 0 even when requests fail', async () => {
    let n = 0;
    const flaky = (
      await servers.http((_req, res) => {
        res.statusCode = ++n % 2 === 0 ? 500 : 200;
        res.end('x');
      })
    ).url;
    const r = await trellis('load', flaky, '--rate', '100', '--duration', '500ms');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /rate +100 req\/s asked, [\d.]+ req\/s achieved/);
    assert.match(r.stdout, /latency +p50 [\d.]+ ms +p90 [\d.]+ ms +p99 [\d.]+ ms +p99\.9 [\d.]+ ms +max [\d.]+ ms/);
    assert.match(r.stdout, /errors +25 \(status 500: 25\)/);
  });
});
