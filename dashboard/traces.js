// Recent traces and a trace's waterfall: one bar per span, placed by its start and
// length within the trace, indented by depth. Span names and attributes come from
// requests and apps: shown as text only.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from './vendor/htm.mjs';
import { api } from './api.js';
import { ms, time } from './format.js';

const html = htm.bind(h);

/** Spans in tree order (parents before children), each with its depth. */
export function ordered(spans) {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parentSpanId && ids.has(s.parentSpanId)) children.set(s.parentSpanId, [...(children.get(s.parentSpanId) ?? []), s]);
    else roots.push(s);
  }
  const out = [];
  const walk = (s, depth) => {
    if (out.length >= spans.length) return;
    out.push({ span: s, depth });
    for (const c of (children.get(s.spanId) ?? []).sort((a, b) => a.startMs - b.startMs)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.startMs - b.startMs)) walk(r, 0);
  return out;
}

function Waterfall({ trace }) {
  const start = Math.min(...trace.spans.map((s) => s.startMs));
  const end = Math.max(...trace.spans.map((s) => s.startMs + s.durationMs));
  const total = Math.max(end - start, 0.001);
  return html`<div class="waterfall" data-testid="waterfall">
    ${ordered(trace.spans).map(
      ({ span, depth }) => html`<div class=${`span-row ${span.error ? 'bad' : ''}`} data-testid="span">
        <div class="span-name" style=${{ paddingLeft: `${depth * 14}px` }} title=${Object.entries(span.attributes)
          .map(([k, v]) => `${k}=${v}`)
          .join('\n')}>
          <b>${span.service}</b> ${span.name} <span class="muted">${span.kind}</span></div>
        <div class="span-track"><div class="span-bar" style=${{ left: `${((span.startMs - start) / total) * 100}%`, width: `${Math.max((span.durationMs / total) * 100, 0.5)}%` }}></div></div>
        <div class="span-ms">${ms(span.durationMs)}</div>
      </div>`,
    )}
  </div>`;
}

export function Traces({ onError }) {
  const [list, setList] = useState(null);
  const [open, setOpen] = useState(null);
  useEffect(() => {
    let stopped = false;
    let timer;
    const tick = async () => {
      try {
        const l = await api.traces();
        if (!stopped) setList(l);
      } catch (err) {
        if (!stopped) onError(err);
      }
      if (!stopped) timer = setTimeout(tick, 10_000);
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  const show = async (id) => {
    try {
      setOpen(await api.trace(id));
    } catch (err) {
      onError(err);
    }
  };
  return html`<section data-testid="traces"><h2>Recent traces</h2>
    ${
      !list || list.traces.length === 0
        ? html`<p class="muted" data-testid="no-traces">No traces yet${list && !list.available ? ' (the control plane keeps no traces)' : ''}.</p>`
        : html`<table><thead><tr><th>when</th><th>root</th><th>duration</th><th>spans</th></tr></thead>
        <tbody>${list.traces.map(
          (t) => html`<tr class=${t.error ? 'bad' : ''} data-testid="trace" onClick=${() => show(t.traceId)}>
            <td>${time(new Date(t.startMs).toISOString())}</td><td><b>${t.rootService}</b> ${t.rootName}</td><td>${ms(t.durationMs)}</td><td>${t.spanCount}</td></tr>`,
        )}</tbody></table>`
    }
    ${open ? html`<h3>Trace <code>${open.traceId}</code></h3><${Waterfall} trace=${open} />` : null}
  </section>`;
}
