// prom-client's Registry, Counter and Gauge, loaded part by part: its index also loads
// the default-metrics collectors and, through them, the OpenTelemetry API, which cost a
// sidecar about 10 MB of resident memory against issue 13's 60 MB budget. Every module
// that makes metrics takes them from here, never `from 'prom-client'` (types only);
// test/proxy/sidecar-import-graph.test.ts fails when the index comes back.
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

const requireCjs = createRequire(import.meta.url);

export const Registry = requireCjs('prom-client/lib/registry') as typeof PromClient.Registry;
export const Counter = requireCjs('prom-client/lib/counter') as typeof PromClient.Counter;
export const Gauge = requireCjs('prom-client/lib/gauge') as typeof PromClient.Gauge;

export type Registry = PromClient.Registry;
export type Counter = PromClient.Counter<string>;
export type Gauge = PromClient.Gauge<string>;
