// The PromQL explorer: an expression, a time range, a graph of the range query and a table of
// the instant query. The expression and range live in the URL, so a view can be shared.

import { api, seriesName, fmt, el, table, errorBox } from './api.js';
import { drawMatrix } from './chart.js';

const RANGES = [['5m', 300], ['15m', 900], ['1h', 3600], ['6h', 21600], ['24h', 86400], ['7d', 604800]];
const DEFAULT = 'sum by (meeting_id) (meeting_active_users)';

export function queryPage(root, params) {
  const expr = el('textarea');
  expr.id = 'expr';
  expr.spellcheck = false;
  expr.value = params.get('expr') || DEFAULT;
  const span = el('select');
  span.id = 'range';
  for (const [name] of RANGES) span.append(new Option(name, name));
  span.value = params.get('range') || '1h';
  const run = el('button', 'primary', 'Execute');
  run.id = 'execute';
  const graphTab = el('button', 'active', 'Graph');
  const tableTab = el('button', '', 'Table');
  const tabs = el('div', 'row tabs');
  tabs.append(graphTab, tableTab);
  const out = el('div', 'card');
  out.id = 'result';
  const bar = el('div', 'row');
  bar.append(expr, span, run);
  root.append(bar, tabs, out);
  let view = params.get('view') === 'table' ? 'table' : 'graph';

  const execute = async () => {
    const q = expr.value.trim();
    window.history.replaceState(null, '', `#/query?${new URLSearchParams({ expr: q, range: span.value, view })}`);
    graphTab.classList.toggle('active', view === 'graph');
    tableTab.classList.toggle('active', view === 'table');
    out.replaceChildren(el('span', 'muted', 'running…'));
    out.dataset.state = 'loading';
    const t0 = performance.now();
    try {
      let shown;
      if (view === 'graph') {
        const seconds = RANGES.find(([n]) => n === span.value)[1];
        const end = Date.now() / 1000;
        const step = Math.max(1, Math.round(seconds / 240));
        const data = await api('/api/v1/query_range', { query: q, start: end - seconds, end, step });
        const box = el('div', 'chart');
        out.replaceChildren(box);
        drawMatrix(box, data.result, { height: 320 });
        shown = data.result.length;
      } else {
        const data = await api('/api/v1/query', { query: q });
        out.replaceChildren(instantTable(data));
        shown = Array.isArray(data.result) && data.resultType !== 'scalar' && data.resultType !== 'string' ? data.result.length : 1;
      }
      out.append(el('div', 'muted', `${shown} series · ${Math.round(performance.now() - t0)} ms`));
      out.dataset.state = shown > 0 ? 'ready' : 'empty';
    } catch (e) {
      out.replaceChildren(errorBox(e));
      out.dataset.state = 'error';
    }
  };
  run.onclick = execute;
  span.onchange = execute;
  graphTab.onclick = () => { view = 'graph'; execute(); };
  tableTab.onclick = () => { view = 'table'; execute(); };
  expr.onkeydown = (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      execute();
    }
  };
  execute();
  return () => {};
}

function instantTable(data) {
  if (data.resultType === 'scalar' || data.resultType === 'string') {
    return table(['value'], [[fmt(data.result[1])]], [0]);
  }
  const rows = data.result.map((s) => {
    const value = s.value ? fmt(s.value[1]) : `${s.values.length} samples`;
    return [el('span', 'mono', seriesName(s.metric)), value];
  });
  return table(['series', 'value'], rows, [1]);
}
