// What every page of the web view shares: the platform's configuration and map, drawing a page, the map note and
// the toast, list ↔ map highlighting, and the formatting of dates, extents and errors.
import { ApiError } from './api.js';

// Set once by main.js at start: the web view's /config.json and the map.
export const app = { config: null, map: null };

export const DEMO_NOTE = '<p class="note">Demo data: generated for the local platform, not real measurements.</p>';

const main = () => document.getElementById('content');

// The path prefix of a platform service, or null when this platform does not run it.
export function svc(name) {
  const prefix = app.config.services[name];
  return prefix === undefined ? null : prefix;
}

export function stac(path) {
  return `${svc('catalog')}${path}`;
}

export function showToast(message) {
  const toast = document.getElementById('toast');
  toast.textContent = message;
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { toast.hidden = true; }, 8000);
}

export function note(text) {
  const mapNote = document.getElementById('map-note');
  mapNote.textContent = text || '';
  mapNote.hidden = !text;
}

// The page's content and title; its heading takes the focus after the first navigation (for screen readers).
export function render(html, title) {
  const content = main();
  content.innerHTML = html;
  document.title = `${title} · ${app.config.title}`;
  const heading = content.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    if (render.moveFocus) heading.focus({ preventScroll: true });
  }
  content.scrollTop = 0;
  track(title);
}

function track(title) {
  const m = app.config.matomo;
  if (!m) return;
  const params = new URLSearchParams({ idsite: m.site_id, rec: '1', apiv: '1', send_image: '0',
    url: location.href, action_name: title, rand: String(Math.floor(Math.random() * 1e9)),
    res: `${screen.width}x${screen.height}` });
  fetch(`${m.tracker_url}?${params}`, { method: 'POST', mode: 'no-cors', keepalive: true, credentials: 'omit' })
    .catch(() => {});
}

export function problemText(error) {
  if (error instanceof ApiError) {
    if (error.status === 404 && /no service is mounted/.test(error.message)) return 'this service is not deployed';
    return error.status ? `${error.status}: ${error.message}` : error.message;
  }
  return String(error && error.message ? error.message : error);
}

export function fmtDate(value) {
  if (!value) return '…';
  return String(value).slice(0, 10);
}

export function temporal(collection) {
  const interval = collection.extent?.temporal?.interval?.[0] || [];
  return `${fmtDate(interval[0])} – ${interval[1] ? fmtDate(interval[1]) : 'ongoing'}`;
}

export function isDemo(collection) {
  const kw = (collection.keywords || []).map((k) => String(k).toLowerCase());
  return collection.id.startsWith('garonne') || kw.includes('demo');
}

// List ↔ map: hovering or focusing an entry highlights its footprint, and the other way round.
export function syncList(listEl, source) {
  listEl.querySelectorAll('li[data-fid]').forEach((li) => {
    const id = Number(li.dataset.fid);
    const on = () => { app.map.highlight(source, id); mark(listEl, id); };
    const off = () => { app.map.highlight(source, null); mark(listEl, null); };
    li.addEventListener('mouseenter', on);
    li.addEventListener('mouseleave', off);
    li.addEventListener('focusin', on);
    li.addEventListener('focusout', off);
  });
  app.map.hooks.onHover = (src, id) => { if (src === source) mark(listEl, id); };
}

export function mark(listEl, id, scroll = false) {
  listEl.querySelectorAll('li.hl').forEach((li) => li.classList.remove('hl'));
  if (id === null || id === undefined) return null;
  const li = listEl.querySelector(`li[data-fid="${id}"]`);
  if (li) {
    li.classList.add('hl');
    if (scroll) li.scrollIntoView({ block: 'nearest' });
  }
  return li;
}
