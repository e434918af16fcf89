// The search pages: datasets by free text (the collections list, ranked by the federated search over every
// provider's datasets and expanded through the thesaurus) and items by map extent, date range and free text.
import { escapeHTML as h, getJSON, query, sameOrigin } from './api.js';
import { bboxPolygon } from './map.js';
import { markdownExcerpt } from './markdown.js';
import { basketButton, wireBasketButtons } from './orders.js';
import { Pager, countText, isEstimate, matchedOf, nextHref, pagerHTML } from './paging.js';
import { isOffline } from './retrieval.js';

const PAGE_SIZE = 20;

// ------------------------------------------------------------------------------------------------ datasets

// The facets the federated search counts, each with the collection property a CQL2 filter narrows by.
const FACETS = [['provider', 'Provider', 'provider'], ['platform', 'Platform', 'platform'],
  ['instrument', 'Instrument', 'instruments'], ['processing_level', 'Processing level', 'processing:level'],
  ['keyword', 'Keyword', 'keywords'], ['decade', 'Time span', 'decade']];
// Facets whose values read best in their own order (decades in time) rather than by count.
const ORDERED_FACETS = new Set(['decade']);

// The facet values chosen (hash parameters named like the facets) as one CQL2 filter: every one must hold.
function facetFilter(chosen) {
  const quote = (value) => `'${String(value).replaceAll("'", "''")}'`;
  return FACETS.filter(([name]) => chosen[name]).map(([name, , property]) => `a_overlaps(${property}, (${quote(chosen[name])}))`)
    .join(' and ');
}

function collectionsHash(q, chosen) {
  return `#/collections${query({ q, ...chosen })}`;
}

export async function collectionsPage(page, params) {
  const q = params.get('q') || '';
  const chosen = Object.fromEntries(FACETS.map(([name]) => [name, params.get(name) || '']).filter(([, v]) => v));
  page.render(`
    <h1>Collections</h1>
    <p class="lead">The datasets of the data lake and of every provider it federates; their spatial extents are drawn on the map.</p>
    <form class="search" id="coll-form" role="search" aria-label="Dataset search">
      <div class="wide combo"><label for="coll-q" id="coll-q-label">Search datasets (any language)</label>
        <input id="coll-q" name="q" type="search" value="${h(q)}" placeholder="e.g. sécheresse, ocean salinity, Sentinel-2"
          role="combobox" aria-autocomplete="list" aria-expanded="false" aria-controls="coll-suggest" autocomplete="off">
        <ul id="coll-suggest" class="suggest" role="listbox" aria-labelledby="coll-q-label" hidden></ul></div>
      <div><button type="submit">Search</button></div>
    </form>
    <p id="coll-status" class="meta" role="status">Loading collections…</p>
    <div id="coll-expansion" class="expansion meta"></div>
    <div id="coll-chosen" class="chosen"></div>
    <details id="coll-facets" class="facets" hidden><summary id="coll-facets-title">Narrow the results</summary><div id="coll-facet-groups"></div></details>
    <ul class="cards" id="coll-list"></ul>
    ${pagerHTML('coll-pager')}`, 'Collections');
  const input = document.getElementById('coll-q');
  document.getElementById('coll-form').addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = collectionsHash(input.value.trim(), chosen);
  });
  await page.map.clear();
  // Free text and facets go to the federated search: ranked over every provider's datasets, expanded through the
  // thesaurus. Without either, the catalog lists the platform's own collections.
  const search = page.svc('search');
  if (search !== null) wireSuggestions(page, input, `${search}/suggest`, (label) => { location.hash = collectionsHash(label, chosen); });
  const federated = Boolean(q || Object.keys(chosen).length) && search !== null;
  const pager = new Pager('coll-pager', (href, offset) => showCollections(page, href, offset, { q, chosen, federated }));
  await pager.first(federated ? `${search}/collections${query({ limit: 50, q, filter: facetFilter(chosen), facets: 'true' })}`
    : page.stac(`/collections${query({ limit: 100, q })}`));
  if (!federated && search !== null) browseFacets(page, `${search}/collections${query({ limit: 1, fields: 'id', facets: 'true' })}`);
}

// Without free text or a chosen facet the list is the platform's own collections; the facets of every provider's
// datasets are offered beside it, so browsing can start from a provider, a platform or a time span.
async function browseFacets(page, href) {
  let body;
  try {
    body = await getJSON(href);
  } catch {
    return; // no facets: the list itself still works
  }
  if (!page.current()) return;
  showFacets('', {}, body.facets || {});
  document.getElementById('coll-facets-title').textContent = `Browse all ${body.numberMatched ?? ''} datasets of every provider`;
}

