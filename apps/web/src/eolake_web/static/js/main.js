// eolake web view: a single-page app with hash routes. Every service is reached through the page's own origin.
import { ApiError, escapeHTML as h, getJSON, query, sameOrigin } from './api.js';
import { hydrologyPage } from './hydrology.js';
import { LakeMap, bboxPolygon } from './map.js';
import { markdownHTML } from './markdown.js';
import { consolePage } from './console.js';
import { basketButton, basketPage, orderPage, ordersPage, updateNav, wireBasketButtons } from './orders.js';
import { isEstimate, matchedOf } from './paging.js';
import { collectionsPage, searchPage } from './search.js';
import { servicesPage } from './services.js';
import { finishOidc } from './signin.js';

const main = document.getElementById('content');
const mapNote = document.getElementById('map-note');
const toast = document.getElementById('toast');
const COG = 'image/tiff';
let config;
let map;
let view = 0; // incremented on every navigation: late answers of a previous page are dropped
let cleanup = [];

window.eolake = { ready: false, previewTiles: { loaded: 0, failed: 0 }, errors: [] };

// ------------------------------------------------------------------------------------------------ helpers

function svc(name) {
  const prefix = config.services[name];
  return prefix === undefined ? null : prefix;
}

function stac(path) {
  return `${svc('catalog')}${path}`;
}

function showToast(message) {
  toast.textContent = message;
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { toast.hidden = true; }, 8000);
}

function note(text) {
  mapNote.textContent = text || '';
  mapNote.hidden = !text;
}

function render(html, title) {
  main.innerHTML = html;
  document.title = `${title} · ${config.title}`;
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    if (render.moveFocus) heading.focus({ preventScroll: true });
  }
  main.scrollTop = 0;
  track(title);
}

function problemText(error) {
  if (error instanceof ApiError) {
    if (error.status === 404 && /no service is mounted/.test(error.message)) return 'this service is not deployed';
    return error.status ? `${error.status}: ${error.message}` : error.message;
  }
  return String(error && error.message ? error.message : error);
}

function fmtDate(value) {
  if (!value) return '…';
  return String(value).slice(0, 10);
}

function temporal(collection) {
  const interval = collection.extent?.temporal?.interval?.[0] || [];
  return `${fmtDate(interval[0])} – ${interval[1] ? fmtDate(interval[1]) : 'ongoing'}`;
}

function isDemo(collection) {
  const kw = (collection.keywords || []).map((k) => String(k).toLowerCase());
  return collection.id.startsWith('garonne') || kw.includes('demo');
}

const DEMO_NOTE = '<p class="note">Demo data: generated for the local platform, not real measurements.</p>';

function track(title) {
  const m = config.matomo;
  if (!m) return;
  const params = new URLSearchParams({ idsite: m.site_id, rec: '1', apiv: '1', send_image: '0',
    url: location.href, action_name: title, rand: String(Math.floor(Math.random() * 1e9)),
    res: `${screen.width}x${screen.height}` });
  fetch(`${m.tracker_url}?${params}`, { method: 'POST', mode: 'no-cors', keepalive: true, credentials: 'omit' })
    .catch(() => {});
}

function syncList(listEl, source) {
  // List ↔ map: hovering or focusing an entry highlights its footprint, and the other way round.
  listEl.querySelectorAll('li[data-fid]').forEach((li) => {
    const id = Number(li.dataset.fid);
    const on = () => { map.highlight(source, id); mark(listEl, id); };
    const off = () => { map.highlight(source, null); mark(listEl, null); };
    li.addEventListener('mouseenter', on);
    li.addEventListener('mouseleave', off);
    li.addEventListener('focusin', on);
    li.addEventListener('focusout', off);
  });
  map.hooks.onHover = (src, id) => { if (src === source) mark(listEl, id); };
}

function mark(listEl, id, scroll = false) {
  listEl.querySelectorAll('li.hl').forEach((li) => li.classList.remove('hl'));
  if (id === null || id === undefined) return null;
  const li = listEl.querySelector(`li[data-fid="${id}"]`);
  if (li) {
    li.classList.add('hl');
    if (scroll) li.scrollIntoView({ block: 'nearest' });
  }
  return li;
}

// ------------------------------------------------------------------------------------------------ collection

// The platform's services that serve this collection (each linked to its record on the services page).
function servingServices(c) {
  const cogs = Object.values(c.item_assets || {}).some((a) => String(a.type || '').startsWith(COG));
  const stations = c.id === 'garonne-virtual-stations';
  return [['catalog', true], ['search', true], ['tiles', cogs], ['timeseries', stations], ['downloads', true]]
    .filter(([name, serves]) => serves && svc(name) !== null).map(([name]) => name);
}

