// An item's page: its preview from the tile service (a COG on the platform's storage), assets, properties, and
// either the basket button or, for an item kept offline, its retrieval.
import { escapeHTML as h, getJSON, query, sameOrigin } from './api.js';
import { DEMO_NOTE, stac, svc } from './common.js';
import { basketButton, wireBasketButtons } from './orders.js';
import { isOffline, retrievalHTML, retrieveLink, wireRetrieval } from './retrieval.js';

const COG = 'image/tiff';

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

function orderable() {
  return svc('downloads') !== null;
}

function downloadCell(asset, offline) {
  const href = String(asset.href || '');
  if (offline) return '<span class="meta">kept offline: retrieve the item first</span>';
  if (/^https?:\/\//i.test(href)) {
    const external = !href.startsWith(`${location.origin}/`);
    return `<a href="${h(href)}" download${external ? ' rel="noopener noreferrer"' : ''}>Download</a>${external ? ' <span class="meta">(provider storage)</span>' : ''}`;
  }
  // A file of the platform's storage: downloaded through an order (never its path on the server).
  return orderable() ? '<a href="#/basket">Order it</a> <span class="meta">(basket, then download)</span>'
    : '<span class="meta">on the platform (the download service is not part of this platform)</span>';
}

function propertyValue(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'object') return `<code>${h(JSON.stringify(value))}</code>`;
  return h(value);
}

// What the item offers: the basket, or (kept offline) its retrieval; nothing without the download service.
function actionsHTML(item, collection) {
  if (!orderable()) return '';
  if (isOffline(item) && retrieveLink(item)) return retrievalHTML();
  return `<div class="actions">${basketButton(collection, item.id, item.properties?.title)} <a class="button secondary" href="#/basket">Basket</a></div>`;
}

function previewHTML(previews, offline) {
  if (offline) return '<p id="preview-status" class="meta" role="status">No preview: this item is kept offline (retrieve it first).</p>';
  if (!previews.length) return '<p id="preview-status" class="meta" role="status">No preview: this item has no cloud-optimised GeoTIFF on the platform\'s storage.</p>';
  return `
      <label for="preview-asset">Asset shown on the map</label>
      <select id="preview-asset">${previews.map(([k, a]) => `<option value="${h(k)}">${h(a.title || k)}</option>`).join('')}</select>
      <p id="preview-status" class="meta" role="status">Loading the preview…</p>
      <div class="legend" id="preview-legend" hidden><span id="legend-min"></span><span class="ramp" id="legend-ramp" role="img" aria-label="colour scale"></span><span id="legend-max"></span></div>`;
}

export async function itemPage(page, collection, id) {
  page.render(`<h1>${h(id)}</h1><p class="meta" role="status">Loading…</p>`, id);
  await page.map.clear();
  const url = stac(`/collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(id)}`);
  let item;
  try {
    item = await getJSON(url);
  } catch (error) {
    if (page.current()) page.render(`<h1>Item ${h(id)}</h1><p role="status">Cannot show this item (${h(page.problemText(error))}).</p>`, id);
    return;
  }
  if (!page.current()) return;
  const offline = isOffline(item);
  const assets = Object.entries(item.assets || {});
  const previews = offline ? [] : assets.filter(([, a]) => previewable(a));
  const props = Object.entries(item.properties || {}).sort(([a], [b]) => a.localeCompare(b));
  page.render(`
    <p class="meta"><a href="#/collections">Collections</a> › <a href="#/collections/${encodeURIComponent(collection)}">${h(collection)}</a> › ${h(id)}</p>
    <h1>${h(item.properties?.title || item.id)}</h1>
    ${collection.startsWith('garonne') ? DEMO_NOTE : ''}
    ${actionsHTML(item, collection)}
    <h2>Preview</h2>
    <div id="preview-box">${previewHTML(previews, offline)}</div>
    <h2>Assets</h2>
    <table id="assets"><thead><tr><th scope="col">Asset</th><th scope="col">Type</th><th scope="col">Download</th></tr></thead><tbody>
      ${assets.map(([k, a]) => `<tr><td>${h(a.title || k)}<br><span class="meta">${h(k)}${a.roles ? ` · ${h(a.roles.join(', '))}` : ''}</span></td><td>${h(a.type || '–')}</td><td>${downloadCell(a, offline)}</td></tr>`).join('')}
    </tbody></table>
    <h2>Properties</h2>
    <table id="properties"><tbody>
      <tr><th scope="row">id</th><td>${h(item.id)}</td></tr>
      <tr><th scope="row">collection</th><td>${h(item.collection)}</td></tr>
      ${props.map(([k, val]) => `<tr><th scope="row">${h(k)}</th><td>${propertyValue(val)}</td></tr>`).join('')}
      <tr><th scope="row">bbox</th><td>${h((item.bbox || []).map((x) => Number(x).toFixed(5)).join(', '))}</td></tr>
    </tbody></table>
    <p><a href="${h(url)}">STAC JSON</a></p>`,
  item.properties?.title || item.id);
  wireBasketButtons(page.main);
  if (offline) wireRetrieval(page, item, url, () => itemPage(page, collection, id));
  await page.map.show('footprints', item.geometry ? [item] : [], { maxZoom: 12 });
  if (previews.length) {
    const select = document.getElementById('preview-asset');
    select.addEventListener('change', () => showPreview(page, item, select.value));
    showPreview(page, item, previews[0][0]);
  } else {
    page.note(offline ? 'Offline item: no preview' : 'No preview for this item');
  }
}

async function showPreview(page, item, key) {
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
    if (page.current()) {
      status.textContent = `Preview unavailable (${page.problemText(error)}).`;
      page.note('Preview unavailable');
    }
    return;
  }
  if (!page.current()) return;
  const tileUrls = (tilejson.tiles || []).map(sameOrigin);
  await page.map.preview({ ...tilejson, tiles: tileUrls });
  status.textContent = `Showing “${item.assets[key].title || key}” from the tile service.`;
  status.dataset.asset = key;
  showLegend(r);
  page.note(`Preview: ${item.assets[key].title || key}`);
}

function showLegend(r) {
  const legend = document.getElementById('preview-legend');
  if (r.min === null) {
    legend.hidden = true;
    return;
  }
  document.getElementById('legend-min').textContent = `${r.min}${r.unit ? ` ${r.unit}` : ''}`;
  document.getElementById('legend-max').textContent = `${r.max}${r.unit ? ` ${r.unit}` : ''}`;
  document.getElementById('legend-ramp').dataset.colormap = r.colormap;
  legend.hidden = false;
}
