// The web UI's entry: a hash router over three pages. Each page builds its own DOM under
// <main> and returns a function that stops its timers when another page is shown.

import { api } from './api.js';
import { queryPage } from './query.js';
import { meetingsPage } from './meetings.js';
import { clusterPage } from './cluster.js';

const PAGES = { query: queryPage, meetings: meetingsPage, cluster: clusterPage };
let stop = () => {};

function show() {
  const [path, search] = (window.location.hash.replace(/^#\/?/, '') || 'meetings').split('?');
  const name = PAGES[path] ? path : 'meetings';
  stop();
  const root = document.getElementById('page');
  root.replaceChildren();
  root.dataset.page = name;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === name);
  document.title = `Collaborate-Stream · ${name}`;
  stop = PAGES[name](root, new URLSearchParams(search || ''));
}

window.addEventListener('hashchange', show);
show();
api('/api/v1/status/buildinfo')
  .then((b) => { document.getElementById('node').textContent = `collabstream ${b.version}`; })
  .catch(() => {});