// One page of collections: the list, their extents on the map, each one's item count; {shown, next} for the pager.
async function showCollections(page, href, offset, { q, chosen, federated }) {
  const status = document.getElementById('coll-status');
  let body;
  try {
    body = await getJSON(href);
  } catch (error) {
    if (page.current()) status.textContent = `Cannot list collections (${page.problemText(error)}).`;
    return null;
  }
  if (!page.current()) return null;
  const list = document.getElementById('coll-list');
  const collections = body.collections || [];
  const next = nextHref(body);
  const matched = matchedOf(body);
  status.textContent = countText('collection', { first: offset + 1, shown: collections.length, matched, more: Boolean(next) })
    .replace(/\.$/, q ? ` matching “${q}”.` : '.');
  status.dataset.matched = String(matched ?? offset + collections.length);
  showExpansion(document.getElementById('coll-expansion'), body.expansion);
  if (federated) showFacets(q, chosen, body.facets || {});
  const local = (c) => !federated || (c['federation:backends'] || []).includes('local');
  list.innerHTML = collections.map((c, i) => `
    <li data-fid="${i}" data-id="${h(c.id)}">
      <h2>${local(c) ? `<a href="#/collections/${encodeURIComponent(c.id)}">${h(c.title || c.id)}</a>` : h(c.title || c.id)}</h2>
      <p class="meta">${h(c.id)} · ${h(page.temporal(c))}${page.isDemo(c) ? ' · demo data' : ''}${local(c) ? ` · <span class="count" data-collection="${h(c.id)}">counting items…</span>` : ` · from ${h((c['federation:backends'] || []).join(', '))}`}</p>
      <p class="desc">${h(markdownExcerpt(c.description))}</p>
      ${local(c) ? `<div class="actions"><a class="button secondary" href="#/search${query({ collections: c.id })}">Search items<span class="visually-hidden"> of ${h(c.id)}</span></a></div>` : ''}
    </li>`).join('');
  const features = collections.map((c) => bboxPolygon(c.extent?.spatial?.bbox?.[0] || [-180, -90, 180, 90], { id: c.id }));
  await page.map.show('extents', features, { maxZoom: 6 });
  page.syncList(list, 'extents');
  list.querySelectorAll('.count').forEach((el) => page.showCount(el, el.dataset.collection));
  page.map.hooks.onClick = (src, id) => { if (src === 'extents' && collections[id] && local(collections[id])) location.hash = `#/collections/${encodeURIComponent(collections[id].id)}`; };
  return { shown: collections.length, next };
}

// What the thesaurus added to the query, and why: each concept found, from which vocabulary, for which word.
function showExpansion(el, expansion) {
  if (!expansion) {
    el.innerHTML = '';
    return;
  }
  if (!expansion.applied) {
    el.innerHTML = expansion.error ? `<p role="note">${h(expansion.error)}</p>` : '';
    return;
  }
  const terms = expansion.terms || [];
  if (!terms.length) {
    el.innerHTML = '<p>The thesaurus knows no concept in this query: searched as typed.</p>';
    return;
  }
  const all = expansion.concepts || [];
  const relation = (c) => c.relation || (c.depth ? 'narrower' : 'match');
  const concepts = all.filter((c) => relation(c) === 'match').slice(0, 8);
  const related = all.filter((c) => relation(c) === 'related').slice(0, 8);
  el.innerHTML = `<p>Also searched, through the thesaurus: <span class="terms">${h(terms.slice(0, 12).join(', '))}${terms.length > 12 ? ', …' : ''}</span>.</p>
    <details><summary>Why</summary><ul class="why">${concepts.map((c) => `<li>“${h(c.prefLabel || c.uri)}” (${h(c.vocab)}): ${h(c.why)}</li>`).join('')}
      ${all.some((c) => relation(c) === 'narrower') ? '<li>Narrower concepts too, at a lower weight.</li>' : ''}
      ${related.length ? `<li class="related">Related concepts, at the lowest weight: ${related.map((c) => `“${h(c.prefLabel || c.uri)}” (${h(c.why)})`).join(', ')}.</li>` : ''}
      <li>A dataset matching your own words ranks above one found only through these.</li></ul></details>`;
}

// Facet values as toggle buttons (a chosen one narrows the search; choosing it again widens it back).
function showFacets(q, chosen, facets) {
  const groups = FACETS.map(([name, title]) => {
    const counts = facets[name]?.counts || [];
    if (!counts.length) return '';
    const shown = counts.slice(0, ORDERED_FACETS.has(name) ? counts.length : 8);
    if (ORDERED_FACETS.has(name)) shown.sort((a, b) => String(a.value).localeCompare(String(b.value)));
    return `<fieldset class="facet" data-facet="${name}"><legend>${h(title)}</legend>${shown.map((c) => `
      <button type="button" class="secondary facet-value" data-facet="${name}" data-value="${h(c.value)}" data-count="${c.count}"
        aria-pressed="${chosen[name] === String(c.value)}">${h(c.value)} <span class="n">${c.count}</span></button>`).join('')}</fieldset>`;
  }).join('');
  const box = document.getElementById('coll-facets');
  document.getElementById('coll-facet-groups').innerHTML = groups;
  box.hidden = !groups;
  box.open = box.open || Object.keys(chosen).length > 0;
  box.querySelectorAll('button.facet-value').forEach((b) => b.addEventListener('click', () => {
    const next = { ...chosen };
    if (next[b.dataset.facet] === b.dataset.value) delete next[b.dataset.facet];
    else next[b.dataset.facet] = b.dataset.value;
    location.hash = collectionsHash(q, next);
  }));
  const titles = Object.fromEntries(FACETS.map(([name, title]) => [name, title]));
  const chips = document.getElementById('coll-chosen');
  chips.innerHTML = Object.entries(chosen).map(([name, value]) => `<button type="button" class="chip" data-facet="${name}">${h(titles[name])}: ${h(value)} <span aria-hidden="true">×</span><span class="visually-hidden"> (remove)</span></button>`).join(' ');
  chips.querySelectorAll('button.chip').forEach((b) => b.addEventListener('click', () => {
    const next = { ...chosen };
    delete next[b.dataset.facet];
    location.hash = collectionsHash(q, next);
  }));
}

