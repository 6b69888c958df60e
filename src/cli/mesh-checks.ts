// What `trellis check` judges, as plain functions of the admin API's views (so each
// verdict is tested without a mesh): every proxy connected and on its latest snapshot,
// workload certificates far from expiry, and the CA's issuer and roots. A root or issuer
// that expires within 30 days is a warning: Linkerd's and Consul's worst outages were
// an expired trust anchor nobody saw coming (linkerd2 #4287, consul #16779), and
// `linkerd check` warns at 60 days for the same reason.
import type { KubernetesUnlistedKind, ProxyView, ServiceView } from '../api/admin.js';
import { describeUnlisted } from '../control/sources/kubernetes-unlisted.js';
import type { CaView } from '../control/ca/certificate-authority.js';
import type { IssuedView } from '../control/ca/identity-service.js';

export type CheckLevel = 'ok' | 'warn' | 'fail';

/** One verdict: a line, and the lines that say why (each proxy or certificate at fault). */
export interface CheckResult {
  readonly level: CheckLevel;
  readonly what: string;
  readonly details: readonly string[];
}

/** How close to expiry a root or issuer may come before a warning (30 days). */
export const CA_WARN_WITHIN_MS = 30 * 86_400_000;

/** "15h 58m" / "9d 23h" / "3m". */
export function duration(ms: number): string {
  const abs = Math.abs(ms);
  const d = Math.floor(abs / 86_400_000);
  const h = Math.floor((abs % 86_400_000) / 3_600_000);
  const m = Math.floor((abs % 3_600_000) / 60_000);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
}

const result = (level: CheckLevel, what: string, details: readonly string[] = []): CheckResult => ({ level, what, details });

/** Every proxy the control plane knows is connected; every service has the instances its versions ask for. */
export function checkConnected(proxies: readonly ProxyView[], services: readonly ServiceView[]): CheckResult[] {
  const out: CheckResult[] = [];
  const down = proxies.filter((p) => !p.connected);
  const up = proxies.length - down.length;
  if (proxies.length === 0) out.push(result('fail', 'no proxy has connected to the control plane'));
  else if (down.length > 0)
    out.push(
      result(
        'fail',
        `${down.length} of ${proxies.length} proxies are disconnected`,
        down.map((p) => `${p.id} (service ${p.service}) disconnected at ${p.disconnectedAt ?? '?'}`),
      ),
    );
  else out.push(result('ok', `${up} ${up === 1 ? 'proxy' : 'proxies'} connected`));
  const short: string[] = [];
  for (const s of services) {
    for (const v of s.versions) {
      const have = s.instances.filter((i) => i.version === v.name).length;
      if (have < v.replicas) short.push(`${s.name} ${v.name}: ${have} of ${v.replicas} instances registered`);
    }
  }
  if (short.length > 0) out.push(result('warn', 'some services run fewer instances than their replicas (not started, or their sidecars are down)', short));
  return out;
}

/** Every connected proxy acknowledged the latest snapshot it was sent, none is stuck on a NACK. */
export function checkSnapshots(proxies: readonly ProxyView[]): CheckResult {
  const behind: string[] = [];
  for (const p of proxies.filter((x) => x.connected)) {
    if (p.sentVersion === null) behind.push(`${p.id}: no snapshot sent yet`);
    else if (p.lastNack && (p.ackedVersion === null || p.lastNack.version > p.ackedVersion))
      behind.push(`${p.id}: rejected v${p.lastNack.version} (${p.lastNack.error}); it runs on v${p.ackedVersion ?? '-'}`);
    else if (p.ackedVersion !== p.sentVersion) behind.push(`${p.id}: acknowledged v${p.ackedVersion ?? '-'} of v${p.sentVersion}`);
  }
  if (behind.length > 0) return result('fail', `${behind.length} ${behind.length === 1 ? 'proxy is' : 'proxies are'} not on their latest snapshot`, behind);
  return result('ok', 'every connected proxy acknowledged its latest snapshot');
}

/**
 * Every connected proxy holds a certificate with more than a third of its life left
 * (proxies renew at about two thirds: less left means renewal is failing); none expired.
 */
