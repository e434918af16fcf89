// A collection's page: its description, extents, facts, item count and the services that serve it.
import { escapeHTML as h, getJSON, query } from './api.js';
import { DEMO_NOTE, isDemo, stac, svc, temporal } from './common.js';
import { bboxPolygon } from './map.js';
import { markdownHTML } from './markdown.js';
import { isEstimate, matchedOf } from './paging.js';

const COG = 'image/tiff';

// The platform's services that serve this collection (each linked to its record on the services page).
function servingServices(c) {
  const cogs = Object.values(c.item_assets || {}).some((a) => String(a.type || '').startsWith(COG));
  const stations = c.id === 'garonne-virtual-stations';
  return [['catalog', true], ['search', true], ['tiles', cogs], ['timeseries', stations], ['downloads', true]]
    .filter(([name, serves]) => serves && svc(name) !== null).map(([name]) => name);
}

// How many items a collection holds: the catalog's count when it gives one; an empty collection says so.
export async function showCount(page, el, id) {
  let body;
  try {
    body = await getJSON(stac(`/collections/${encodeURIComponent(id)}/items?limit=1`));
  } catch {
    if (page.current()) {
      el.textContent = 'item count unavailable';
      el.classList.add('done');
    }
    return;
  }
  if (!page.current()) return;
  const matched = matchedOf(body);
  const empty = (body.features || []).length === 0;
  el.textContent = empty ? 'no items yet (empty collection)'
    : (matched ? `${isEstimate(body) ? 'about ' : ''}${matched} item${matched === 1 ? '' : 's'}` : 'has items');
  el.classList.toggle('empty', empty);
  el.classList.add('done');
  el.closest('li')?.classList.toggle('empty', empty);
}

export async function collectionPage(page, id) {
  page.render(`<h1>${h(id)}</h1><p class="meta" role="status">Loading…</p>`, id);
  await page.map.clear();
  let c;
  try {
    c = await getJSON(stac(`/collections/${encodeURIComponent(id)}`));
  } catch (error) {
    if (page.current()) page.render(`<h1>Collection ${h(id)}</h1><p role="status">Cannot show this collection (${h(page.problemText(error))}).</p><p><a href="#/collections">All collections</a></p>`, id);
    return;
  }
  if (!page.current()) return;
  const boxes = c.extent?.spatial?.bbox || [];
  const providers = (c.providers || []).map((p) => (p.url && /^https?:/.test(p.url)
    ? `<a href="${h(p.url)}" rel="noopener noreferrer">${h(p.name)}</a>` : h(p.name))).join(', ');
  const stations = id === 'garonne-virtual-stations' && svc('timeseries') !== null;
  page.render(`
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
  showCount(page, document.getElementById('coll-items'), c.id);
  await page.map.show('extents', boxes.slice(0, 1).map((b) => bboxPolygon(b)), { maxZoom: 8 });
}
