// eolake web view: a single-page app with hash routes (#/section/part…?query). This module starts it and routes;
// every page is its own module, and what pages share is in common.js. Every service is reached through the page's
// own origin.
import { escapeHTML as h, getJSON } from './api.js';
import { collectionPage, showCount } from './collection.js';
import * as common from './common.js';
import { app, note, problemText, render, showToast, svc } from './common.js';
import { consolePage } from './console.js';
import { hydrologyPage } from './hydrology.js';
import { itemPage } from './item.js';
import { LakeMap } from './map.js';
import { basketPage, orderPage, ordersPage, updateNav } from './orders.js';
import { collectionsPage, searchPage } from './search.js';
import { servicesPage } from './services.js';
import { finishOidc } from './signin.js';

// [section, how many path parts (null: any), the service it needs, the page]
const ROUTES = [
  ['collections', 1, null, (page, parts, params) => collectionsPage(page, params)],
  ['collections', 2, null, (page, parts) => collectionPage(page, parts[1])],
  ['search', null, null, (page, parts, params) => searchPage(page, params)],
  ['items', 3, null, (page, parts) => itemPage(page, parts[1], parts[2])],
  ['hydrology', null, null, (page, parts) => hydrologyPage(page, parts[1])],
  ['services', null, null, (page, parts, params) => servicesPage(page, params)],
  ['console', null, null, (page, parts, params) => consolePage(page, parts.slice(1), params)],
  ['basket', null, 'downloads', (page) => basketPage(page)],
  ['orders', 1, 'downloads', (page) => ordersPage(page)],
  ['orders', 2, 'downloads', (page, parts) => orderPage(page, parts[1])],
];

let view = 0; // incremented on every navigation: late answers of a previous page are dropped
let cleanup = [];

window.eolake = { ready: false, previewTiles: { loaded: 0, failed: 0 }, errors: [] };

// What a page module gets: the shared helpers, the map and configuration, whether its navigation is still the
// current one, and a way to stop its timers when the user leaves.
function pageContext(v) {
  const page = { ...common, main: document.getElementById('content'), map: app.map, config: app.config,
    current: () => v === view, onLeave: (fn) => cleanup.push(fn) };
  page.showCount = (el, id) => showCount(page, el, id);
  return page;
}

function findRoute(section, parts) {
  return ROUTES.find(([name, length, needs]) => name === section && (length === null || length === parts.length)
    && (needs === null || svc(needs) !== null));
}

async function notFound(hash) {
  render(`<h1>Page not found</h1><p>There is no page “${h(hash)}”. <a href="#/collections">Collections</a></p>`, 'Not found');
  await app.map.clear();
}

function markNav(section) {
  document.body.dataset.page = section;
  document.querySelectorAll('nav a[data-nav]').forEach((a) => {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
}

async function route() {
  view += 1;
  cleanup.forEach((fn) => fn());
  cleanup = [];
  app.map.hooks.onHover = null;
  app.map.hooks.onClick = null;
  note('');
  const hash = location.hash.replace(/^#/, '') || '/collections';
  const [path, search = ''] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || 'collections';
  if (!parts.length) parts.push(section);
  markNav(section);
  const found = findRoute(section, parts);
  try {
    if (found) await found[3](pageContext(view), parts, new URLSearchParams(search));
    else await notFound(hash);
  } catch (error) {
    window.eolake.errors.push(String(error));
    showToast(`Something went wrong: ${problemText(error)}`);
  }
  render.moveFocus = true;
}

// On a phone the map sits above the page: it can be folded away (and back) with one button.
function collapsibleMap(button) {
  const layout = button.closest('.layout');
  button.addEventListener('click', () => {
    const collapsed = layout.classList.toggle('map-collapsed');
    button.setAttribute('aria-expanded', String(!collapsed));
    button.textContent = collapsed ? 'Show the map' : 'Hide the map';
    app.map.resize();
  });
}

async function start() {
  try {
    app.config = await getJSON('/config.json');
  } catch (error) {
    document.getElementById('content').innerHTML = `<h1>eolake</h1><p role="alert">The web view's configuration did not load (${h(problemText(error))}).</p>`;
    return;
  }
  app.map = new LakeMap(document.getElementById('map'), app.config.static);
  if (!app.map.available) note('The map is not available in this browser.');
  window.eolake.map = app.map;
  collapsibleMap(document.getElementById('map-toggle'));
  if (svc('downloads') === null) document.querySelectorAll('nav .orders').forEach((li) => li.remove());
  updateNav();
  try {
    await finishOidc(app.config.oidc); // back from the identity provider: the code for a token
  } catch (error) {
    showToast(`Sign-in failed: ${problemText(error)}`);
  }
  window.addEventListener('hashchange', route);
  await route();
  window.eolake.ready = true;
  document.body.dataset.ready = 'true';
}

start();
