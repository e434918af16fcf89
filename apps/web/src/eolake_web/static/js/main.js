// eolake web view: a single-page app with hash routes. Every service is reached through the page's own origin.
import { ApiError, escapeHTML as h, getJSON, query, sameOrigin } from './api.js';
import { hydrologyPage } from './hydrology.js';
import { LakeMap, bboxPolygon } from './map.js';
import { markdownExcerpt, markdownHTML } from './markdown.js';
import { consolePage } from './console.js';
import { basketButton, basketPage, orderPage, ordersPage, updateNav, wireBasketButtons } from './orders.js';
import { servicesPage } from './services.js';
import { finishOidc } from './signin.js';

const main = document.getElementById('content');
const mapNote = document.getElementById('map-note');
const toast = document.getElementById('toast');
const COG = 'image/tiff';
const PAGE_SIZE = 20;
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

// ------------------------------------------------------------------------------------------------ collections

async function collectionsPage(v, params) {
  const q = params.get('q') || '';
  render(`
    <h1>Collections</h1>
    <p class="lead">The datasets of the data lake; their spatial extents are drawn on the map.</p>
    <form class="search" id="coll-form" role="search">
      <div class="wide"><label for="coll-q">Filter by text</label>
        <input id="coll-q" name="q" type="search" value="${h(q)}" placeholder="e.g. water, naip, sentinel"></div>
      <div><button type="submit">Filter</button></div>
    </form>
    <p id="coll-status" class="meta" role="status">Loading collections…</p>
    <p id="coll-expansion" class="meta"></p>
    <ul class="cards" id="coll-list"></ul>`, 'Collections');
  document.getElementById('coll-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = document.getElementById('coll-q').value.trim();
    location.hash = `#/collections${query({ q: value })}`;
  });
  await map.clear();
  // Free text goes to the federated search: ranked over every provider's datasets, expanded through the thesaurus.
  const federated = q && svc('search') !== null;
  let body;
  try {
    body = await getJSON(federated ? `${svc('search')}/collections${query({ limit: 50, q })}` : stac(`/collections${query({ limit: 100, q })}`));
  } catch (error) {
    if (v === view) document.getElementById('coll-status').textContent = `Cannot list collections (${problemText(error)}).`;
    return;
  }
  if (v !== view) return;
  const list = document.getElementById('coll-list');
  const collections = body.collections || [];
  const matched = body.numberMatched ?? collections.length;
  document.getElementById('coll-status').textContent = `${matched} collection${matched === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}${matched > collections.length ? ` (the ${collections.length} best shown)` : ''}.`;
  const expansion = body.expansion || {};
  document.getElementById('coll-expansion').textContent = expansion.applied && expansion.terms?.length
    ? `Also searched, through the thesaurus: ${expansion.terms.slice(0, 12).join(', ')}.`
    : (expansion.error || '');
  const local = (c) => !federated || (c['federation:backends'] || []).includes('local');
  list.innerHTML = collections.map((c, i) => `
    <li data-fid="${i}">
      <h2>${local(c) ? `<a href="#/collections/${encodeURIComponent(c.id)}">${h(c.title || c.id)}</a>` : h(c.title || c.id)}</h2>
      <p class="meta">${h(c.id)} · ${h(temporal(c))}${isDemo(c) ? ' · demo data' : ''}${local(c) ? ` · <span class="count" data-collection="${h(c.id)}">counting items…</span>` : ` · from ${h((c['federation:backends'] || []).join(', '))}`}</p>
      <p class="desc">${h(markdownExcerpt(c.description))}</p>
      ${local(c) ? `<div class="actions"><a class="button secondary" href="#/search${query({ collections: c.id })}">Search items<span class="visually-hidden"> of ${h(c.id)}</span></a></div>` : ''}
    </li>`).join('');
  const features = collections.map((c) => bboxPolygon(c.extent?.spatial?.bbox?.[0] || [-180, -90, 180, 90], { id: c.id }));
  await map.show('extents', features, { maxZoom: 6 });
  syncList(list, 'extents');
  list.querySelectorAll('.count').forEach((el) => showCount(v, el, el.dataset.collection));
  map.hooks.onClick = (src, id) => { if (src === 'extents' && collections[id]) location.hash = `#/collections/${encodeURIComponent(collections[id].id)}`; };
}

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
    if (v === view) el.textContent = 'item count unavailable';
    return;
  }
  if (v !== view) return;
  const matched = body.numberMatched ?? body.context?.matched;
  const empty = (body.features || []).length === 0;
  el.textContent = empty ? 'no items yet (empty collection)'
    : (matched !== undefined ? `${matched} item${matched === 1 ? '' : 's'}` : 'has items');
  el.classList.toggle('empty', empty);
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

// ------------------------------------------------------------------------------------------------ search