// An accessible combobox (ARIA 1.2 list autocomplete): suggestions of concepts and dataset titles while typing;
// arrow keys move through them, Enter takes one, Escape closes the list.
function wireSuggestions(page, input, url, pick) {
  const listbox = document.getElementById(input.getAttribute('aria-controls'));
  let options = [];
  let active = -1;
  let asked = 0;
  let timer;
  const close = () => {
    listbox.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const highlight = (i) => {
    active = i;
    listbox.querySelectorAll('[role="option"]').forEach((li, n) => li.setAttribute('aria-selected', String(n === i)));
    if (i >= 0) input.setAttribute('aria-activedescendant', `${listbox.id}-${i}`);
    else input.removeAttribute('aria-activedescendant');
  };
  const show = (suggestions) => {
    options = suggestions;
    listbox.innerHTML = suggestions.map((s, i) => `<li role="option" id="${listbox.id}-${i}" aria-selected="false" data-kind="${h(s.kind)}">
      ${h(s.label)} <span class="meta">${s.kind === 'dataset' ? 'dataset' : `concept${s.vocab ? `, ${h(s.vocab)}` : ''}`}</span></li>`).join('');
    listbox.hidden = !suggestions.length;
    input.setAttribute('aria-expanded', String(suggestions.length > 0));
    listbox.querySelectorAll('[role="option"]').forEach((li, i) => li.addEventListener('mousedown', (event) => {
      event.preventDefault(); // keep the focus in the input
      close();
      pick(options[i].label);
    }));
    active = -1;
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    const text = input.value.trim();
    if (text.length < 2) {
      close();
      return;
    }
    timer = setTimeout(async () => {
      const mine = ++asked;
      try {
        const body = await getJSON(`${url}${query({ q: text.slice(0, 100), limit: 8 })}`);
        if (mine === asked && page.current()) show(body.suggestions || []);
      } catch {
        if (mine === asked) close(); // no suggestions: the search itself still works
      }
    }, 150);
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      if (listbox.hidden || !options.length) return;
      event.preventDefault();
      const step = event.key === 'ArrowDown' ? 1 : -1;
      highlight(active < 0 ? (step > 0 ? 0 : options.length - 1) : (active + step + options.length) % options.length);
    } else if (event.key === 'Enter' && active >= 0 && !listbox.hidden) {
      event.preventDefault();
      const label = options[active].label;
      close();
      pick(label);
    } else if (event.key === 'Escape' && !listbox.hidden) {
      event.preventDefault();
      close();
    }
  });
  input.addEventListener('blur', () => setTimeout(close, 100));
  page.onLeave(() => clearTimeout(timer));
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
    matched: matchedOf(body), estimated: isEstimate(body) });
  state.index = state.pages.length - 1;
  showResults(page, state);
}

// An item kept offline is retrieved from its page; the others go into the basket from the list.
function resultAction(f) {
  if (!isOffline(f)) return basketButton(f.collection, f.id, f.properties?.title);
  return `<span class="badge offline">offline</span> <a class="button secondary retrieve" href="#/items/${encodeURIComponent(f.collection)}/${encodeURIComponent(f.id)}">Retrieve<span class="visually-hidden"> ${h(f.id)}</span></a>`;
}

async function showResults(page, state) {
  const shown = state.pages[state.index];
  const list = document.getElementById('s-results');
  const status = document.getElementById('s-status');
  const first = state.index * PAGE_SIZE + 1;
  const n = shown.features.length;
  status.textContent = n
    ? countText('result', { first, shown: n, matched: shown.matched, more: Boolean(shown.next), estimated: shown.estimated })
    : 'No item matches.';
  list.innerHTML = shown.features.map((f, i) => `
    <li data-fid="${i}">
      <h2><a href="#/items/${encodeURIComponent(f.collection)}/${encodeURIComponent(f.id)}">${h(f.properties?.title || f.id)}</a></h2>
      <p class="meta">${h(f.collection)} · ${h(page.fmtDate(f.properties?.datetime || f.properties?.start_datetime))}${f.collection?.startsWith('garonne') ? ' · demo data' : ''}</p>
      ${page.svc('downloads') !== null ? `<div class="actions">${resultAction(f)}</div>` : ''}
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

