// The live topology: services as boxes, calls as arrows labelled with the caller's
// measure of rate, success and p99 over the stats window. Laid out by dagre (left to
// right), drawn as SVG by Preact: every name is a text node, never markup.
import { h } from 'preact';
import { useMemo } from 'preact/hooks';
import htm from './vendor/htm.mjs';
import dagre from './vendor/dagre.mjs';
import { ms, pct, rps } from './format.js';

const html = htm.bind(h);
const NODE_W = 150;
const NODE_H = 46;

/** Nodes: every service, the callers that appear in the stats (the ingress), edges: the mesh's declared upstreams plus measured calls. */
export function graphOf(mesh, stats) {
  const nodes = new Map();
  const edges = new Map();
  for (const s of mesh.services) nodes.set(s.name, { name: s.name, kind: 'service', service: s });
  for (const s of mesh.services) {
    for (const u of s.upstreams) edges.set(`${s.name}\u0000${u.service}`, { source: s.name, destination: u.service, stats: null });
  }
  // Gateways (the ingress) lead to the public services, before any traffic shows it.
  for (const p of mesh.proxies) {
    if (p.kind !== 'gateway' || !p.connected) continue;
    nodes.set(p.service, { name: p.service, kind: 'gateway' });
    for (const s of mesh.services) if (s.public) edges.set(`${p.service}\u0000${s.name}`, { source: p.service, destination: s.name, stats: null });
  }
  for (const e of stats?.edges ?? []) {
    if (!nodes.has(e.source)) nodes.set(e.source, { name: e.source, kind: 'gateway' });
    if (!nodes.has(e.destination)) nodes.set(e.destination, { name: e.destination, kind: 'unknown' });
    edges.set(`${e.source}\u0000${e.destination}`, { source: e.source, destination: e.destination, stats: e });
  }
  return { nodes: [...nodes.values()], edges: [...edges.values()].filter((e) => nodes.has(e.source) && nodes.has(e.destination)) };
}

function layout(nodes, edges) {
  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: 'LR', nodesep: 40, ranksep: 170, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.name, { width: NODE_W, height: NODE_H });
  for (const e of edges) if (e.source !== e.destination) g.setEdge(e.source, e.destination, { width: 150, height: 34, labelpos: 'c' });
  dagre.layout(g);
  return g;
}

/** An HTTP edge by its requests; a TCP edge (no requests) by its connections and bytes. */
function edgeText(s) {
  if (!s) return 'no traffic';
  if (s.requests === 0 && s.total === 0 && (s.connectionsPerS > 0 || s.bytesPerS > 0))
    return `${rps(s.connectionsPerS)} conn/s · ${Math.round(s.bytesPerS)} B/s`;
  return `${rps(s.rps)} rps · ${pct(s.successRate)}`;
}

function health(service) {
  const inst = service?.instances ?? [];
  if (inst.length === 0) return 'none';
  if (inst.every((i) => i.health.status === 'healthy')) return 'healthy';
  if (inst.some((i) => i.health.status === 'unhealthy')) return 'unhealthy';
  return 'unknown';
}

export function Topology({ mesh, stats, onSelect }) {
  const { nodes, edges } = graphOf(mesh, stats);
  // Layout depends only on the shape, not the numbers: recomputed when a node or edge comes or goes.
  const shape = JSON.stringify([nodes.map((n) => n.name), edges.map((e) => [e.source, e.destination])]);
  const g = useMemo(() => layout(nodes, edges), [shape]);
  const graph = g.graph();
  const width = Math.max(graph.width ?? 300, 300);
  const height = Math.max(graph.height ?? 120, 120);
  return html`<svg class="topology" data-testid="topology" viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height} role="img" aria-label="service topology">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" /></marker></defs>
    ${edges.map((e) => {
      const ge = g.edge(e.source, e.destination);
      if (!ge) return null;
      const d = ge.points.map((p, i) => `${i === 0 ? 'M' : 'L'} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(' ');
      const s = e.stats;
      const live = s && s.rps > 0;
      const bad = s && s.successRate !== null && s.successRate < 0.99;
      return html`<g class=${`edge ${live ? 'live' : 'idle'} ${bad ? 'bad' : ''}`} data-testid="edge" data-edge=${`${e.source}->${e.destination}`}>
        <path d=${d} marker-end="url(#arrow)" />
        <text x=${ge.x} y=${ge.y - 4} text-anchor="middle" class="edge-label" data-testid="edge-rate">${edgeText(s)}</text>
        <text x=${ge.x} y=${ge.y + 10} text-anchor="middle" class="edge-label sub" data-testid="edge-p99">${s && s.p99Ms !== null ? `p99 ${ms(s.p99Ms)}` : ''}</text>
        <title>${e.source} → ${e.destination}${s ? `: ${s.total} requests counted` : ''}</title>
      </g>`;
    })}
    ${nodes.map((n) => {
      const gn = g.node(n.name);
      return html`<g class=${`node ${n.kind} ${health(n.service)}`} data-testid="node" data-node=${n.name} transform=${`translate(${gn.x - NODE_W / 2} ${gn.y - NODE_H / 2})`} onClick=${() => onSelect?.(n.name)}>
        <rect width=${NODE_W} height=${NODE_H} rx="8" />
        <text x=${NODE_W / 2} y="20" text-anchor="middle" class="node-name">${n.name}</text>
        <text x=${NODE_W / 2} y="36" text-anchor="middle" class="node-sub">${n.service ? `${n.service.instances.length} instance(s) · ${n.service.protocol ?? 'detect'}` : n.kind}</text>
      </g>`;
    })}
  </svg>`;
}
