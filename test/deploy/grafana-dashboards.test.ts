// The Grafana dashboards shipped in deploy/grafana: four (mesh overview, service, route,
// proxy), provisioned by the files beside them, every panel on the provisioned
// datasource, every query valid PromQL by Prometheus's own grammar, and every variable a
// query uses defined by its dashboard. (e2e/prometheus-golden-metrics runs each query on
// a loaded mesh: none comes back empty.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { dashboards, panelQueries, promqlErrors, substitute, variablesOf } from '../helpers/dashboards.js';
import { REPO } from '../helpers/mesh-run.js';

const PROVISIONING = join(REPO, 'deploy', 'grafana', 'provisioning');

test('four dashboards, with distinct uids, provisioned from files', () => {
  const all = dashboards();
  assert.deepEqual(
    all.map((d) => d.file),
    ['mesh-overview.json', 'proxy.json', 'route.json', 'service.json'],
  );
  assert.equal(new Set(all.map((d) => d.uid)).size, all.length);
  const provider = readFileSync(join(PROVISIONING, 'dashboards', 'trellis.yaml'), 'utf8');
  assert.match(provider, /type: file/);
  const datasource = readFileSync(join(PROVISIONING, 'datasources', 'trellis.yaml'), 'utf8');
  assert.match(datasource, /uid: trellis-prometheus/);
  assert.match(datasource, /type: prometheus/);
});

test('every panel queries the provisioned Prometheus datasource', () => {
  for (const d of dashboards()) {
    for (const p of d.panels) {
      assert.equal(p.datasource?.uid, 'trellis-prometheus', `${d.file}: ${p.title}`);
      assert.ok((p.targets ?? []).length > 0, `${d.file}: ${p.title} has a query`);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, 'trellis-prometheus', `${d.file}: ${p.title} ${t.refId}`);
    }
  }
});

test("every panel query is PromQL by Prometheus's grammar, once Grafana has put its variables in", () => {
  const queries = panelQueries();
  assert.ok(queries.length >= 30, `${queries.length} queries`);
  for (const q of queries) {
    const expr = substitute(q.expr, { service: 'api', route: 'default/api-routes/rule/0', instance: 'client-0' });
    assert.deepEqual(promqlErrors(expr), [], `${q.dashboard}: ${q.panel}: ${expr}`);
  }
});

test('the grammar check finds broken PromQL (so the test above can fail)', () => {
  assert.notDeepEqual(promqlErrors('sum by (route (rate(x[5m]))'), []);
  assert.notDeepEqual(promqlErrors('rate(x{a="b"}[5m]'), []);
  assert.deepEqual(promqlErrors('sum by (route) (rate(x{a="b"}[5m]))'), []);
});

test('every variable a query uses is defined by its dashboard', () => {
  for (const d of dashboards()) {
    const defined = new Set(d.templating.list.map((v) => v.name));
    for (const p of d.panels)
      for (const t of p.targets ?? []) for (const v of variablesOf(t.expr)) assert.ok(defined.has(v), `${d.file}: ${p.title} uses $${v}`);
  }
});
