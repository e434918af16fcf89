// The search pages: datasets by free text (the collections list, ranked by the federated search over every
// provider's datasets and expanded through the thesaurus) and items by map extent, date range and free text.
import { escapeHTML as h, getJSON, query, sameOrigin } from './api.js';
import { bboxPolygon } from './map.js';
import { markdownExcerpt } from './markdown.js';
import { basketButton, wireBasketButtons } from './orders.js';

const PAGE_SIZE = 20;

// ------------------------------------------------------------------------------------------------ datasets

export async function collectionsPage(page, params) {
  const q = params.get('q') || '';
  page.render(`
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
  await page.map.clear();
  // Free text goes to the federated search: ranked over every provider's datasets, expanded through the thesaurus.
  const federated = q && page.svc('search') !== null;
  let body;
  try {
    body = await getJSON(federated ? `${page.svc('search')}/collections${query({ limit: 50, q })}` : page.stac(`/collections${query({ limit: 100, q })}`));
  } catch (error) {
    if (page.current()) document.getElementById('coll-status').textContent = `Cannot list collections (${page.problemText(error)}).`;
    return;
  }
  if (!page.current()) return;
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
      <p class="meta">${h(c.id)} · ${h(page.temporal(c))}${page.isDemo(c) ? ' · demo data' : ''}${local(c) ? ` · <span class="count" data-collection="${h(c.id)}">counting items…</span>` : ` · from ${h((c['federation:backends'] || []).join(', '))}`}</p>
      <p class="desc">${h(markdownExcerpt(c.description))}</p>
      ${local(c) ? `<div class="actions"><a class="button secondary" href="#/search${query({ collections: c.id })}">Search items<span class="visually-hidden"> of ${h(c.id)}</span></a></div>` : ''}
    </li>`).join('');
  const features = collections.map((c) => bboxPolygon(c.extent?.spatial?.bbox?.[0] || [-180, -90, 180, 90], { id: c.id }));
  await page.map.show('extents', features, { maxZoom: 6 });
  page.syncList(list, 'extents');
  list.querySelectorAll('.count').forEach((el) => page.showCount(el, el.dataset.collection));
  page.map.hooks.onClick = (src, id) => { if (src === 'extents' && collections[id]) location.hash = `#/collections/${encodeURIComponent(collections[id].id)}`; };
}

// ------------------------------------------------------------------------------------------------ items

export async function searchPage(page, params) {
  const p = (k) => params.get(k) || '';
  page.render(`
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
  await page.map.clear();
  const select = document.getElementById('s-coll');
  getJSON(page.stac('/collections?limit=100')).then((body) => {
    if (!page.current()) return;
    for (const c of body.collections || []) {
      const option = new Option(c.title ? `${c.title} (${c.id})` : c.id, c.id);
      select.add(option);
    }
    select.value = p('collections');
  }).catch((error) => page.showToast(`Cannot list collections: ${page.problemText(error)}`));

  const state = { pages: [], index: -1 };
  const form = document.getElementById('search-form');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = {
      q: document.getElementById('s-q').value.trim(),
      collections: select.value,
      start: document.getElementById('s-start').value,
      end: document.getElementById('s-end').value,
      bbox: document.getElementById('s-bbox').checked ? (page.map.bbox() || []).join(',') : '',
    };
    if (values.start && values.end && values.start > values.end) {
      document.getElementById('s-status').textContent = 'The start date is after the end date.';
      return;
    }
    history.replaceState(null, '', `#/search${query(values)}`);
    state.pages = []; state.index = -1;
    runSearch(page, state, firstPageUrl(page, values));
  });
  document.getElementById('s-next').addEventListener('click', () => {
    const shown = state.pages[state.index];
    if (shown && shown.next) runSearch(page, state, shown.next);
  });
  document.getElementById('s-prev').addEventListener('click', () => {
    if (state.index > 0) {
      state.index -= 1;
      showResults(page, state);
    }
  });
  if (['q', 'collections', 'start', 'end', 'bbox'].some((k) => p(k))) {
    runSearch(page, state, firstPageUrl(page, { q: p('q'), collections: p('collections'), start: p('start'), end: p('end'), bbox: p('bbox') }));
  }
}

function firstPageUrl(page, values) {
  let datetime = '';
  if (values.start || values.end) {
    datetime = `${values.start ? `${values.start}T00:00:00Z` : '..'}/${values.end ? `${values.end}T23:59:59Z` : '..'}`;
  }
  return page.stac(`/search${query({ q: values.q, collections: values.collections, datetime, bbox: values.bbox, limit: PAGE_SIZE })}`);
}

async function runSearch(page, state, url) {
  const status = document.getElementById('s-status');
  const button = document.getElementById('s-submit');
  status.textContent = 'Searching…';
  button.disabled = true;
  let body;
  try {
    body = await getJSON(url);
  } catch (error) {
    if (page.current()) {
      status.textContent = `Search failed (${page.problemText(error)}).`;
      button.disabled = false;
    }
    return;
  }
  if (!page.current()) return;
  button.disabled = false;
  const next = (body.links || []).find((l) => l.rel === 'next' && (!l.method || l.method === 'GET'));
  state.pages = state.pages.slice(0, state.index + 1);
  state.pages.push({ features: body.features || [], next: next ? sameOrigin(next.href) : null,
    matched: body.numberMatched ?? body.context?.matched });
  state.index = state.pages.length - 1;
  showResults(page, state);
}

async function showResults(page, state) {
  const shown = state.pages[state.index];
  const list = document.getElementById('s-results');
  const status = document.getElementById('s-status');
  const first = state.index * PAGE_SIZE + 1;
  const n = shown.features.length;
  status.textContent = n
    ? `Results ${first}–${first + n - 1}${shown.matched !== undefined ? ` of ${shown.matched}` : ''}${shown.next ? '' : ' (last page)'}.`
    : 'No item matches.';
  list.innerHTML = shown.features.map((f, i) => `
    <li data-fid="${i}">
      <h2><a href="#/items/${encodeURIComponent(f.collection)}/${encodeURIComponent(f.id)}">${h(f.properties?.title || f.id)}</a></h2>
      <p class="meta">${h(f.collection)} · ${h(page.fmtDate(f.properties?.datetime || f.properties?.start_datetime))}${f.collection?.startsWith('garonne') ? ' · demo data' : ''}</p>
      ${page.svc('downloads') !== null ? `<div class="actions">${basketButton(f.collection, f.id, f.properties?.title)}</div>` : ''}
    </li>`).join('');
  wireBasketButtons(list);
  document.getElementById('s-pager').hidden = !(shown.next || state.index > 0);
  document.getElementById('s-prev').hidden = state.index === 0;
  document.getElementById('s-next').hidden = !shown.next;
  document.getElementById('s-page').textContent = `Page ${state.index + 1}`;
  const keepView = document.getElementById('s-bbox').checked;
  await page.map.show('footprints', shown.features.filter((f) => f.geometry), { fit: !keepView, maxZoom: 10 });
  if (!page.current()) return;
  page.syncList(list, 'footprints');
  page.map.hooks.onClick = (src, id) => {
    if (src !== 'footprints') return;
    page.map.highlight('footprints', id);
    const li = page.mark(list, id, true);
    if (li) li.querySelector('a').focus({ preventScroll: true });
  };
  list.dataset.count = String(n);
}

