// Validation of multi-port services (`ports:`) and of routes bound to one port
// (`parentRefs[].port`, the Gateway API's MeshPorts): unique numbers and names, names once
// there are several ports, a fixed appPort only with one instance, each port's protocol,
// upstreams naming a port the service has, and routes naming a port their parent has.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { mesh, problemAt, route, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  tmp = await tempDir();
});
after(() => tmp.cleanup());

let n = 0;
async function load(services: string, ...routes: string[]) {
  const file = await tmp.write(`mesh-${++n}.yaml`, mesh(services));
  const routeFiles = await Promise.all(routes.map((spec, i) => tmp.write(`route-${n}-${i}.yaml`, route(`r${n}-${i}`, spec))));
  return { file, routeFiles, result: await loadConfig([file, ...routeFiles]) };
}

const ECHO = `    - name: echo
      ports:
        - { name: http, port: 80, protocol: http }
        - { name: http-alt, port: 8080 }
        - { name: raw, port: 9090, protocol: tcp }
    - name: client
      upstreams: [echo]
`;

describe('Mesh ports:', () => {
  it('accepts a ports list and normalizes it in order, the service protocol as each port default', async () => {
    const { result } = await load(`    - name: echo
      protocol: http1
      ports:
        - { name: http, port: 80 }
        - { name: grpc, port: 7070, protocol: grpc, appPort: 7171 }
`);
    assert.deepEqual(result.problems, []);
    const echo = result.config!.services[0]!;
    assert.deepEqual(echo.ports, [
      { name: 'http', port: 80, protocol: 'http1' },
      { name: 'grpc', port: 7070, appPort: 7171, protocol: 'grpc' },
    ]);
    assert.equal(echo.protocol, 'http1', "the service's own protocol is its first port's");
  });

  it('leaves a one-port service exactly as before (no ports)', async () => {
    const { result } = await load('    - name: web\n      port: 8080\n      protocol: http\n');
    assert.deepEqual(result.problems, []);
    assert.equal(result.config!.services[0]!.ports, undefined);
    assert.equal(result.config!.services[0]!.port, 8080);
  });

  it('refuses a port number or a name listed twice, at the second', async () => {
    const { file, result } = await load(`    - name: echo
      ports:
        - { name: a, port: 80 }
        - { name: b, port: 80 }
        - { name: a, port: 81 }
`);
    assert.match(problemAt(result, 'spec.services[0].ports[1].port', file).message, /^port 80 is listed again \(also ports\[0\]\)/);
    assert.match(problemAt(result, 'spec.services[0].ports[2].name', file).message, /^port name "a" is used again \(also ports\[0\]\)/);
  });

  it('requires names once there is more than one port', async () => {
    const { file, result } = await load('    - name: echo\n      ports: [{ port: 80 }, { name: alt, port: 8080 }]\n');
    assert.match(problemAt(result, 'spec.services[0].ports[0]', file).message, /^needs a name: a service with more than one port names each/);
    const single = await load('    - name: echo\n      ports: [{ port: 80 }]\n');
    assert.deepEqual(single.result.problems, [], 'one port needs no name');
  });

  it('refuses a fixed appPort with more than one instance, and the one-port shorthand beside a ports list', async () => {
    const { file, result } = await load('    - name: echo\n      replicas: 2\n      port: 9000\n      ports: [{ port: 80, appPort: 9001 }]\n');
    assert.match(problemAt(result, 'spec.services[0].ports[0].appPort', file).message, /^fixes app port 9001, but service "echo" has 2 instances/);
    const both = result.problems.filter((p) => p.path === 'spec.services[0].port').map((p) => p.message);
    assert.ok(
      both.some((m) => /lists its ports; set appPort on a port of its ports: list instead/.test(m)),
      both.join('\n'),
    );
  });

  it('lets two ports of one service share an app port, but not two services', async () => {
    const shared = await load('    - name: echo\n      ports: [{ name: a, port: 80, appPort: 9100 }, { name: b, port: 8080, appPort: 9100 }]\n');
    assert.deepEqual(shared.result.problems, []);
    const { file, result } = await load(`    - name: echo
      ports: [{ name: a, port: 80, appPort: 9100 }]
    - name: other
      port: 9100
`);
    assert.match(problemAt(result, 'spec.services[1].port', file).message, /^port 9100 is already used by spec\.services\[0\]\.ports\[0\]\.appPort/);
  });

  it('checks the schema of a port: range, protocol, unknown fields', async () => {
    const { file, result } = await load('    - name: echo\n      ports: [{ port: 0, protocol: udp, targetPort: 1 }]\n');
    assert.match(problemAt(result, 'spec.services[0].ports[0].port', file).message, /1-65535/);
    assert.match(problemAt(result, 'spec.services[0].ports[0].protocol', file).message, /^must be one of http, http1, http2, grpc, tcp/);
    assert.match(
      problemAt(result, 'spec.services[0].ports[0].targetPort', file).message,
      /^unknown field "targetPort"; allowed here: name, port, appPort, protocol/,
    );
  });

  it('takes an upstream servicePort that the service has, and one listener per port', async () => {
    const ok = await load(`${ECHO.replace('upstreams: [echo]', 'upstreams: [echo, { service: echo, servicePort: 8080 }]')}`);
    assert.deepEqual(ok.result.problems, []);
    assert.deepEqual(ok.result.config!.services[1]!.upstreams, [{ service: 'echo' }, { service: 'echo', servicePort: 8080 }]);
    const { file, result } = await load(
      `${ECHO.replace('upstreams: [echo]', 'upstreams: [{ service: echo, servicePort: 81 }, { service: web, servicePort: 80 }]')}    - name: web\n`,
    );
    assert.match(
      problemAt(result, 'spec.services[1].upstreams[0].servicePort', file).message,
      /^names port 81, which service "echo" does not have \(its ports: 80, 8080, 9090\)/,
    );
    assert.match(problemAt(result, 'spec.services[1].upstreams[1].servicePort', file).message, /^names port 80 of service "web", which lists no ports/);
  });

  it('resolves an upstream servicePort in the upstream namespace, and keys duplicates by namespace and port', async () => {
    const SHOP = `    - name: echo
      namespace: shop
      ports:
        - { name: http, port: 80 }
        - { name: http-alt, port: 8080 }
    - name: echo
    - name: client
      upstreams: [echo, echo.shop, { service: echo, namespace: shop, servicePort: 8080 }, { service: echo, namespace: shop, servicePort: 80 }]
`;
    const ok = await load(SHOP);
    assert.deepEqual(ok.result.problems, []);
    assert.deepEqual(ok.result.config!.services[2]!.upstreams, [
      { service: 'echo' },
      { service: 'echo.shop' },
      { service: 'echo.shop', servicePort: 8080 },
      { service: 'echo.shop', servicePort: 80 },
    ]);
    const { file, result } = await load(
      SHOP.replace(
        'upstreams: [echo, echo.shop, { service: echo, namespace: shop, servicePort: 8080 }, { service: echo, namespace: shop, servicePort: 80 }]',
        'upstreams: [{ service: echo, namespace: shop, servicePort: 8080 }, { service: echo, namespace: shop, servicePort: 8080 }, { service: echo, namespace: shop, servicePort: 81 }, { service: echo, servicePort: 80 }]',
      ),
    );
    assert.match(
      problemAt(result, 'spec.services[2].upstreams[1]', file).message,
      /^lists service "echo" in namespace shop port 8080 again \(also upstreams\[0\]\)/,
    );
    assert.match(
      problemAt(result, 'spec.services[2].upstreams[2].servicePort', file).message,
      /^names port 81, which service "echo" in namespace shop does not have \(its ports: 80, 8080\)/,
    );
    // `echo` without a namespace is default's one-port echo, not shop's.
    assert.match(problemAt(result, 'spec.services[2].upstreams[3].servicePort', file).message, /^names port 80 of service "echo", which lists no ports/);
  });
});

