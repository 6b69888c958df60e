// Validation of what HTTPRoute gained (regex paths, query params, filters) and of
// GRPCRoute and TCPRoute: each bad input is refused with its field path and line,
// and `trellis validate` prints it as file:line:col and exits 1.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { mesh, problemAt, ROOT, route, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: frontend
      upstreams: [backend, postgres]
    - name: backend
      versions: [{ name: v1 }, { name: v2 }]
    - name: postgres
      protocol: tcp
      versions: [{ name: v1 }, { name: v2 }]
`),
  );
});
after(() => tmp.cleanup());

let n = 0;
async function load(spec: string, kind = 'HTTPRoute', apiVersion = 'gateway.networking.k8s.io/v1') {
  const text = route(`r${++n}`, spec).replace('kind: HTTPRoute', `kind: ${kind}`).replace('gateway.networking.k8s.io/v1', apiVersion);
  const file = await tmp.write(`route-${n}.yaml`, text);
  return { file, result: await loadConfig([meshFile, file]) };
}

const rule = (body: string) => `  parentRefs: [{ name: backend }]\n  rules:\n    - ${body}\n`;

describe('HTTPRoute matches and filters', () => {
  it('accepts every match type and filter the Gateway API defines', async () => {
    const { result } = await load(
      rule(`matches:
        - path: { type: RegularExpression, value: "/items/[0-9]+" }
          queryParams: [{ name: page, value: "1" }, { type: RegularExpression, name: sort, value: "asc|desc" }]
        - path: { type: PathPrefix, value: /api }
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: x-a, value: "1" }], add: [{ name: x-b, value: "2" }], remove: [x-c] }
        - type: ResponseHeaderModifier
          responseHeaderModifier: { add: [{ name: x-served-by, value: trellis }] }
        - type: RequestMirror
          requestMirror: { backendRef: { name: backend-v2 }, percent: 10 }
      backendRefs:
        - name: backend-v1
          filters: [{ type: URLRewrite, urlRewrite: { hostname: v1.internal, path: { type: ReplaceFullPath, replaceFullPath: /x } } }]`).replace(
        '    - matches:\n        - path: { type: RegularExpression',
        '    - matches:\n        - path: { type: RegularExpression',
      ),
    );
    assert.deepEqual(result.problems, []);
  });

  it('refuses an invalid regular expression in a path or query param match', async () => {
    const { file, result } = await load(
      rule(
        'matches: [{ path: { type: RegularExpression, value: "/a(" }, queryParams: [{ type: RegularExpression, name: q, value: "[" }] }]\n      backendRefs: [{ name: backend }]',
      ),
    );
    assert.match(problemAt(result, 'spec.rules[0].matches[0].path.value', file).message, /^is not a valid regular expression/);
    const q = problemAt(result, 'spec.rules[0].matches[0].queryParams[0].value', file);
    assert.match(q.message, /^is not a valid regular expression/);
    assert.equal(q.line, 8);
  });

  it('refuses all-zero weights, and warns of a backendRef to an unknown service', async () => {
    const { file, result } = await load(rule('backendRefs: [{ name: backend-v3, weight: 0 }, { name: backend-v1, weight: 0 }]'));
    assert.deepEqual(
      result.warnings.map((w) => [w.path, w.message.slice(0, 51)]),
      [['spec.rules[0].backendRefs[0].name', 'names "backend-v3", which is neither a mesh service']],
    );
    assert.match(problemAt(result, 'spec.rules[0].backendRefs', file).message, /^every backendRef has weight 0/);
    assert.equal(result.problems.length, 1);
  });

  it('refuses two RequestRedirect filters, and a redirect with a rewrite', async () => {
    const { file, result } = await load(
      rule(`filters:
        - { type: RequestRedirect, requestRedirect: { scheme: https } }
        - { type: RequestRedirect, requestRedirect: { statusCode: 301 } }
        - { type: URLRewrite, urlRewrite: { hostname: a.b } }`),
    );
    const twice = problemAt(result, 'spec.rules[0].filters[1].type', file);
    assert.match(twice.message, /^a second RequestRedirect filter/);
    assert.equal(twice.line, 10);
    assert.match(problemAt(result, 'spec.rules[0].filters', file).message, /has both RequestRedirect and URLRewrite/);
  });

  it('refuses ReplacePrefixMatch on a rule whose match is not a PathPrefix', async () => {
    const { file, result } = await load(
      rule(`matches: [{ path: { type: Exact, value: /a } }]
      filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /b } } }]
      backendRefs: [{ name: backend }]`),
    );
    assert.match(problemAt(result, 'spec.rules[0].filters[0].urlRewrite.path.type', file).message, /^ReplacePrefixMatch replaces the matched path prefix/);
  });

  it('refuses a request filter that sets or removes trellis-source: only the proxy names the caller', async () => {
    const { file, result } = await load(
      rule(`filters:
        - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: Trellis-Source, value: admin }], remove: [trellis-source] } }
        - { type: ResponseHeaderModifier, responseHeaderModifier: { remove: [trellis-source] } }
      backendRefs: [{ name: backend }]`),
    );
    assert.match(
      problemAt(result, 'spec.rules[0].filters[0].requestHeaderModifier.set[0].name', file).message,
      /^"Trellis-Source" names the calling service; only the proxy sets it/,
    );
    assert.match(problemAt(result, 'spec.rules[0].filters[0].requestHeaderModifier.remove[0]', file).message, /names the calling service/);
    assert.ok(!result.problems.some((p) => p.path.includes('responseHeaderModifier')), "a response header of that name is the app's business");
  });

  it('refuses a filter without its config, with another config, or editing framing headers', async () => {
    const { file, result } = await load(
      rule(`filters:
        - { type: RequestHeaderModifier, responseHeaderModifier: { remove: [x] } }
        - { type: ResponseHeaderModifier, responseHeaderModifier: { set: [{ name: Content-Length, value: "0" }] } }
        - { type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath } } }
        - { type: RequestMirror, requestMirror: { backendRef: { name: nobody }, percent: 5, fraction: { numerator: 1 } } }
      backendRefs: [{ name: backend, filters: [{ type: RequestRedirect, requestRedirect: { hostname: x.y } }] }]`),
    );
    assert.match(problemAt(result, 'spec.rules[0].filters[0].requestHeaderModifier', file).message, /^is required for a filter of type RequestHeaderModifier/);
    assert.match(problemAt(result, 'spec.rules[0].filters[0].responseHeaderModifier', file).message, /^is set, but the filter's type is RequestHeaderModifier/);
    assert.match(problemAt(result, 'spec.rules[0].filters[1].responseHeaderModifier.set[0].name', file).message, /frames the message/);
    assert.match(problemAt(result, 'spec.rules[0].filters[2].urlRewrite.path.replaceFullPath', file).message, /^is required when path.type is ReplaceFullPath/);
    assert.match(problemAt(result, 'spec.rules[0].filters[3].requestMirror.backendRef.name', file).message, /^names "nobody"/);
    assert.match(problemAt(result, 'spec.rules[0].filters[3].requestMirror.fraction', file).message, /^set either percent or fraction/);
    assert.match(problemAt(result, 'spec.rules[0].backendRefs[0].filters[0].type', file).message, /^RequestRedirect answers the client/);
  });

  it('lets a redirecting rule go without backendRefs', async () => {
    const { result } = await load(rule('filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, statusCode: 301 } }]'));
    assert.deepEqual(result.problems, []);
  });

  it('takes every redirect status of the Gateway API (301, 302, 303, 307, 308), 302 by default, and no other', async () => {
    for (const code of [301, 302, 303, 307, 308]) {
      const { result } = await load(rule(`filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org, statusCode: ${code} } }]`));
      assert.deepEqual(result.problems, [], `statusCode ${code}`);
      const filter = (result.config?.routes[0]?.resource.spec.rules[0] as { filters?: { requestRedirect?: { statusCode?: number } }[] } | undefined)
        ?.filters?.[0];
      assert.equal(filter?.requestRedirect?.statusCode, code);
    }
    const byDefault = await load(rule('filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]'));
    const filter = (byDefault.result.config?.routes[0]?.resource.spec.rules[0] as { filters?: { requestRedirect?: { statusCode?: number } }[] } | undefined)
      ?.filters?.[0];
    assert.equal(filter?.requestRedirect?.statusCode, 302);
    for (const code of [300, 304, 305, 306]) {
      const { result, file } = await load(rule(`filters: [{ type: RequestRedirect, requestRedirect: { statusCode: ${code} } }]`));
      assert.ok(problemAt(result, 'spec.rules[0].filters[0].requestRedirect.statusCode', file), `statusCode ${code} refused`);
    }
  });
});

describe('GRPCRoute and TCPRoute', () => {
  it('accepts a GRPCRoute and refuses an invalid method regex and a redirect filter', async () => {
    const ok = await load(
      rule('matches: [{ method: { service: shop.Cart, method: Get }, headers: [{ name: x-user, value: a }] }]\n      backendRefs: [{ name: backend-v2 }]'),
      'GRPCRoute',
    );
    assert.deepEqual(ok.result.problems, []);
    const { file, result } = await load(
      rule('matches: [{ method: { type: RegularExpression, service: "shop.(" } }]\n      backendRefs: [{ name: backend }]'),
      'GRPCRoute',
    );
    assert.match(problemAt(result, 'spec.rules[0].matches[0].method.service', file).message, /^is not a valid regular expression/);
    const redirect = await load(rule('filters: [{ type: RequestRedirect }]\n      backendRefs: [{ name: backend }]'), 'GRPCRoute');
    assert.match(
      problemAt(redirect.result, 'spec.rules[0].filters[0].type', redirect.file).message,
      /^must be one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror/,
    );
  });

  it('accepts a TCPRoute on a tcp service, refuses one on a service without a declared protocol, a second one, and a second rule', async () => {
    const alpha = 'gateway.networking.k8s.io/v1alpha2';
    const ok = await load(
      '  parentRefs: [{ name: postgres }]\n  rules: [{ backendRefs: [{ name: postgres-v1, weight: 90 }, { name: postgres-v2, weight: 10 }] }]\n',
      'TCPRoute',
      alpha,
    );
    assert.deepEqual(ok.result.problems, []);
    const http = await load('  parentRefs: [{ name: backend }]\n  rules: [{ backendRefs: [{ name: backend }] }]\n', 'TCPRoute', alpha);
    assert.match(
      problemAt(http.result, 'spec.parentRefs[0].name', http.file).message,
      /whose protocol is not declared \(detected per connection\); declare protocol: tcp/,
    );
    const two = await load(
      '  parentRefs: [{ name: postgres }]\n  rules: [{ backendRefs: [{ name: postgres }] }, { backendRefs: [{ name: postgres }] }]\n',
      'TCPRoute',
      alpha,
    );
    assert.equal(problemAt(two.result, 'spec.rules', two.file).message, 'must have at most 1 items (got 2)');
    const second = await tmp.write(
      'second-tcp.yaml',
      `${route('a', '  parentRefs: [{ name: postgres }]\n  rules: [{ backendRefs: [{ name: postgres }] }]\n')}---\n${route('b', '  parentRefs: [{ name: postgres }]\n  rules: [{ backendRefs: [{ name: postgres-v2 }] }]\n')}`
        .replaceAll('kind: HTTPRoute', 'kind: TCPRoute')
        .replaceAll('gateway.networking.k8s.io/v1\n', `${alpha}\n`),
    );
    const both = await loadConfig([meshFile, second]);
    assert.match(problemAt(both, 'spec.parentRefs[0].name', second).message, /^service "postgres" already has a TCPRoute \(a in /);
  });

  it('trellis validate prints file:line:col: path: message and exits 1', async () => {
    const file = await tmp.write(
      'bad-cli.yaml',
      route('bad', rule('matches: [{ headers: [{ type: RegularExpression, name: x-user, value: "(" }] }]\n      backendRefs: [{ name: backend-v9 }]')),
    );
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/trellis.js'), 'validate', meshFile, file], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(
      lines[0]!,
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8:\\d+: spec\\.rules\\[0\\]\\.matches\\[0\\]\\.headers\\[0\\]\\.value: is not a valid regular expression`,
      ),
    );
    assert.match(lines[1]!, /^warning: .*:9:\d+: spec\.rules\[0\]\.backendRefs\[0\]\.name: names "backend-v9"/);
  });
});
