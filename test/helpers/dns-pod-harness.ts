// Test helper, run as a child process inside a network namespace as the sidecar's uid
// (test/e2e/dns-interception.test.ts): a backend app behind its inbound sidecar (STRICT
// mutual TLS), a caller's sidecar with the DNS responder on 127.0.0.1:15053 (where the
// pod's rules redirect port 53), and a stand-in cluster resolver on 10.250.0.2:5300 that
// answers *.example.test. Prints one JSON line when ready; stops everything on SIGTERM or
// when its stdin closes (the test ended, however it ended).
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, NO_CONTROL, startInbound } from './proxy-pair.js';
import { giveIdentity, withPeerMtls } from './test-identity.js';

/** The argument the test starts it with: `node --test dist/test/` loads every file under test/, and this one must then do nothing. */
export const HARNESS_ARG = '--dns-pod-harness';

if (process.argv[2] === HARNESS_ARG) await main();

async function main(): Promise<void> {
  const RESOLVER = { host: '10.250.0.2', port: 5300 };

  const app = await listenHttp((req, res) => res.end(`backend saw ${req.url} from ${req.headers['trellis-source'] ?? 'unknown'}`));
  const backend = await startInbound('backend', 'v1', app.port, 'http', { mtls: 'STRICT' });

  const resolver = dgram.createSocket('udp4');
  resolver.on('message', (msg, r) => {
    try {
      const q = dnsPacket.decode(msg);
      const question = q.questions?.[0];
      const name = question?.name ?? '';
      const answers: dnsPacket.Answer[] = name.endsWith('example.test') && question?.type === 'A' ? [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }] : [];
      // NXDOMAIN (rcode 3) for every other name, as a cluster resolver answers one it does not know.
      const rcode = name.endsWith('example.test') ? 0 : 3;
      const flags = dnsPacket.RECURSION_AVAILABLE | rcode;
      resolver.send(dnsPacket.encode({ type: 'response', id: q.id, flags, questions: q.questions ?? [], answers }), r.port, r.address);
    } catch {
      // a stand-in: what it cannot read it does not answer
    }
  });
  await new Promise<void>((r) => resolver.bind(RESOLVER.port, RESOLVER.host, r));

  const web = new Sidecar({
    service: 'web',
    version: 'default',
    id: 'web-0',
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [],
    httpProxy: { host: '127.0.0.1', port: 15001 },
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    // Only the responder's lines: the control plane it never reaches would fill the test's output.
    log: (line) => (line.includes(' dns: ') ? process.stderr.write(`${line}\n`) : undefined),
    dns: { listen: { host: '127.0.0.1', port: 15053 }, upstreams: [RESOLVER] },
  });
  await giveIdentity(web, 'web');
  await web.start();
  const eps = [{ id: 'backend-0', host: '127.0.0.1', port: backend.addresses.inbound!.port, version: 'v1', app: { host: '127.0.0.1', port: app.port } }];
  web.apply({
    version: 1,
    service: 'web',
    inboundProtocol: 'http',
    meshServices: ['backend', 'web'],
    upstreams: withPeerMtls({ backend: { service: 'backend', protocol: 'http', routes: [], backends: { backend: { name: 'backend', endpoints: eps } } } }),
  });

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await web.close();
    await backend.close();
    await closeServer(app.server);
    resolver.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ appPort: app.port, admin: web.addresses.admin })}\n`);
}
