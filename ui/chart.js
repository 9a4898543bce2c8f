// Time-series charts: a range query's matrix drawn with uPlot (loaded by index.html from the
// npm package the binary embeds).

import { seriesName } from './api.js';

const COLORS = ['#2f6fd6', '#e4572e', '#29a37a', '#a05cd8', '#f0a202', '#1b998b', '#c83e7d', '#6c757d', '#3d5a80', '#8ab17d'];

/**
 * Draws `result` (a matrix) into `box`, replacing what was there. Series are aligned on the
 * union of their timestamps; a missing point is a gap, as Prometheus draws it.
 */
export function drawMatrix(box, result, { height = 240, label = seriesName } = {}) {
  box.replaceChildren();
  if (!result.length) {
    box.textContent = 'no data in this range';
    return null;
  }
  const times = [...new Set(result.flatMap((s) => s.values.map(([t]) => t)))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const data = [times];
  for (const s of result) {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of s.values) ys[at.get(t)] = Number(v);
    data.push(ys);
  }
  const series = [{}].concat(result.map((s, i) => ({
    label: label(s.metric),
    stroke: COLORS[i % COLORS.length],
    width: 1.5,
    spanGaps: false,
  })));
  const width = Math.max(300, box.clientWidth || box.parentElement.clientWidth - 24);
  // eslint-disable-next-line no-undef
  return new uPlot({ width, height, series, legend: { live: false }, scales: { x: { time: true } } }, data, box);
}
