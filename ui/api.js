// The node's HTTP API as the pages use it: Prometheus-style JSON, errors thrown with the
// node's own message so a page can show it.

export async function api(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const r = await fetch(url);
  let body;
  try {
    body = await r.json();
  } catch {
    throw new Error(`${path}: HTTP ${r.status}, not JSON`);
  }
  if (!r.ok || body.status !== 'success') {
    throw new Error(body.error ? `${body.errorType || 'error'}: ${body.error}` : `${path}: HTTP ${r.status}`);
  }
  return body.data;
}

/** An instant query's vector (throws on any other result type). */
export async function instant(query) {
  const data = await api('/api/v1/query', { query });
  if (data.resultType === 'scalar') return [{ metric: {}, value: data.result }];
  if (data.resultType !== 'vector') throw new Error(`expected an instant vector, got ${data.resultType}`);
  return data.result;
}

/**
 * A range query over the last `seconds`, about `points` points per series. The end is rounded
 * down to a whole step, so that queries of one refresh share their timestamps (and can be drawn
 * on one chart).
 */
export async function range(query, seconds, points = 240) {
  const step = Math.max(1, Math.round(seconds / points));
  const end = Math.floor(Date.now() / 1000 / step) * step;
  const data = await api('/api/v1/query_range', { query, start: end - seconds, end, step });
  return data.result;
}

/** A series' labels as Prometheus prints them: `name{a="1", b="2"}`. */
export function seriesName(metric) {
  const { __name__: name = '', ...rest } = metric;
  const labels = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(', ');
  return labels ? `${name}{${labels}}` : name || '{}';
}

/** A number as a person reads it: few digits, no float noise. */
export function fmt(v) {
  const n = typeof v === 'string' ? Number(v) : v;
  if (v === undefined || v === null || Number.isNaN(n)) return '–';
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en');
  return n.toLocaleString('en', { maximumFractionDigits: Math.abs(n) < 1 ? 3 : 1 });
}

/** Creates an element with a class and text (text only: data never becomes HTML). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A table of `rows` (arrays of strings or elements) under `head`; `num` marks numeric columns. */
export function table(head, rows, num = []) {
  const t = el('table');
  const tr = el('tr');
  head.forEach((h, i) => tr.append(el('th', num.includes(i) ? 'num' : '', h)));
  t.append(el('thead'));
  t.tHead.append(tr);
  const body = el('tbody');
  for (const row of rows) {
    const r = el('tr');
    row.forEach((c, i) => {
      const td = el('td', num.includes(i) ? 'num' : '');
      if (c instanceof Node) td.append(c);
      else td.textContent = c;
      r.append(td);
    });
    body.append(r);
  }
  t.append(body);
  return t;
}

/** A card with a name and a big value (text, or an element such as a row of badges). */
export function stat(name, value) {
  const card = el('div', 'card stat');
  const v = value instanceof Node ? value : el('div', 'value', value);
  v.classList.add('value');
  card.append(el('div', 'muted', name), v);
  return card;
}

export function errorBox(e) {
  return el('div', 'error', e instanceof Error ? e.message : String(e));
}
