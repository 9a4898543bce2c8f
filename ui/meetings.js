// The live meetings view (the origin project's Streamlit dashboard): the meetings pack's
// series, refreshed every five seconds. A row picks one meeting for the charts.

import { instant, range, fmt, el, table, errorBox, stat } from './api.js';
import { drawMatrix } from './chart.js';

const REFRESH_MS = 5000;
const WINDOW_S = 900;
const COLUMNS = [
  ['active users', 'meeting_active_users'],
  ['messages/s', 'meeting_message_rate'],
  ['avg latency ms', 'meeting_avg_latency_ms'],
  ['p95 latency ms', 'meeting_p95_latency_ms'],
  ['health score', 'meeting_health_score'],
  ['churn', 'meeting_churn_rate'],
  ['engagement', 'meeting_engagement_score'],
];

export function meetingsPage(root, params) {
  let selected = params.get('meeting') || '';
  const stats = el('div', 'stats');
  const pick = el('select');
  pick.id = 'meeting';
  const head = el('div', 'row');
  head.append(el('span', 'muted', 'Meeting'), pick, el('span', 'muted', `live, every ${REFRESH_MS / 1000} s; charts over the last ${WINDOW_S / 60} minutes`));
  const problems = el('div');
  const list = el('div', 'card');
  list.id = 'meetings';
  const charts = el('div', 'grid');
  root.append(head, problems, stats, list, charts);
  const chartBoxes = {};
  for (const name of ['Active users', 'Message rate', 'Latency (avg and p95, ms)', 'Health score', 'Churn rate', 'Engagement score']) {
    const card = el('div', 'card');
    const box = el('div', 'chart');
    card.append(el('h3', '', name), box);
    charts.append(card);
    chartBoxes[name] = box;
  }
  // A refresh that started before the latest one (or before a new pick) is dropped when it
  // answers: what it shows would be out of date.
  let generation = 0;
  pick.onchange = () => {
    selected = pick.value;
    list.dataset.state = 'loading';
    window.history.replaceState(null, '', selected ? `#/meetings?meeting=${encodeURIComponent(selected)}` : '#/meetings');
    refresh();
  };

  const matcher = () => (selected ? `{meeting_id="${selected.replace(/["\\]/g, '\\$&')}"}` : '');
  const top = (q) => (selected ? q : `topk(10, ${q})`);
  const byMeeting = (m) => m.meeting_id || '';

  async function refresh() {
    const gen = ++generation;
    try {
      const m = matcher();
      const [columns, health, summary] = await Promise.all([
        Promise.all(COLUMNS.map(([, metric]) => instant(metric))),
        instant('meeting_health == 1'),
        Promise.all([
          instant(`sum(meeting_active_users${m})`),
          instant(`count(meeting_active_users${m})`),
          instant(`avg(meeting_engagement_score${m})`),
          instant(`avg(meeting_p95_latency_ms${m})`),
        ]),
      ]);
      if (gen !== generation) return;
      const byId = new Map();
      columns.forEach((vector, i) => {
        for (const s of vector) {
          const id = byMeeting(s.metric);
          if (!byId.has(id)) byId.set(id, {});
          byId.get(id)[i] = s.value[1];
        }
      });
      const status = new Map(health.map((s) => [byMeeting(s.metric), s.metric.status]));
      const ids = [...byId.keys()].filter(Boolean).sort();
      const options = [''].concat(ids);
      if (pick.options.length !== options.length || options.some((o, i) => pick.options[i].value !== o)) {
        pick.replaceChildren(...options.map((o) => new Option(o || 'All meetings', o)));
      }
      pick.value = selected;
      const one = (v) => fmt(v[0] ? v[0].value[1] : undefined);
      stats.replaceChildren(
        stat('Active users', one(summary[0])),
        stat('Meetings reporting', one(summary[1])),
        stat('Average engagement', one(summary[2])),
        stat('Average p95 latency ms', one(summary[3])),
        stat('Health', healthCounts(status, selected)),
      );
      const rows = ids.filter((id) => !selected || id === selected).map((id) => {
        const v = byId.get(id);
        const s = status.get(id);
        return [id, s ? el('span', `badge ${s}`, s) : '–'].concat(COLUMNS.map((_, i) => fmt(v[i])));
      });
      const t = table(['meeting', 'health'].concat(COLUMNS.map(([n]) => n)), rows, [2, 3, 4, 5, 6, 7, 8]);
      [...t.tBodies[0].rows].forEach((tr, i) => {
        tr.className = 'clickable' + (rows[i][0] === selected ? ' selected' : '');
        tr.onclick = () => { pick.value = rows[i][0] === selected ? '' : rows[i][0]; pick.onchange(); };
      });
      list.replaceChildren(rows.length ? t : el('span', 'muted', 'no meeting has reported yet: send events (collabstream produce) or run collabstream demo'));
      list.dataset.state = rows.length ? 'ready' : 'empty';
      const [users, rate, avg, p95, score, churn, engagement] = await Promise.all([
        range(top(`meeting_active_users${m}`), WINDOW_S),
        range(top(`meeting_message_rate${m}`), WINDOW_S),
        range(selected ? `meeting_avg_latency_ms${m}` : 'avg(meeting_avg_latency_ms)', WINDOW_S),
        range(selected ? `meeting_p95_latency_ms${m}` : 'avg(meeting_p95_latency_ms)', WINDOW_S),
        range(top(`meeting_health_score${m}`), WINDOW_S),
        range(top(`meeting_churn_rate${m}`), WINDOW_S),
        range(top(`meeting_engagement_score${m}`), WINDOW_S),
      ]);
      if (gen !== generation) return;
      const label = (metric) => metric.meeting_id || metric.__name__ || 'all meetings';
      drawMatrix(chartBoxes['Active users'], users, { label });
      drawMatrix(chartBoxes['Message rate'], rate, { label });
      const latency = avg.map((s) => ({ ...s, metric: { __name__: 'average' } })).concat(p95.map((s) => ({ ...s, metric: { __name__: 'p95' } })));
      drawMatrix(chartBoxes['Latency (avg and p95, ms)'], latency, { label });
      drawMatrix(chartBoxes['Health score'], score, { label });
      drawMatrix(chartBoxes['Churn rate'], churn, { label });
      drawMatrix(chartBoxes['Engagement score'], engagement, { label });
      problems.replaceChildren();
    } catch (e) {
      if (gen !== generation) return;
      problems.replaceChildren(errorBox(e));
      list.dataset.state = 'error';
    }
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

function healthCounts(status, selected) {
  const counts = { good: 0, fair: 0, poor: 0 };
  for (const [id, s] of status) if (!selected || id === selected) counts[s] = (counts[s] || 0) + 1;
  const box = el('div');
  for (const [s, n] of Object.entries(counts)) {
    const b = el('span', `badge ${s}`, `${n} ${s}`);
    b.style.marginRight = '4px';
    box.append(b);
  }
  return box;
}
