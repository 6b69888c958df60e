// A service's golden chart: rate, success and p99 over the last reads, drawn by uPlot.
import { h } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import htm from './vendor/htm.mjs';
import uPlot from './vendor/uplot.mjs';

const html = htm.bind(h);

function columns(history) {
  const t = [];
  const r = [];
  const s = [];
  const p = [];
  for (const [at, rate, success, p99] of history) {
    t.push(at);
    r.push(rate);
    s.push(success === null ? null : success * 100);
    p.push(p99);
  }
  return [t, r, s, p];
}

export function GoldenChart({ history, width = 420 }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const opts = {
      width,
      height: 160,
      legend: { show: true },
      scales: { x: { time: true }, pct: { range: [0, 100] } },
      axes: [{}, { label: 'rps', scale: 'y' }, { side: 1, scale: 'ms', label: 'p99 ms', grid: { show: false } }],
      series: [
        {},
        { label: 'rps', scale: 'y', stroke: '#2f6fdf', width: 2 },
        { label: 'success %', scale: 'pct', stroke: '#2a9d4b', width: 1 },
        { label: 'p99 ms', scale: 'ms', stroke: '#d9822b', width: 1 },
      ],
    };
    plot.current = new uPlot(opts, columns(history), el.current);
    return () => plot.current?.destroy();
  }, [width]);
  useEffect(() => {
    plot.current?.setData(columns(history));
  }, [history]);
  return html`<div class="chart" ref=${el}></div>`;
}
