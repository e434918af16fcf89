// Small SVG charts for the operations console: time series lines, horizontal gauges and bars with limits.
// Each returns markup (presentation attributes only: the page's CSP forbids inline styles) with a text
// alternative, so a screen reader hears what the picture shows.
import { escapeHTML as h } from './api.js';

export const PALETTE = ['#0b5f8a', '#c0392b', '#2e8b57', '#8e44ad', '#d35400', '#16a085', '#7f8c8d', '#b8860b', '#2c3e50', '#e84393'];

export function colour(index) {
  return PALETTE[index % PALETTE.length];
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

// series: [{ name, points: [[unix seconds, number|NaN]], colour? }]; a NaN (no traffic, no data) breaks the line.
export function lineChart({ series, start, end, format = (v) => String(v), label, limits = [], width = 640, height = 200 }) {
  const pad = { left: 62, right: 10, top: 10, bottom: 24 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const yMax = niceMax(Math.max(...values, ...limits.map((l) => l.value), 0));
  const x = (t) => pad.left + ((t - start) / Math.max(1, end - start)) * w;
  const y = (v) => pad.top + hgt - (Math.min(v, yMax) / yMax) * hgt;
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => `
    <line x1="${pad.left}" x2="${pad.left + w}" y1="${y(f * yMax)}" y2="${y(f * yMax)}" stroke="#dde3e8"/>
    <text x="${pad.left - 6}" y="${y(f * yMax) + 4}" text-anchor="end" font-size="11" fill="#5b6b75">${h(format(f * yMax))}</text>`).join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const t = start + f * (end - start);
    const anchor = f === 0 ? 'start' : f === 1 ? 'end' : 'middle';
    return `<text x="${x(t)}" y="${height - 6}" text-anchor="${anchor}" font-size="11" fill="#5b6b75">${clock(t)}</text>`;
  }).join('');
  const lines = series.map((s, i) => segments(s.points).map((segment) => (segment.length === 1
    ? `<circle cx="${x(segment[0][0])}" cy="${y(segment[0][1])}" r="2" fill="${s.colour || colour(i)}"/>`
    : `<polyline fill="none" stroke="${s.colour || colour(i)}" stroke-width="2" points="${segment.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`)).join('')).join('');
  const limitLines = limits.map((l) => `
    <line x1="${pad.left}" x2="${pad.left + w}" y1="${y(l.value)}" y2="${y(l.value)}" stroke="#c0392b" stroke-dasharray="4 3"/>
    <text x="${pad.left + w - 2}" y="${y(l.value) - 3}" text-anchor="end" font-size="10" fill="#c0392b">${h(l.label)}</text>`).join('');
  const summary = series.map((s) => `${s.name}: ${describeLast(s.points, format)}`).join('; ');
  const empty = values.length ? '' : `<text x="${pad.left + w / 2}" y="${pad.top + hgt / 2}" text-anchor="middle" font-size="13" fill="#5b6b75">no data in this hour</text>`;
  return `<figure class="chart-svg" data-series="${series.length}" data-points="${values.length}">
    <svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${h(`${label}, last hour. ${summary || 'No data.'}`)}">
      ${grid}${ticks}${limitLines}${lines}${empty}
    </svg>
    <figcaption>${h(label)}</figcaption>
    ${series.length > 1 || series[0]?.name ? `<ul class="chart-legend">${series.map((s, i) => `<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="${s.colour || colour(i)}"/></svg> ${h(s.name)}</li>`).join('')}</ul>` : ''}
  </figure>`;
}

function segments(points) {
  const found = [];
  let current = [];
  for (const point of points) {
    if (Number.isFinite(point[1])) current.push(point);
    else if (current.length) { found.push(current); current = []; }
  }
  if (current.length) found.push(current);
  return found;
}

function describeLast(points, format) {
  const last = [...points].reverse().find((p) => Number.isFinite(p[1]));
  return last ? `now ${format(last[1])}` : 'no data';
}

// A horizontal gauge: value between 0 and max, coloured by the first step it reaches ([{ at, colour }], ascending).
export function gauge({ value, max = 1, format = (v) => String(v), label, steps = [], width = 300, note = '' }) {
  const known = Number.isFinite(value);
  const share = known ? Math.max(0, Math.min(1, value / max)) : 0;
  const fill = known ? ([...steps].reverse().find((s) => value >= s.at)?.colour || '#c0392b') : '#b0bac1';
  return `<figure class="gauge" data-value="${known ? value : ''}">
    <svg viewBox="0 0 ${width} 26" width="${width}" height="26" role="img" aria-label="${h(`${label}: ${known ? format(value) : 'no data'}${note ? ` (${note})` : ''}`)}">
      <rect x="0" y="4" width="${width}" height="18" rx="3" fill="#e7ecef"/>
      <rect x="0" y="4" width="${(width * share).toFixed(1)}" height="18" rx="3" fill="${fill}"/>
      <text x="${width - 6}" y="18" text-anchor="end" font-size="12" font-weight="600" fill="#1d2a33">${h(known ? format(value) : 'no data')}</text>
    </svg>
    <figcaption>${h(label)}${note ? ` <span class="meta">${h(note)}</span>` : ''}</figcaption>
  </figure>`;
}

// Horizontal bars, each with its own limit marker: [{ label, value, limit }], on one scale.
export function bars({ items, format = (v) => String(v), label, width = 300 }) {
  const rowH = 22;
  const labelW = 46;
  const scale = niceMax(Math.max(...items.map((i) => (Number.isFinite(i.value) ? i.value : 0)), ...items.map((i) => i.limit || 0)));
  const x = (v) => labelW + (Math.min(v, scale) / scale) * (width - labelW - 8);
  const rows = items.map((item, i) => {
    const top = i * rowH;
    const known = Number.isFinite(item.value);
    const over = known && item.limit && item.value >= item.limit;
    return `
      <text x="0" y="${top + 15}" font-size="11" fill="#5b6b75">${h(item.label)}</text>
      <rect x="${labelW}" y="${top + 4}" width="${Math.max(0, x(known ? item.value : 0) - labelW).toFixed(1)}" height="14" fill="${over ? '#c0392b' : '#0b5f8a'}"/>
      ${item.limit ? `<line x1="${x(item.limit)}" x2="${x(item.limit)}" y1="${top + 1}" y2="${top + 21}" stroke="#c0392b" stroke-width="2"/>` : ''}
      <text x="${width - 2}" y="${top + 15}" text-anchor="end" font-size="11" fill="#1d2a33">${h(known ? format(item.value) : 'no traffic')}</text>`;
  }).join('');
  const text = items.map((i) => `${i.label} ${Number.isFinite(i.value) ? format(i.value) : 'no traffic'}${i.limit ? ` (alert at ${format(i.limit)})` : ''}`).join(', ');
  return `<figure class="bars"><svg viewBox="0 0 ${width} ${items.length * rowH}" width="${width}" height="${items.length * rowH}" role="img" aria-label="${h(`${label}: ${text}`)}">${rows}</svg>
    <figcaption>${h(label)}</figcaption></figure>`;
}