// How many items a collection holds: the catalog's count when it gives one; an empty collection says so.
async function showCount(v, el, id) {
  let body;
  try {
    body = await getJSON(stac(`/collections/${encodeURIComponent(id)}/items?limit=1`));
  } catch {
    if (v === view) {
      el.textContent = 'item count unavailable';
      el.classList.add('done');
    }
    return;
  }
  if (v !== view) return;
  const matched = matchedOf(body);
  const empty = (body.features || []).length === 0;
  el.textContent = empty ? 'no items yet (empty collection)'
    : (matched ? `${isEstimate(body) ? 'about ' : ''}${matched} item${matched === 1 ? '' : 's'}` : 'has items');
  el.classList.toggle('empty', empty);
  el.classList.add('done');
  el.closest('li')?.classList.toggle('empty', empty);
}

async function collectionPage(v, id) {
  render(`<h1>${h(id)}</h1><p class="meta" role="status">Loading…</p>`, id);
  await map.clear();
  let c;
  try {
    c = await getJSON(stac(`/collections/${encodeURIComponent(id)}`));
  } catch (error) {
    if (v === view) render(`<h1>Collection ${h(id)}</h1><p role="status">Cannot show this collection (${h(problemText(error))}).</p><p><a href="#/collections">All collections</a></p>`, id);
    return;
  }
  if (v !== view) return;
  const boxes = c.extent?.spatial?.bbox || [];
  const providers = (c.providers || []).map((p) => (p.url && /^https?:/.test(p.url)
    ? `<a href="${h(p.url)}" rel="noopener noreferrer">${h(p.name)}</a>` : h(p.name))).join(', ');
  const stations = id === 'garonne-virtual-stations' && svc('timeseries') !== null;
  render(`
    <p class="meta"><a href="#/collections">Collections</a> › ${h(c.id)}</p>
    <h1>${h(c.title || c.id)}</h1>
    ${isDemo(c) ? DEMO_NOTE : ''}
    <p id="coll-items" class="meta" role="status"></p>
    <div class="desc md">${markdownHTML(c.description || '')}</div>
    <div class="actions">
      <a class="button" href="#/search${query({ collections: c.id })}">Search its items</a>
      ${stations ? '<a class="button secondary" href="#/hydrology">Stations and water levels</a>' : ''}
    </div>
    <h2>Extents</h2>
    <table><tbody>
      <tr><th scope="row">Temporal</th><td>${h(temporal(c))}</td></tr>
      ${boxes.map((b, i) => `<tr><th scope="row">Spatial${boxes.length > 1 ? ` ${i + 1}` : ''} (W, S, E, N)</th><td>${b.map((x) => Number(x).toFixed(4)).join(', ')}</td></tr>`).join('')}
    </tbody></table>
    <h2>About</h2>
    <table><tbody>
      <tr><th scope="row">Identifier</th><td>${h(c.id)}</td></tr>
      <tr><th scope="row">License</th><td>${h(c.license || '–')}</td></tr>
      <tr><th scope="row">Keywords</th><td>${h((c.keywords || []).join(', ') || '–')}</td></tr>
      <tr><th scope="row">Providers</th><td>${providers || '–'}</td></tr>
      <tr><th scope="row">STAC</th><td><a href="${h(stac(`/collections/${encodeURIComponent(c.id)}`))}">JSON</a></td></tr>
      <tr><th scope="row">Served by</th><td id="coll-services">${servingServices(c).map((n) => `<a href="#/services${query({ q: n })}">${h(n)}</a>`).join(', ')}</td></tr>
    </tbody></table>`, c.title || c.id);
  showCount(v, document.getElementById('coll-items'), c.id);
  await map.show('extents', boxes.slice(0, 1).map((b) => bboxPolygon(b)), { maxZoom: 8 });
}

// ------------------------------------------------------------------------------------------------ item

function previewable(asset) {
  if (!asset || !String(asset.type || '').startsWith(COG)) return false;
  const href = String(asset.href || '');
  // Assets on the platform's storage (a path) or served by this origin; others live where our tile service
  // does not read (e.g. NAIP on Azure storage): no preview for them.
  if (/^[a-z][a-z0-9+.-]*:/i.test(href)) return href.startsWith(`${location.origin}/`) || href.startsWith('file:');
  return true;
}

