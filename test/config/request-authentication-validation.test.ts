// Validation and compilation of the RequestAuthentication kind: bad rules are refused
// with file and field path (a key source missing or doubled, a private or symmetric key,
// an unreadable jwksFile, a repeated issuer, a target that isn't a Service of the
// namespace, a claim header the proxy owns, `alg: none` or HS256); a good one reaches the
// snapshot of the services it targets only, with the jwksFile's content inlined, and the
// file is watched (in `files`).
import assert from 'node:assert/strict';
import { generateKeyPair, exportJWK } from 'jose';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { mesh, problemAt, tempDir } from './helpers.js';
import { sidecar } from '../control/helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
let publicJwks: string;
let privateJwks: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: web
      upstreams: [api]
    - name: api
`),
  );
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  publicJwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'a' }] });
  privateJwks = JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid: 'a' }] });
});
after(() => tmp.cleanup());

let n = 0;
async function load(spec: string) {
  const file = await tmp.write(`authn-${++n}.yaml`, `apiVersion: trellis.dev/v1alpha1\nkind: RequestAuthentication\nmetadata:\n  name: a${n}\nspec:\n${spec}`);
  return { file, result: await loadConfig([meshFile, file]) };
}

const toApi = '  targetRefs: [{ group: "", kind: Service, name: api }]\n';

describe('RequestAuthentication validation', () => {
  it('needs exactly one key source per rule', async () => {
    let r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n`);
    assert.match(problemAt(r.result, 'spec.jwtRules[0]', r.file).message, /one of jwks .*, jwksFile .* or jwksUri/);
    r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwks: '${publicJwks}'\n      jwksUri: https://a.example/jwks\n`);
    assert.match(problemAt(r.result, 'spec.jwtRules[0].jwksUri', r.file).message, /not jwks and jwksUri/);
  });

  it('refuses a key set that is not JSON, holds a private key, or a symmetric one', async () => {
    let r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwks: 'not json'\n`);
    assert.match(problemAt(r.result, 'spec.jwtRules[0].jwks', r.file).message, /is not JSON/);
    r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwks: '${privateJwks}'\n`);
    const p = problemAt(r.result, 'spec.jwtRules[0].jwks', r.file);
    assert.match(p.message, /private key \(it has "d"\)/);
    assert.ok(!p.message.includes(JSON.parse(privateJwks).keys[0].d), 'the message quotes no key material');
    r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}'\n`);
    assert.match(problemAt(r.result, 'spec.jwtRules[0].jwks', r.file).message, /symmetric \(oct\) key/);
  });

  it('refuses alg none and HS256 in algorithms (schema), and a jwksUri that is not http(s)', async () => {
    let r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n      algorithms: [none]\n`);
    assert.ok(
      r.result.problems.some((p) => p.path.startsWith('spec.jwtRules[0].algorithms')),
      JSON.stringify(r.result.problems),
    );
    r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n      algorithms: [HS256]\n`);
    assert.ok(r.result.problems.some((p) => p.path.startsWith('spec.jwtRules[0].algorithms')));
    r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksUri: file:///etc/passwd\n`);
    problemAt(r.result, 'spec.jwtRules[0].jwksUri', r.file);
  });

  it('refuses an unreadable jwksFile, a repeated issuer, a target outside the mesh, and a claim header the proxy owns', async () => {
    let r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksFile: missing.json\n`);
    assert.match(problemAt(r.result, 'spec.jwtRules[0].jwksFile', r.file).message, /cannot be read: ENOENT/);
    r = await load(
      `${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n`,
    );
    assert.match(problemAt(r.result, 'spec.jwtRules[1].issuer', r.file).message, /also the issuer of jwtRules\[0\]/);
    r = await load(
      `  targetRefs: [{ group: "", kind: Service, name: apj }]\n  jwtRules:\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n`,
    );
    assert.match(problemAt(r.result, 'spec.targetRefs[0].name', r.file).message, /did you mean "api"/);
    r = await load(
      `${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n      outputClaimToHeaders: [{ header: trellis-source, claim: sub }]\n`,
    );
    assert.match(problemAt(r.result, 'spec.jwtRules[0].outputClaimToHeaders[0].header', r.file).message, /a header the proxy owns/);
  });

  it('refresh settings apply to a jwksUri only, and the staleness limit outlasts a refresh', async () => {
    let r = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwks: '${publicJwks}'\n      jwksRefreshInterval: 1m\n`);
    assert.match(problemAt(r.result, 'spec.jwtRules[0].jwksRefreshInterval', r.file).message, /jwksUri only/);
    r = await load(
      `${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksUri: https://a.example/jwks\n      jwksRefreshInterval: 10m\n      jwksMaxStale: 5m\n`,
    );
    assert.match(problemAt(r.result, 'spec.jwtRules[0].jwksMaxStale', r.file).message, /shorter than the refresh interval/);
  });

  it('a good policy reaches the snapshot of the service it targets, with its jwksFile inlined and watched', async () => {
    const keys = await tmp.write('keys/issuer.json', publicJwks);
    const { file, result } = await load(`${toApi}  jwtRules:\n    - issuer: https://a.example\n      jwksFile: keys/issuer.json\n      clockSkew: 5s\n`);
    assert.deepEqual(result.problems, []);
    assert.ok(result.files.includes(keys), 'the key file is watched');
    const config = result.config!;
    const instances = [] as const;
    const api = compileSnapshot({ config, instances, proxy: sidecar('api-0', 'api') });
    assert.deepEqual(
      api.requestAuthentication?.rules.map((r) => [r.policy, r.issuer, r.jwks, r.clockSkewMs]),
      [[`default/a${n}`, 'https://a.example', publicJwks, 5000]],
    );
    assert.equal(compileSnapshot({ config, instances, proxy: sidecar('web-0', 'web') }).requestAuthentication, undefined, 'web is not targeted');
    assert.ok(file.endsWith('.yaml'));
  });
});
