import { readFileSync } from 'node:fs';
const prof = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const perReq = Number(process.argv[3] ?? 1);
const by = new Map();
let total = 0;
const walk = (n, stack) => {
  const cf = n.callFrame;
  const name = `${cf.functionName || '(anon)'} ${cf.url.replace(/.*\/(dist|lib)\//, '')}:${cf.lineNumber + 1}`;
  const self = n.selfSize;
  total += self;
  if (self) by.set(name, (by.get(name) ?? 0) + self);
  for (const c of n.children) walk(c, [...stack, name]);
};
walk(prof.head, []);
console.log('total bytes', total, 'per req', (total / perReq).toFixed(0));
for (const [k, v] of [...by].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[4] ?? 30))) console.log((v / perReq).toFixed(0).padStart(7), k);