function rendering(asset) {
  const band = (asset['raster:bands'] || [])[0] || {};
  const st = band.statistics;
  if (st && Number.isFinite(st.minimum) && Number.isFinite(st.maximum) && st.maximum > st.minimum) {
    return { rescale: `${st.minimum},${st.maximum}`, colormap: 'viridis', min: st.minimum, max: st.maximum, unit: band.unit || '' };
  }
  if (band.data_type === 'uint8') return { rescale: '0,1', colormap: 'blues', min: 0, max: 1, unit: '' };
  return { rescale: '', colormap: 'viridis', min: null, max: null, unit: band.unit || '' };
}

function downloadCell(asset) {
  const href = String(asset.href || '');
  if (/^https?:\/\//i.test(href)) {
    const external = !href.startsWith(`${location.origin}/`);
    return `<a href="${h(href)}" download${external ? ' rel="noopener noreferrer"' : ''}>Download</a>${external ? ' <span class="meta">(provider storage)</span>' : ''}`;
  }
  // A file of the platform's storage: downloaded through an order (never its path on the server).
  return orderable() ? '<a href="#/basket">Order it</a> <span class="meta">(basket, then download)</span>'
    : '<span class="meta">on the platform (the download service is not part of this platform)</span>';
}

function orderable() {
  return svc('downloads') !== null;
}

function propertyValue(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'object') return `<code>${h(JSON.stringify(value))}</code>`;
  return h(value);
}

async function itemPage(v, collection, id) {
  render(`<h1>${h(id)}</h1><p class="meta" role="status">Loading…</p>`, id);
  await map.clear();
  let item;
  try {
    item = await getJSON(stac(`/collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(id)}`));
  } catch (error) {
    if (v === view) render(`<h1>Item ${h(id)}</h1><p role="status">Cannot show this item (${h(problemText(error))}).</p>`, id);
    return;
  }
  if (v !== view) return;
  const assets = Object.entries(item.assets || {});
  const previews = assets.filter(([, a]) => previewable(a));
  const props = Object.entries(item.properties || {}).sort(([a], [b]) => a.localeCompare(b));
  render(`
    <p class="meta"><a href="#/collections">Collections</a> › <a href="#/collections/${encodeURIComponent(collection)}">${h(collection)}</a> › ${h(id)}</p>
    <h1>${h(item.properties?.title || item.id)}</h1>
    ${collection.startsWith('garonne') ? DEMO_NOTE : ''}
    ${orderable() ? `<div class="actions">${basketButton(collection, item.id, item.properties?.title)} <a class="button secondary" href="#/basket">Basket</a></div>` : ''}
    <h2>Preview</h2>
    <div id="preview-box">${previews.length ? `
      <label for="preview-asset">Asset shown on the map</label>
      <select id="preview-asset">${previews.map(([k, a]) => `<option value="${h(k)}">${h(a.title || k)}</option>`).join('')}</select>
      <p id="preview-status" class="meta" role="status">Loading the preview…</p>
      <div class="legend" id="preview-legend" hidden><span id="legend-min"></span><span class="ramp" id="legend-ramp" role="img" aria-label="colour scale"></span><span id="legend-max"></span></div>`
    : '<p id="preview-status" class="meta" role="status">No preview: this item has no cloud-optimised GeoTIFF on the platform\'s storage.</p>'}
    </div>
    <h2>Assets</h2>
    <table id="assets"><thead><tr><th scope="col">Asset</th><th scope="col">Type</th><th scope="col">Download</th></tr></thead><tbody>
      ${assets.map(([k, a]) => `<tr><td>${h(a.title || k)}<br><span class="meta">${h(k)}${a.roles ? ` · ${h(a.roles.join(', '))}` : ''}</span></td><td>${h(a.type || '–')}</td><td>${downloadCell(a)}</td></tr>`).join('')}
    </tbody></table>
    <h2>Properties</h2>
    <table id="properties"><tbody>
      <tr><th scope="row">id</th><td>${h(item.id)}</td></tr>
      <tr><th scope="row">collection</th><td>${h(item.collection)}</td></tr>
      ${props.map(([k, val]) => `<tr><th scope="row">${h(k)}</th><td>${propertyValue(val)}</td></tr>`).join('')}
      <tr><th scope="row">bbox</th><td>${h((item.bbox || []).map((x) => Number(x).toFixed(5)).join(', '))}</td></tr>
    </tbody></table>
    <p><a href="${h(stac(`/collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(id)}`))}">STAC JSON</a></p>`,
  item.properties?.title || item.id);
  wireBasketButtons(main);
  await map.show('footprints', item.geometry ? [item] : [], { maxZoom: 12 });
  if (previews.length) {
    const select = document.getElementById('preview-asset');
    select.addEventListener('change', () => showPreview(v, item, select.value));
    showPreview(v, item, previews[0][0]);
  } else {
    note('No preview for this item');
  }
}