export function checkCertificates(proxies: readonly ProxyView[], issued: readonly IssuedView[], now: number): CheckResult {
  const byProxy = new Map(issued.map((c) => [c.proxy, c]));
  const failed: string[] = [];
  const warned: string[] = [];
  let soonest: number | undefined;
  for (const p of proxies.filter((x) => x.connected)) {
    const c = byProxy.get(p.id);
    if (!c) {
      warned.push(`${p.id}: no certificate issued yet`);
      continue;
    }
    const notAfter = Date.parse(c.notAfter);
    const life = notAfter - Date.parse(c.notBefore);
    const left = notAfter - now;
    soonest = soonest === undefined ? left : Math.min(soonest, left);
    if (left <= 0) failed.push(`${p.id}: ${c.spiffeId} expired ${duration(left)} ago (${c.notAfter})`);
    else if (left < life / 3) warned.push(`${p.id}: ${c.spiffeId} expires in ${duration(left)}, past its renewal time (about 2/3 of its life)`);
  }
  if (failed.length > 0) return result('fail', `${failed.length} workload certificate(s) expired`, [...failed, ...warned]);
  if (warned.length > 0) return result('warn', `${warned.length} workload certificate(s) not renewed as they should be`, warned);
  if (soonest === undefined) return result('ok', 'no workload certificates to check');
  return result('ok', `workload certificates far from expiry (the soonest in ${duration(soonest)})`);
}

/** The CA's issuer and every root of the trust bundle: expired fails, within `warnWithinMs` warns. */
export function checkCa(ca: CaView, now: number, warnWithinMs = CA_WARN_WITHIN_MS): CheckResult[] {
  const judge = (kind: string, subject: string, serial: string, notAfter: string, fix: string): CheckResult => {
    const left = Date.parse(notAfter) - now;
    const name = `${kind} "${subject}" (serial ${serial})`;
    if (left <= 0) return result('fail', `${name} expired ${duration(left)} ago (${notAfter})`, [fix]);
    if (left < warnWithinMs) return result('warn', `${name} expires in ${duration(left)} (${notAfter}), within ${duration(warnWithinMs)}`, [fix]);
    return result('ok', `${name} expires in ${duration(left)}`);
  };
  const provided = ca.source === 'provided';
  const issuerFix = provided
    ? 'give the mesh a new issuer in spec.identity.ca (certificate and key files) and restart the control plane'
    : 'the control plane replaces its generated issuer when a third of its life is left; is it running?';
  const rootFix = provided
    ? 'add a new root to the trust bundle file (spec.identity.ca.trustBundle) now, then move the issuer under it once every proxy holds the new bundle'
    : 'the control plane rotates its generated root when a fifth of its life is left; is it running?';
  return [
    judge('CA issuer', ca.issuer.subject, ca.issuer.serial, ca.issuer.notAfter, issuerFix),
    ...ca.roots.map((r) => judge(r.active ? 'CA root' : 'CA root (trusted, not active)', r.subject, r.serial, r.notAfter, rootFix)),
  ];
}

/** The printed report: one line per check, its details indented, a summary last. */
export function renderChecks(url: string, results: readonly CheckResult[]): string {
  const tag: Record<CheckLevel, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  const lines = [`trellis check: the mesh at ${url}`];
  for (const r of results) {
    lines.push(`  ${tag[r.level]}  ${r.what}`);
    for (const d of r.details) lines.push(`          ${d}`);
  }
  const fails = results.filter((r) => r.level === 'fail').length;
  const warns = results.filter((r) => r.level === 'warn').length;
  lines.push(`${fails} ${fails === 1 ? 'failure' : 'failures'}, ${warns} ${warns === 1 ? 'warning' : 'warnings'}`);
  return `${lines.join('\n')}\n`;
}

/**
 * `trellis control --kubernetes` has listed every security policy kind; one it never
 * listed keeps every proxy out (fail closed), named with its likely cause (RBAC, CRD).
 */
export function checkKubernetesKinds(unlisted: readonly KubernetesUnlistedKind[]): CheckResult {
  if (unlisted.length === 0) return result('ok', 'the control plane listed every security policy kind from the Kubernetes API');
  return result(
    'fail',
    `the control plane cannot list ${unlisted.map((u) => u.kind).join(', ')} from the Kubernetes API: it refuses every proxy until it can (fail closed)`,
    unlisted.map(describeUnlisted),
  );
}
