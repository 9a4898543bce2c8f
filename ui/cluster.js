// The cluster page: members, the leader, and each member's log, commit and apply indexes as
// that member reports them (GET /api/v1/status/cluster asks every member), refreshed every two
// seconds.

import { api, fmt, el, table, errorBox, stat } from './api.js';

const REFRESH_MS = 2000;

export function clusterPage(root) {
  const summary = el('div', 'stats');
  const problems = el('div');
  const members = el('div', 'card');
  members.id = 'members';
  root.append(problems, summary, members);

  async function refresh() {
    try {
      const c = await api('/api/v1/status/cluster');
      const leader = c.members.find((m) => m.id === c.leader_id);
      const up = c.members.filter((m) => m.reachable).length;
      summary.replaceChildren(
        stat('Leader', c.leader_id === null || c.leader_id === undefined ? 'none' : `node ${c.leader_id}`),
        stat('Term', fmt(c.term)),
        stat('Members up', `${up} of ${c.members.length}`),
        stat('Committed index', fmt(leader ? leader.committed_index : c.committed_index)),
      );
      const rows = c.members.map((m) => [
        `node ${m.id}${m.id === c.node_id ? ' (this node)' : ''}`,
        el('span', 'mono', m.addr),
        el('span', `badge ${m.role}`, m.role),
        m.reachable ? el('span', `badge ${m.state === 'leader' ? 'leader' : 'follower'}`, m.state) : el('span', 'badge down', 'unreachable'),
        fmt(m.term),
        fmt(m.last_log_index),
        fmt(m.committed_index),
        fmt(m.applied_index),
        fmt(m.snapshot_index),
        fmt(m.lag),
        m.reachable ? '' : el('span', 'muted', m.error || ''),
      ]);
      members.replaceChildren(table(
        ['member', 'gRPC address', 'role', 'state', 'term', 'last log', 'committed', 'applied', 'snapshot', 'lag (leader’s view)', ''],
        rows,
        [4, 5, 6, 7, 8, 9],
      ));
      members.dataset.state = leader ? 'ready' : 'no-leader';
      problems.replaceChildren();
    } catch (e) {
      problems.replaceChildren(errorBox(e));
      members.dataset.state = 'error';
    }
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
