// The shop page: asks the API for products, draws them, and keeps a tally of which
// backend version answered so the mesh's traffic split is visible.
const config = window.SHOP_CONFIG ?? { mode: 'forward', apiBase: '' };
const $ = (id) => document.getElementById(id);
const TALLY_KEY = 'trellis-shop-tally';

let tally = loadTally();

function loadTally() {
  try {
    return { v1: 0, v2: 0, cache: 0, postgres: 0, errors: 0, ...JSON.parse(localStorage.getItem(TALLY_KEY) ?? '{}') };
  } catch {
    return { v1: 0, v2: 0, cache: 0, postgres: 0, errors: 0 };
  }
}

function saveTally() {
  try {
    localStorage.setItem(TALLY_KEY, JSON.stringify(tally));
  } catch {
    // private mode: the tally lives until the page reloads
  }
}

const money = new Intl.NumberFormat('en-GB', { style: 'currency', currency: 'EUR' });
const price = (cents) => money.format(cents / 100);

/** One call to the API: { ok, status, body, ms }. */
async function fetchProducts() {
  const started = performance.now();
  const response = await fetch(`${config.apiBase}/api/products`, { cache: 'no-store' });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status} without a JSON body` }));
  return { ok: response.ok, status: response.status, body, ms: Math.round(performance.now() - started) };
}

function count(result) {
  if (!result.ok) {
    tally.errors++;
    return;
  }
  const { version, source } = result.body;
  if (version === 'v1' || version === 'v2') tally[version]++;
  if (source === 'cache' || source === 'postgres') tally[source]++;
}

function showTally() {
  const answered = tally.v1 + tally.v2;
  const share = (n) => (answered ? Math.round((100 * n) / answered) : 0);
  $('bar-v1').style.width = `${share(tally.v1)}%`;
  $('bar-v2').style.width = `${answered ? 100 - share(tally.v1) : 0}%`;
  $('tally-text').textContent =
    answered || tally.errors
      ? `${answered} answers: v1 ${tally.v1} (${share(tally.v1)}%) · v2 ${tally.v2} (${share(tally.v2)}%)` +
        ` · from cache ${tally.cache}, from postgres ${tally.postgres}` +
        (tally.errors ? ` · ${tally.errors} errors` : '')
      : 'No answers yet.';
}

function showAnswer(result) {
  const { body } = result;
  const error = $('error');
  if (!result.ok) {
    error.hidden = false;
    const what = `${body.error ?? 'error'}${body.detail ? ` (${body.detail})` : ''}`;
    error.textContent = result.status ? `The API answered ${result.status}: ${what}` : `No answer: ${what}`;
    if (!body.version) return;
  } else {
    error.hidden = true;
  }
  document.documentElement.className = `version-${body.version ?? 'none'}`;
  $('version').textContent = body.version ?? '?';
  $('source').textContent = body.source ?? (result.ok ? '?' : 'error');
  $('source').dataset.source = body.source ?? 'error';
  $('meta').textContent = `instance ${body.instance ?? '?'} · ${result.ms} ms${body.cache === 'off' ? ' · no cache in this topology' : ''}`;
  if (result.ok) drawProducts(body.products ?? []);
}

function drawProducts(products) {
  const grid = $('products');
  grid.replaceChildren(
    ...products.map((product) => {
      const card = document.createElement('article');
      card.className = 'card';
      card.style.setProperty('--hue', String((product.id * 47) % 360));

      const tile = document.createElement('div');
      tile.className = 'tile';
      tile.textContent = product.name.replace(/[^A-Za-z]/g, '').slice(0, 1);
      card.append(tile);

      if (product.badge) {
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = product.badge;
        card.append(badge);
      }

      const name = document.createElement('h2');
      name.textContent = product.name;
      const description = document.createElement('p');
      description.className = 'description';
      description.textContent = product.description ?? '';

      const cost = document.createElement('p');
      cost.className = 'price';
      if (product.original_price_cents) {
        const was = document.createElement('s');
        was.textContent = price(product.original_price_cents);
        const off = document.createElement('span');
        off.className = 'off';
        off.textContent = `−${product.discount_percent}%`;
        cost.append(was, ' ', price(product.price_cents), ' ', off);
      } else {
        cost.textContent = price(product.price_cents);
      }
      card.append(name, description, cost);
      return card;
    }),
  );
}

async function refresh(times = 1) {
  for (const button of document.querySelectorAll('button')) button.disabled = true;
  try {
    let last;
    for (let i = 0; i < times; i++) {
      try {
        last = await fetchProducts();
      } catch (error) {
        last = { ok: false, status: 0, body: { error: `cannot reach the API at ${config.apiBase || location.origin}`, detail: error.message }, ms: 0 };
      }
      count(last);
    }
    saveTally();
    showTally();
    showAnswer(last);
  } finally {
    for (const button of document.querySelectorAll('button')) button.disabled = false;
  }
}

$('route').textContent =
  config.mode === 'direct'
    ? `topology 1: this page calls the backend directly at ${config.apiBase || '(no public URL)'}`
    : 'topology 2: this page calls /api on the frontend, which forwards to the backend through its sidecar';
$('refresh').addEventListener('click', () => refresh(1));
$('burst').addEventListener('click', () => refresh(20));
$('reset').addEventListener('click', () => {
  tally = { v1: 0, v2: 0, cache: 0, postgres: 0, errors: 0 };
  saveTally();
  showTally();
});
showTally();
// `?refresh=50` asks 50 times on load: the traffic split at a glance.
refresh(Math.min(Math.max(Number(new URLSearchParams(location.search).get('refresh')) || 1, 1), 500));
