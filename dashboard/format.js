// Number formats the views share.
export const rps = (n) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
export const pct = (f) => (f === null || f === undefined ? '–' : `${(f * 100).toFixed(f >= 0.9995 ? 0 : 1)}%`);
export const ms = (n) => (n === null || n === undefined ? '–' : n >= 100 ? `${n.toFixed(0)} ms` : `${n.toFixed(1)} ms`);
export const us = (n) => (n === null || n === undefined ? '–' : n >= 1000 ? `${(n / 1000).toFixed(2)} ms` : `${n} µs`);
export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '–');