async function showPreview(v, item, key) {
  const status = document.getElementById('preview-status');
  const tiles = svc('tiles');
  if (tiles === null) {
    status.textContent = 'No preview: the tile service is not part of this platform.';
    return;
  }
  const r = rendering(item.assets[key]);
  const url = `${tiles}/collections/${encodeURIComponent(item.collection)}/items/${encodeURIComponent(item.id)}`
    + `/WebMercatorQuad/tilejson.json${query({ assets: key, rescale: r.rescale, colormap_name: r.colormap })}`;
  let tilejson;
  try {
    tilejson = await getJSON(url);
  } catch (error) {
    if (v === view) {
      status.textContent = `Preview unavailable (${problemText(error)}).`;
      note('Preview unavailable');
    }
    return;
  }
  if (v !== view) return;
  const tileUrls = (tilejson.tiles || []).map(sameOrigin);
  await map.preview({ ...tilejson, tiles: tileUrls });
  status.textContent = `Showing “${item.assets[key].title || key}” from the tile service.`;
  status.dataset.asset = key;
  const legend = document.getElementById('preview-legend');
  if (r.min !== null) {
    document.getElementById('legend-min').textContent = `${r.min}${r.unit ? ` ${r.unit}` : ''}`;
    document.getElementById('legend-max').textContent = `${r.max}${r.unit ? ` ${r.unit}` : ''}`;
    document.getElementById('legend-ramp').dataset.colormap = r.colormap;
    legend.hidden = false;
  } else {
    legend.hidden = true;
  }
  note(`Preview: ${item.assets[key].title || key}`);
}

// ------------------------------------------------------------------------------------------------ router

// What a page module gets: drawing, the map, and whether its navigation is still the current one.
function pageContext(v) {
  return { render, map, config, note, problemText, svc, stac, syncList, mark, main, DEMO_NOTE, fmtDate, temporal, isDemo,
    showToast, showCount: (el, id) => showCount(v, el, id), current: () => v === view, onLeave: (fn) => cleanup.push(fn) };
}

async function route() {
  view += 1;
  const v = view;
  cleanup.forEach((fn) => fn());
  cleanup = [];
  map.hooks.onHover = null;
  map.hooks.onClick = null;
  note('');
  const hash = location.hash.replace(/^#/, '') || '/collections';
  const [path, search = ''] = hash.split('?');
  const params = new URLSearchParams(search);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || 'collections';
  document.body.dataset.page = section;
  document.querySelectorAll('nav a[data-nav]').forEach((a) => {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  try {
    if (section === 'collections' && parts.length === 1) await collectionsPage(pageContext(v), params);
    else if (section === 'collections' && parts.length === 2) await collectionPage(v, parts[1]);
    else if (section === 'search') await searchPage(pageContext(v), params);
    else if (section === 'items' && parts.length === 3) await itemPage(v, parts[1], parts[2]);
    else if (section === 'hydrology') await hydrologyPage(pageContext(v), parts[1]);
    else if (section === 'services') await servicesPage(pageContext(v), params);
    else if (section === 'console') await consolePage(pageContext(v), parts.slice(1), params);
    else if (section === 'basket' && svc('downloads') !== null) await basketPage(pageContext(v));
    else if (section === 'orders' && svc('downloads') !== null && parts.length === 1) await ordersPage(pageContext(v));
    else if (section === 'orders' && svc('downloads') !== null && parts.length === 2) await orderPage(pageContext(v), parts[1]);
    else {
      render(`<h1>Page not found</h1><p>There is no page “${h(hash)}”. <a href="#/collections">Collections</a></p>`, 'Not found');
      await map.clear();
    }
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
    map.resize();
  });
}

async function start() {
  try {
    config = await getJSON('/config.json');
  } catch (error) {
    main.innerHTML = `<h1>eolake</h1><p role="alert">The web view's configuration did not load (${h(problemText(error))}).</p>`;
    return;
  }
  map = new LakeMap(document.getElementById('map'), config.static);
  if (!map.available) note('The map is not available in this browser.');
  window.eolake.map = map;
  collapsibleMap(document.getElementById('map-toggle'));
  if (svc('downloads') === null) document.querySelectorAll('nav .orders').forEach((li) => li.remove());
  updateNav();
  try {
    await finishOidc(config.oidc); // back from the identity provider: the code for a token
  } catch (error) {
    showToast(`Sign-in failed: ${problemText(error)}`);
  }
  window.addEventListener('hashchange', route);
  await route();
  window.eolake.ready = true;
  document.body.dataset.ready = 'true';
}

start();
