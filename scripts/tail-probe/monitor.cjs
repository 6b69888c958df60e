// Preloaded into a Trellis proxy by probe.mjs (NODE_OPTIONS=--require): counts GC pauses
// (a PerformanceObserver) and, with TAIL_MON_HOOKS=1, event-loop callbacks over 0.5 ms by
// the resource that ran them (async_hooks; a timer is named by its callback's source),
// with the CPU each used (so time the kernel did not run the proxy is told apart). Writes
// its cumulative counts to TAIL_MON_DIR/<role>-<pid>.json on SIGUSR2; with
// TAIL_MON_HEAPPROF=1 the first SIGUSR2 starts an allocation sampling profile and the
// second writes it. Diagnostic only: the hooks cost CPU on every callback.
const { PerformanceObserver, constants } = require('node:perf_hooks');
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.TAIL_MON_DIR;
if (dir && process.argv.some((a) => a === 'proxy')) {
  const role = process.argv.includes('--app') ? 'inbound' : 'outbound';
  const file = path.join(dir, `${role}-${process.pid}.json`);
  const kinds = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb' };
  const st = { role, pid: process.pid, gc: {}, gcOver05: 0, gcOver1: 0, gcOver2: 0, gcMs: 0, gcMax: 0, long: [], cbs: 0, cbOver05: 0, cbOver1: 0, cbOver2: 0, cbMs: 0, cbByType: {}, t: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = kinds[e.detail?.kind ?? e.kind] ?? String(e.detail?.kind);
      const g = (st.gc[k] ??= { n: 0, ms: 0, over05: 0, max: 0 });
      g.n++; g.ms += e.duration; if (e.duration > 0.5) g.over05++; if (e.duration > g.max) g.max = e.duration;
      st.gcMs += e.duration;
      if (e.duration > 0.5) st.gcOver05++;
      if (e.duration > 1) st.gcOver1++;
      if (e.duration > 2) st.gcOver2++;
      if (e.duration > st.gcMax) st.gcMax = e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  if (process.env.TAIL_MON_HOOKS === '1') {
    const ah = require('node:async_hooks');
    const types = new Map();
    let depth = 0, t0 = 0n, c0 = 0, curType = '';
    ah.createHook({
      init(id, type, trig, res) { if (type === 'Timeout') { const f = res._onTimeout; types.set(id, `Timeout:${f?.name || String(f).slice(0, 70).replace(/\s+/g, ' ')}:${res._idleTimeout}`); } else types.set(id, type); },
      before(id) { if (depth++ === 0) { t0 = process.hrtime.bigint(); const c = process.cpuUsage(); c0 = c.user + c.system; curType = types.get(id) ?? '?'; } },
      after(id) { if (--depth === 0) { const d = Number(process.hrtime.bigint() - t0) / 1e6; st.cbs++; st.cbMs += d; if (d > 0.5) { const c = process.cpuUsage(); const cd = (c.user + c.system - c0) / 1000; st.cbOver05++; if (cd > 0.5) st.cpuOver05 = (st.cpuOver05 ?? 0) + 1; const b = (st.cbByType[curType] ??= { n: 0, ms: 0, cpu: 0, cpuN: 0, max: 0 }); b.n++; b.ms += d; b.cpu += cd; if (cd > 0.5) b.cpuN++; if (d > b.max) b.max = d; } if (d > 1) st.cbOver1++; if (d > 2) st.cbOver2++; } if (depth < 0) depth = 0; },
      destroy(id) { types.delete(id); },
      promiseResolve() {},
    }).enable();
  }
  const dump = () => { st.t = Date.now(); st.cpu = process.cpuUsage(); const ru = process.resourceUsage(); st.vcsw = ru.voluntaryContextSwitches; st.ivcsw = ru.involuntaryContextSwitches; st.rss = process.memoryUsage.rss(); try { fs.writeFileSync(file, JSON.stringify(st)); } catch {} };
  let usr = 0;
  const insp = process.env.TAIL_MON_HEAPPROF === '1' ? new (require('node:inspector').Session)() : undefined;
  if (insp) insp.connect();
  process.on('SIGUSR2', () => {
    usr++;
    if (insp && usr === 1) insp.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
    if (insp && usr === 2) insp.post('HeapProfiler.stopSampling', (err, r) => { if (!err) fs.writeFileSync(path.join(dir, `${role}-${process.pid}.heapprofile`), JSON.stringify(r.profile)); else fs.writeFileSync(path.join(dir, 'err'), String(err)); });
    dump();
  });
  dump();
  process.on('exit', dump);
}
