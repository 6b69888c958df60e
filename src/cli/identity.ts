// `trellis identity`: the mesh's CA and the certificates its proxies hold, from the
// control plane's admin API; and `trellis identity credential`, which mints the bootstrap
// credential of a proxy started by hand.
import { TrellisError } from '../errors.js';
import type { CaView } from '../control/ca/certificate-authority.js';
import type { IssuedView } from '../control/ca/identity-service.js';
import { loadBootstrapSecret } from '../control/ca/bootstrap-secret.js';
import { mintCredential } from '../security/bootstrap-credential.js';
import { certificatesOf, serialOf } from '../security/x509.js';
import { parseFlags } from './args.js';
import { ADMIN_TOKEN_FLAGS, adminGetJson, adminTarget, adminTokenHelp, controlUrl, type AdminTarget } from './admin-client.js';

export const help = `Usage: trellis identity [INSTANCE] [--control URL] [--json]
       trellis identity credential --service NAME --id ID [--gateway] [--state-dir DIR]

Without INSTANCE: the mesh CA (trust domain, roots, issuer and their expiry) and the
certificate each proxy holds. With INSTANCE (a proxy id, e.g. backend-v1-0): that proxy's
SPIFFE ID, certificate serial, validity, chain and trust bundle. Keys are never shown:
they never leave the proxies and the CA.

\`credential\` prints the bootstrap credential of one proxy, for a proxy you start
yourself: give it to \`trellis proxy\` as $TRELLIS_CREDENTIAL. It is minted from the
bootstrap secret of a \`trellis control\` started with the same --state-dir (or from
$TRELLIS_BOOTSTRAP_SECRET). Treat it as a password.

Options:
  --control URL   the control plane's admin URL (default: http://127.0.0.1:15000)
  --json          print the admin API's JSON
${adminTokenHelp(18)}
`;

const TIMEOUT_MS = 3000;

function getJson<T>(target: AdminTarget, path: string): Promise<T | undefined> {
  return adminGetJson<T>(target, path, TIMEOUT_MS, 'undefined-on-404');
}

/** "in 15h 58m" / "2d 3h ago". */
export function expiresIn(notAfter: string, now = Date.now()): string {
  const ms = Date.parse(notAfter) - now;
  const abs = Math.abs(ms);
  const d = Math.floor(abs / 86_400_000);
  const h = Math.floor((abs % 86_400_000) / 3_600_000);
  const m = Math.floor((abs % 3_600_000) / 60_000);
  const text = d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
  return ms >= 0 ? `in ${text}` : `EXPIRED ${text} ago`;
}

/** The text `trellis identity INSTANCE` prints. */
export function formatIssued(v: IssuedView, now = Date.now()): string {
  const lines = [
    `instance     ${v.proxy} (service ${v.service})`,
    `identity     ${v.spiffeId}`,
    `serial       ${v.serial}`,
    `valid        ${v.notBefore} .. ${v.notAfter} (expires ${expiresIn(v.notAfter, now)})`,
    `issued at    ${v.issuedAt}`,
    'chain:',
  ];
  v.chain.forEach((pem, i) => {
    for (const c of certificatesOf(pem)) {
      lines.push(`  ${i}  subject "${c.subject}" issuer "${c.issuer}" serial ${serialOf(c)} until ${c.notAfter.toISOString()}`);
    }
  });
  lines.push('trust bundle:');
  for (const pem of v.trustBundle) {
    for (const c of certificatesOf(pem)) lines.push(`  root "${c.subject}" serial ${serialOf(c)} until ${c.notAfter.toISOString()}`);
  }
  return `${lines.join('\n')}\n`;
}

function formatCa(ca: CaView, certificates: IssuedView[], now = Date.now()): string {
  const lines = [
    `trust domain ${ca.trustDomain} (CA ${ca.source}; workload certificates live ${Math.round(ca.certificateLifetimeMs / 60_000)} min)`,
    `issuer       "${ca.issuer.subject}" serial ${ca.issuer.serial}, expires ${expiresIn(ca.issuer.notAfter, now)} (${ca.issuer.notAfter})`,
  ];
  for (const r of ca.roots) {
    const state = r.active ? 'active' : 'trusted';
    lines.push(
      `root         "${r.subject}" serial ${r.serial}, ${state}, expires ${expiresIn(r.notAfter, now)}${r.retireAt ? `, leaves the bundle ${r.retireAt}` : ''}`,
    );
  }
  lines.push('', `${'INSTANCE'.padEnd(28)}${'IDENTITY'.padEnd(52)}EXPIRES`);
  for (const c of certificates) lines.push(`${c.proxy.padEnd(28)}${c.spiffeId.padEnd(52)}${expiresIn(c.notAfter, now)}`);
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      json: { type: 'boolean', default: false },
      service: { type: 'string' },
      id: { type: 'string' },
      gateway: { type: 'boolean', default: false },
      'state-dir': { type: 'string', default: '.trellis' },
      ...ADMIN_TOKEN_FLAGS,
    },
    true,
    'identity',
  );
  if (positionals[0] === 'credential') {
    if (!values.service || !values.id) throw new TrellisError('TRELLIS_E_USAGE', { reason: '`trellis identity credential` needs --service and --id' });
    const secret = await loadBootstrapSecret(values['state-dir']);
    process.stdout.write(`${mintCredential(secret, { kind: values.gateway ? 'gateway' : 'sidecar', service: values.service, id: values.id })}\n`);
    return 0;
  }
  const base = await adminTarget(controlUrl(values.control), values);
  const instance = positionals[0];
  if (instance !== undefined) {
    const issued = await getJson<IssuedView>(base, `/v1/identity/${encodeURIComponent(instance)}`);
    if (!issued)
      throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `no certificate was issued to a proxy "${instance}"; \`trellis identity\` lists them` });
    process.stdout.write(values.json ? `${JSON.stringify(issued, null, 2)}\n` : formatIssued(issued));
    return 0;
  }
  const all = await getJson<{ ca: CaView; certificates: IssuedView[] }>(base, '/v1/identity');
  if (!all) throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: 'this control plane has no /v1/identity (an older version?)' });
  process.stdout.write(values.json ? `${JSON.stringify(all, null, 2)}\n` : formatCa(all.ca, all.certificates));
  return 0;
}