describe('parentRefs[].port', () => {
  it('binds an HTTPRoute to a port the service has', async () => {
    const { result } = await load(
      ECHO,
      '  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]\n  rules: [{ backendRefs: [{ name: echo, port: 80 }] }]\n',
    );
    assert.deepEqual(result.problems, []);
  });

  it('refuses a port the service does not have, or any port on a one-port service', async () => {
    const { routeFiles, result } = await load(
      `${ECHO}    - name: web\n`,
      '  parentRefs: [{ name: echo, port: 81 }]\n  rules: [{ backendRefs: [{ name: echo }] }]\n',
      '  parentRefs: [{ name: web, port: 80 }]\n  rules: [{ backendRefs: [{ name: web }] }]\n',
    );
    const echo = result.problems.find((p) => p.file === routeFiles[0] && p.path === 'spec.parentRefs[0].port');
    assert.match(echo?.message ?? '', /^binds to port 81, which service "echo" does not have \(its ports: 80, 8080, 9090\)$/);
    const web = result.problems.find((p) => p.file === routeFiles[1] && p.path === 'spec.parentRefs[0].port');
    assert.match(web?.message ?? '', /^binds to port 80 of service "web", which lists no ports/);
  });

  it("judges the route kind by the bound port's protocol", async () => {
    const { routeFiles, result } = await load(ECHO, '  parentRefs: [{ name: echo, port: 9090 }]\n  rules: [{ backendRefs: [{ name: echo }] }]\n');
    assert.match(problemAt(result, 'spec.parentRefs[0].name', routeFiles[0]).message, /whose protocol is tcp; an HTTPRoute only applies to http services/);
    // Without a port, an HTTPRoute binds to the HTTP ports and leaves the tcp one alone.
    const portless = await load(ECHO, '  parentRefs: [{ name: echo }]\n  rules: [{ backendRefs: [{ name: echo }] }]\n');
    assert.deepEqual(portless.result.problems, []);
  });
});