async function searchPage(v, params) {
  const p = (k) => params.get(k) || '';
  render(`
    <h1>Search</h1>
    <p class="lead">Items by map extent, date range and free text. Footprints are drawn on the map.</p>
    <form class="search" id="search-form" role="search" aria-label="Item search">
      <div class="wide"><label for="s-q">Free text</label>
        <input id="s-q" name="q" type="search" value="${h(p('q'))}" placeholder="e.g. garonne, water"></div>
      <div class="wide"><label for="s-coll">Collection</label>
        <select id="s-coll" name="collections"><option value="">All collections</option></select></div>
      <div><label for="s-start">From</label><input id="s-start" name="start" type="date" value="${h(p('start'))}"></div>
      <div><label for="s-end">To</label><input id="s-end" name="end" type="date" value="${h(p('end'))}"></div>
      <div class="wide"><label class="check"><input id="s-bbox" name="usebbox" type="checkbox" ${p('bbox') ? 'checked' : ''}> Only in the map's current extent</label></div>
      <div><button type="submit" id="s-submit">Search</button></div>
    </form>
    <p id="s-status" class="meta" role="status"></p>
    <ul class="results" id="s-results" aria-label="Search results"></ul>
    <div class="pager" id="s-pager" hidden>
      <button type="button" class="secondary" id="s-prev">Previous page</button>
      <span id="s-page" class="meta"></span>
      <button type="button" class="secondary" id="s-next">Next page</button>
    </div>`, 'Search');
  await map.clear();
  const select = document.getElementById('s-coll');
  getJSON(stac('/collections?limit=100')).then((body) => {
    if (v !== view) return;
    for (const c of body.collections || []) {
      const option = new Option(c.title ? `${c.title} (${c.id})` : c.id, c.id);
      select.add(option);
    }
    select.value = p('collections');
  }).catch((error) => showToast(`Cannot list collections: ${problemText(error)}`));

  const state = { pages: [], index: -1 };
  const form = document.getElementById('search-form');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = {
      q: document.getElementById('s-q').value.trim(),
      collections: select.value,
      start: document.getElementById('s-start').value,
      end: document.getElementById('s-end').value,
      bbox: document.getElementById('s-bbox').checked ? (map.bbox() || []).join(',') : '',
    };
    if (values.start && values.end && values.start > values.end) {
      document.getElementById('s-status').textContent = 'The start date is after the end date.';
      return;
    }
    history.replaceState(null, '', `#/search${query(values)}`);
    state.pages = []; state.index = -1;
    runSearch(v, state, firstPageUrl(values));
  });
  document.getElementById('s-next').addEventListener('click', () => {
    const page = state.pages[state.index];
    if (page && page.next) runSearch(v, state, page.next);
  });
  document.getElementById('s-prev').addEventListener('click', () => {
    if (state.index > 0) {
      state.index -= 1;
      showResults(v, state);
    }
  });
  if (['q', 'collections', 'start', 'end', 'bbox'].some((k) => p(k))) {
    runSearch(v, state, firstPageUrl({ q: p('q'), collections: p('collections'), start: p('start'), end: p('end'), bbox: p('bbox') }));
  }
}

function firstPageUrl(values) {
  let datetime = '';
  if (values.start || values.end) {
    datetime = `${values.start ? `${values.start}T00:00:00Z` : '..'}/${values.end ? `${values.end}T23:59:59Z` : '..'}`;
  }
  return stac(`/search${query({ q: values.q, collections: values.collections, datetime, bbox: values.bbox, limit: PAGE_SIZE })}`);
}

async function runSearch(v, state, url) {
  const status = document.getElementById('s-status');
  const button = document.getElementById('s-submit');
  status.textContent = 'Searching…';
  button.disabled = true;
  let body;
  try {
    body = await getJSON(url);
  } catch (error) {
    if (v === view) {
      status.textContent = `Search failed (${problemText(error)}).`;
      button.disabled = false;
    }
    return;
  }
  if (v !== view) return;
  button.disabled = false;
  const next = (body.links || []).find((l) => l.rel === 'next' && (!l.method || l.method === 'GET'));
  state.pages = state.pages.slice(0, state.index + 1);
  state.pages.push({ features: body.features || [], next: next ? sameOrigin(next.href) : null,
    matched: body.numberMatched ?? body.context?.matched });
  state.index = state.pages.length - 1;
  showResults(v, state);
}

async function showResults(v, state) {
  const page = state.pages[state.index];
  const list = document.getElementById('s-results');
  const status = document.getElementById('s-status');
  const first = state.index * PAGE_SIZE + 1;
  const n = page.features.length;
  status.textContent = n
    ? `Results ${first}–${first + n - 1}${page.matched !== undefined ? ` of ${page.matched}` : ''}${page.next ? '' : ' (last page)'}.`
    : 'No item matches.';
  list.innerHTML = page.features.map((f, i) => `
    <li data-fid="${i}">
      <h2><a href="#/items/${encodeURIComponent(f.collection)}/${encodeURIComponent(f.id)}">${h(f.properties?.title || f.id)}</a></h2>
      <p class="meta">${h(f.collection)} · ${h(fmtDate(f.properties?.datetime || f.properties?.start_datetime))}${f.collection?.startsWith('garonne') ? ' · demo data' : ''}</p>
      ${orderable() ? `<div class="actions">${basketButton(f.collection, f.id, f.properties?.title)}</div>` : ''}
    </li>`).join('');
  wireBasketButtons(list);
  document.getElementById('s-pager').hidden = !(page.next || state.index > 0);
  document.getElementById('s-prev').hidden = state.index === 0;
  document.getElementById('s-next').hidden = !page.next;
  document.getElementById('s-page').textContent = `Page ${state.index + 1}`;
  const keepView = document.getElementById('s-bbox').checked;
  await map.show('footprints', page.features.filter((f) => f.geometry), { fit: !keepView, maxZoom: 10 });
  if (v !== view) return;
  syncList(list, 'footprints');
  map.hooks.onClick = (src, id) => {
    if (src !== 'footprints') return;
    map.highlight('footprints', id);
    const li = mark(list, id, true);
    if (li) li.querySelector('a').focus({ preventScroll: true });
  };
  list.dataset.count = String(n);
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
  return { render, map, config, note, problemText, svc, syncList, mark, main, DEMO_NOTE, fmtDate,
    current: () => v === view, onLeave: (fn) => cleanup.push(fn) };
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
    if (section === 'collections' && parts.length === 1) await collectionsPage(v, params);
    else if (section === 'collections' && parts.length === 2) await collectionPage(v, parts[1]);
    else if (section === 'search') await searchPage(v, params);
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
