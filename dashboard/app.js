// The Trellis dashboard: one page, polling the control plane every two seconds (the
// model, the config and the proxies' golden metrics) and every ten (traces, the bench's
// last report). Preact renders every value as text; nothing here builds HTML from
// strings. Shapes: src/api/dashboard.ts.
import { h, render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from './vendor/htm.mjs';
import { api, ApiError, loginFromFragment } from './api.js';
import { Topology } from './topology.js';
import { GoldenChart } from './chart.js';
import { ms, pct, rps, time, us } from './format.js';
import { Traces } from './traces.js';

const html = htm.bind(h);
const FAST_MS = 2000;
const SLOW_MS = 10_000;

/**
 * Calls `load` now and every `everyMs` while mounted; one call at a time, so a slow
 * answer never piles up requests. Returns the data and a function that loads again now.
 */
function usePoll(load, everyMs, onError) {
  const [data, setData] = useState(null);
  const [kick, setKick] = useState(() => () => {});
  useEffect(() => {
    let stopped = false;
    let timer;
    let running = false;
    const tick = async () => {
      clearTimeout(timer);
      if (running) return;
      running = true;
      try {
        const d = await load();
        if (!stopped) setData(d);
      } catch (err) {
        if (!stopped) onError(err);
      }
      running = false;
      if (!stopped) timer = setTimeout(tick, everyMs);
    };
    setKick(() => tick);
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  return [data, kick];
}

function Golden({ g }) {
  if (!g) return html`<span class="muted">no traffic measured yet</span>`;
  return html`<span class="golden"><b data-testid="rps">${rps(g.rps)}</b> rps · <b>${pct(g.successRate)}</b> success · p99 <b>${ms(g.p99Ms)}</b> · <span data-testid="total">${g.total}</span> counted</span>`;
}

function Services({ mesh, stats }) {
  return html`<section><h2>Services</h2><div class="cards">
    ${mesh.services.map(
      (s) => html`<div class="card" data-testid="service" data-service=${s.name}>
        <h3>${s.name} <small class="muted">${s.protocol ?? 'detect'} · ${s.versions.map((v) => v.name).join(', ')}</small></h3>
        <${Golden} g=${stats?.services?.[s.name]} />
        ${stats?.services?.[s.name]?.history?.length > 1 ? html`<${GoldenChart} history=${stats.services[s.name].history} />` : null}
      </div>`,
    )}
  </div></section>`;
}

function Instances({ mesh, stats }) {
  const proxies = new Map(mesh.proxies.map((p) => [p.id, p]));
  const ejections = new Map();
  const breakers = [];
  for (const b of stats?.balancing ?? []) {
    for (const e of b.endpoints) if (e.ejected) ejections.set(e.id, [...(ejections.get(e.id) ?? []), `${b.proxy}: ${e.reason ?? '?'}`]);
    for (const br of b.breakers)
      if (br.open || br.requestOverflows > 0 || br.pendingOverflows > 0 || br.retryOverflows > 0) breakers.push({ proxy: b.proxy, ...br });
  }
  const config = (p) =>
    p ? `v${p.ackedVersion ?? '–'}/v${p.sentVersion ?? '–'}${p.connected ? '' : ' (disconnected)'}${p.lastNack ? ` NACK: ${p.lastNack.error}` : ''}` : '–';
  return html`<section><h2>Instances</h2>
    <table data-testid="instances"><thead><tr><th>instance</th><th>service</th><th>version</th><th>health</th><th>config acked/sent</th><th>ejected by</th></tr></thead>
    <tbody>${mesh.services.flatMap((s) =>
      s.instances.map(
        (i) => html`<tr data-instance=${i.id}><td>${i.id}</td><td>${s.name}</td><td>${i.version}</td>
          <td class=${`health ${i.health.status}`}>${i.health.status}${i.health.lastError ? ` (${i.health.lastError})` : ''}</td>
          <td>${config(proxies.get(i.id))}</td><td>${(ejections.get(i.id) ?? []).join('; ') || '–'}</td></tr>`,
      ),
    )}
    ${mesh.proxies.filter((p) => p.kind === 'gateway').map((p) => html`<tr><td>${p.id}</td><td>${p.service} (gateway)</td><td>${p.version}</td><td>–</td><td>${config(p)}</td><td>–</td></tr>`)}
    </tbody></table>
    ${
      breakers.length > 0
        ? html`<h3>Circuit breakers open or refusing</h3><table><thead><tr><th>proxy</th><th>destination</th><th>state</th><th>requests</th><th>overflows (pending/requests/retries)</th></tr></thead>
        <tbody>${breakers.map((b) => html`<tr><td>${b.proxy}</td><td>${b.service}</td><td>${b.open ? 'open' : 'closed'}</td><td>${b.requests}/${b.maxRequests}</td><td>${b.pendingOverflows}/${b.requestOverflows}/${b.retryOverflows}</td></tr>`)}</tbody></table>`
        : html`<p class="muted">No circuit breaker is open.</p>`
    }
  </section>`;
}

function WeightsEditor({ w, canary, onChange, onError }) {
  const current = w.weights ?? w.byInstances;
  const [draft, setDraft] = useState(null);
  const [busy, setBusy] = useState(false);
  const values = draft ?? current;
  const apply = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      await api.setWeights(w.service, Object.fromEntries(w.versions.map((v) => [v, Number(values[v] ?? 0)])));
      setDraft(null);
      onChange();
    } catch (err) {
      onError(err);
    } finally {
      setBusy(false);
    }
  };
  const lc = w.lastChange;
  const acked = lc ? lc.callers.filter((c) => c.acked).length : 0;
  return html`<div class="card" data-testid="weights" data-service=${w.service}>
    <h3>${w.service}</h3>
    <p>in force: <span data-testid="weights-now">${w.versions.map((v) => `${v} ${current[v] ?? 0}`).join(' · ')}</span>${w.weights ? '' : html` <span class="muted">(no split: by instances)</span>`}</p>
    <form onSubmit=${apply}>
      ${w.versions.map(
        (v) => html`<label>${v} <input type="number" min="0" max="1000000" name=${v} value=${values[v] ?? 0}
          onInput=${(e) => setDraft({ ...values, [v]: e.currentTarget.value })} /></label>`,
      )}
      <button type="submit" disabled=${busy}>Apply weights</button>
    </form>
    ${
      lc
        ? html`<p data-testid="weights-ack" class=${acked === lc.callers.length ? 'ok' : 'pending'}>last change ${time(lc.at)}:
          ${lc.callers.length === 0 ? 'no caller connected' : `acknowledged by ${acked}/${lc.callers.length} callers`}
          ${lc.callers.map((c) => html` <span class=${c.acked ? 'ok' : 'pending'}>${c.id} v${c.version}${c.acked ? ' ✓' : ' …'}</span>`)}</p>`
        : null
    }
    <${CanaryPanel} w=${w} canary=${canary} onChange=${onChange} onError=${onError} />
  </div>`;
}

function CanaryPanel({ w, canary, onChange, onError }) {
  const [to, setTo] = useState(w.versions[w.versions.length - 1]);
  const [steps, setSteps] = useState('10,50,100');
  const [interval, setInterval_] = useState('30');
  const act = async (f) => {
    try {
      await f();
      onChange();
    } catch (err) {
      onError(err);
    }
  };
  const active = canary && (canary.state === 'running' || canary.state === 'paused');
  return html`<div class="canary" data-testid="canary">
    ${
      canary
        ? html`<div><b>canary ${canary.to}</b> (stable ${canary.stable}): <span data-testid="canary-state">${canary.state}</span>,
          ${canary.to} at <b>${canary.percent}%</b>, step ${canary.step + 1}/${canary.steps.length}
          <progress max=${canary.steps.length} value=${Math.max(0, canary.step + (canary.state === 'promoted' ? 1 : 0))}></progress>
          ${canary.reason ? html`<p class="bad">${canary.reason}</p>` : null}
          <details><summary>events</summary><ul class="events">${canary.events.map((e) => html`<li>${time(e.at)} ${e.text}</li>`)}</ul></details></div>`
        : null
    }
    ${
      active
        ? html`<div class="buttons">
          ${
            canary.state === 'running'
              ? html`<button onClick=${() => act(() => api.canary(w.service, 'pause'))}>Pause</button>`
              : html`<button onClick=${() => act(() => api.canary(w.service, 'resume'))}>Resume</button>`
          }
          <button class="danger" onClick=${() => act(() => api.canary(w.service, 'rollback'))}>Roll back</button></div>`
        : html`<form class="buttons" onSubmit=${(e) => {
            e.preventDefault();
            act(() => api.startCanary({ service: w.service, to, steps: steps.split(',').map((s) => Number(s.trim())), intervalS: Number(interval) }));
          }}>
          <label>to <select value=${to} onChange=${(e) => setTo(e.currentTarget.value)}>${w.versions.map((v) => html`<option value=${v}>${v}</option>`)}</select></label>
          <label>steps % <input size="10" value=${steps} onInput=${(e) => setSteps(e.currentTarget.value)} /></label>
          <label>interval s <input size="4" value=${interval} onInput=${(e) => setInterval_(e.currentTarget.value)} /></label>
          <button type="submit">Start canary</button></form>`
    }
  </div>`;
}

function Routes({ mesh, stats, refresh, onError }) {
  const canaries = new Map(mesh.canaries.map((c) => [c.service, c]));
  return html`<section><h2>Routes and weights</h2>
    <div class="cards">${mesh.weights.map((w) => html`<${WeightsEditor} key=${w.service} w=${w} canary=${canaries.get(w.service)} onChange=${refresh} onError=${onError} />`)}</div>
    ${mesh.weights.length === 0 ? html`<p class="muted">No service has two versions to split.</p>` : null}
    <h3>Routes as the callers measure them</h3>
    <table data-testid="routes"><thead><tr><th>destination</th><th>route</th><th>rps</th><th>success</th><th>p99</th><th>counted</th></tr></thead>
    <tbody>${(stats?.routes ?? []).map((r) => html`<tr data-route=${r.route}><td>${r.destination}</td><td class="route-name">${r.route}</td><td>${rps(r.rps)}</td><td>${pct(r.successRate)}</td><td>${ms(r.p99Ms)}</td><td>${r.total}</td></tr>`)}</tbody></table>
    <p class="muted">Configured routes: ${mesh.config.routes.join(', ') || 'none'}</p>
    ${
      (stats?.versions ?? []).length > 0
        ? html`<h3>By version</h3><table><thead><tr><th>service</th><th>version</th><th>rps</th><th>success</th><th>p99</th></tr></thead>
        <tbody>${stats.versions.map((v) => html`<tr><td>${v.service}</td><td>${v.version}</td><td>${rps(v.rps)}</td><td>${pct(v.successRate)}</td><td>${ms(v.p99Ms)}</td></tr>`)}</tbody></table>`
        : null
    }
  </section>`;
}

function Policies({ mesh, stats }) {
  return html`<section><h2>Policies and denials</h2>
    ${
      mesh.policies.length === 0
        ? html`<p class="muted">No policies in the config.</p>`
        : html`<table data-testid="policies"><thead><tr><th>kind</th><th>namespace</th><th>name</th><th>targets</th></tr></thead>
        <tbody>${mesh.policies.map((p) => html`<tr><td>${p.kind}</td><td>${p.namespace}</td><td>${p.name}</td><td>${p.targets.join(', ') || 'whole namespace'}</td></tr>`)}</tbody></table>`
    }
    <h3>Requests refused 403 at the destination</h3>
    ${
      (stats?.denials ?? []).length === 0
        ? html`<p class="muted">None counted.</p>`
        : html`<table data-testid="denials"><thead><tr><th>caller</th><th>destination</th><th>in the window</th><th>counted</th></tr></thead>
        <tbody>${stats.denials.map((d) => html`<tr><td>${d.source}</td><td>${d.destination}</td><td>${d.count}</td><td>${d.total}</td></tr>`)}</tbody></table>`
    }
    <h3>Authorization denials by policy (HTTP and TCP)</h3>
    ${
      (stats?.authzDenials ?? []).length === 0
        ? html`<p class="muted">None counted.</p>`
        : html`<table data-testid="authz-denials"><thead><tr><th>service</th><th>policy</th><th>protocol</th><th>in the window</th><th>counted</th></tr></thead>
        <tbody>${stats.authzDenials.map((d) => html`<tr><td>${d.service}</td><td>${d.policy}</td><td>${d.protocol}</td><td>${d.count}</td><td>${d.total}</td></tr>`)}</tbody></table>`
    }
    <h3>Rate-limit refusals (429)</h3>
    ${
      (stats?.rateLimited ?? []).length === 0
        ? html`<p class="muted">None counted.</p>`
        : html`<table data-testid="rate-limited"><thead><tr><th>service</th><th>policy</th><th>limit</th><th>in the window</th><th>counted</th></tr></thead>
        <tbody>${stats.rateLimited.map((d) => html`<tr><td>${d.service}</td><td>${d.policy}</td><td>${d.limit}</td><td>${d.count}</td><td>${d.total}</td></tr>`)}</tbody></table>`
    }
  </section>`;
}

function Bench({ bench }) {
  const r = bench?.report;
  if (!r) return html`<section><h2>Bench</h2><p class="muted">No bench report (run npm run bench).</p></section>`;
  return html`<section data-testid="bench"><h2>Bench: last report</h2>
    <p>${r.file} · ${r.time ? new Date(r.time).toLocaleString() : ''} · ${r.environment.cores ?? '?'} cores · node ${r.environment.node ?? '?'}</p>
    <table><thead><tr><th>goal</th><th>limit</th><th>measured</th><th></th></tr></thead>
    <tbody>${r.goals.map((g) => html`<tr class=${g.met ? 'ok' : 'bad'}><td>${g.name}</td><td>${g.limit}</td><td>${g.measured}</td><td>${g.met ? 'met' : 'missed'}</td></tr>`)}</tbody></table>
    <table><thead><tr><th>scenario</th><th>path</th><th>max rps</th><th>p99 at max</th><th>p99 at fixed rate</th></tr></thead>
    <tbody>${r.scenarios.map((s) => html`<tr><td>${s.name}</td><td>${s.path}</td><td>${s.maxRps === null ? '–' : Math.round(s.maxRps)}</td><td>${us(s.p99Us)}</td><td>${us(s.fixedRateP99Us)}</td></tr>`)}</tbody></table>
    ${r.warnings.map((w) => html`<p class="muted">${w}</p>`)}
  </section>`;
}

function LoginRequired({ message }) {
  return html`<main class="login" data-testid="login-required"><h1>Trellis</h1>
    <p>This dashboard needs a login. Open the dashboard link that <code>trellis up</code> printed (it logs this browser in).</p>
    ${message ? html`<p class="muted">${message}</p>` : null}</main>`;
}

function App() {
  const [login, setLogin] = useState(null);
  const [error, setError] = useState(null);
  const onError = useCallback((err) => {
    if (err instanceof ApiError && err.status === 401) setLogin(err.message);
    else setError(err instanceof Error ? err.message : String(err));
  }, []);
  const [m, refresh] = usePoll(api.mesh, FAST_MS, onError);
  const [stats] = usePoll(api.stats, FAST_MS, onError);
  const [bench] = usePoll(api.bench, SLOW_MS, onError);
  if (login !== null) return html`<${LoginRequired} message=${login} />`;
  if (!m) return html`<p class="muted">Loading…</p>`;
  return html`<main>
    <header><h1>Trellis</h1><span class="muted">updated <span data-testid="updated">${time(stats?.at)}</span> · rates over ${stats?.windowS ?? '–'} s · ${stats?.proxiesRead ?? 0} proxies read${stats?.proxiesFailed?.length ? `, ${stats.proxiesFailed.length} did not answer` : ''}</span>
      <button class="link" onClick=${() => api.logout().then(() => setLogin('logged out'))}>Log out</button></header>
    ${error ? html`<p class="bad" data-testid="error" onClick=${() => setError(null)}>${error} (click to dismiss)</p>` : null}
    ${
      m.config.reloadFailed
        ? html`<section class="bad" data-testid="reload-failed"><b>The latest config reload failed</b>; the config loaded before stays in force:<ul>${m.config.reloadFailed.problems.map((p) => html`<li>${p.text}</li>`)}</ul></section>`
        : null
    }
    <section><h2>Topology</h2><div class="scroll"><${Topology} mesh=${m} stats=${stats} /></div></section>
    <${Services} mesh=${m} stats=${stats} />
    <${Routes} mesh=${m} stats=${stats} refresh=${refresh} onError=${onError} />
    <${Instances} mesh=${m} stats=${stats} />
    <${Policies} mesh=${m} stats=${stats} />
    <${Traces} onError=${onError} />
    <${Bench} bench=${bench} />
  </main>`;
}

async function main() {
  const root = document.getElementById('app');
  try {
    await loginFromFragment();
  } catch (err) {
    render(html`<${LoginRequired} message=${err instanceof Error ? err.message : String(err)} />`, root);
    return;
  }
  root.textContent = '';
  render(html`<${App} />`, root);
}

main();
