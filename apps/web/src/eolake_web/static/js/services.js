// The services page: the catalog of the platform's services (/services.json, one record each) with each one's live
// readiness and self-description (its /readyz: OpenAPI, documentation, conformance), and the federated search's
// providers. Checked again every 15 seconds while the page is open.
import { escapeHTML as h, getJSON, query } from './api.js';

const REFRESH_MS = 15000;
const TIMEOUT_MS = 8000;
const LINKS = { 'service-doc': 'API documentation', 'service-desc': 'OpenAPI', conformance: 'Conformance' };

export async function servicesPage(page, params) {
  const q = params.get('q') || '';
  page.render(`
    <h1>Services</h1>
    <p class="lead">The platform's services: what each does, where it listens, how it describes itself, and whether it is ready now.</p>
    <form class="search" id="svc-form" role="search">
      <div class="wide"><label for="svc-q">Filter services</label>
        <input id="svc-q" name="q" type="search" value="${h(q)}" placeholder="e.g. tiles, search, downloads"></div>
      <div><button type="submit">Filter</button></div>
    </form>
    <p id="svc-count" class="meta" role="status">Loading the services…</p>
    <ul class="cards" id="services" aria-label="Services"></ul>
    <h2 id="prov-title" hidden>Federated search providers</h2>
    <ul class="cards" id="providers" aria-labelledby="prov-title"></ul>
    <p class="actions"><button type="button" id="svc-refresh" class="secondary">Check now</button>
      <a class="button secondary" href="/services.json">Records (JSON)</a></p>
    <p id="svc-status" class="meta" role="status"></p>`, 'Services');
  document.getElementById('svc-form').addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/services${query({ q: document.getElementById('svc-q').value.trim() })}`;
  });
  await page.map.clear();
  let records;
  try {
    records = (await getJSON(`/services.json${query({ q })}`)).features || [];
  } catch (error) {
    if (page.current()) document.getElementById('svc-count').textContent = `Cannot list the services (${page.problemText(error)}).`;
    return;
  }
  if (!page.current()) return;
  document.getElementById('svc-count').textContent = `${records.length} service${records.length === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}.`;
  document.getElementById('services').innerHTML = records.map(card).join('');
  const check = async () => {
    await Promise.all(records.map((r) => checkService(page, r)));
    if (page.current()) document.getElementById('svc-status').textContent = `Checked at ${new Date().toLocaleTimeString()}.`;
  };
  document.getElementById('svc-refresh').addEventListener('click', check);
  const timer = setInterval(check, REFRESH_MS);
  page.onLeave(() => clearInterval(timer));
  const search = page.config.services.search;
  if (search !== undefined && !q) showProviders(page, search);
  await check();
}

function card(record) {
  const p = record.properties;
  const status = record.links.find((l) => l.rel === 'status');
  return `
    <li data-service="${h(record.id)}" data-state="checking">
      <h2>${h(p.title)} <span class="badge checking">checking</span></h2>
      <p class="desc">${h(p.description)}</p>
      <p class="meta">Endpoint <code>${h(p.endpoint)}</code> · <span class="detail"></span></p>
      <p class="actions links"><a href="${h(status.href)}">Readiness (JSON)</a></p>
    </li>`;
}

async function checkService(page, record) {
  const status = record.links.find((l) => l.rel === 'status').href;
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let state; let detail = ''; let links = [];
  const started = performance.now();
  try {
    const response = await fetch(status, { headers: { Accept: 'application/json' }, signal: controller.signal, cache: 'no-store' });
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    links = (body && Array.isArray(body.links)) ? body.links : [];
    if (response.ok) {
      state = 'ready';
      detail = `ready in ${Math.round(performance.now() - started)} ms`;
    } else if (response.status === 404) {
      state = 'not-deployed';
      detail = 'not deployed here';
    } else if (response.status === 503 && body && /not ready/.test(body.detail || '')) {
      state = 'not-ready';
      detail = body.detail;
    } else {
      state = 'unreachable';
      detail = (body && body.detail) || `HTTP ${response.status}`;
    }
  } catch (error) {
    state = 'unreachable';
    detail = error.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : error.message;
  } finally {
    clearTimeout(timeout);
  }
  if (!page.current()) return;
  const item = document.querySelector(`#services li[data-service="${record.id}"]`);
  if (!item) return;
  item.dataset.state = state;
  const badge = item.querySelector('.badge');
  badge.className = `badge ${state}`;
  badge.textContent = state.replace('-', ' ');
  item.querySelector('.detail').textContent = detail;
  const own = links.filter((l) => LINKS[l.rel] && typeof l.href === 'string' && l.href.startsWith('/'));
  item.querySelector('.links').innerHTML = [
    ...own.map((l) => `<a href="${h(l.href)}" data-rel="${h(l.rel)}">${LINKS[l.rel]}</a>`),
    `<a href="${h(status)}">Readiness (JSON)</a>`].join('');
}

async function showProviders(page, prefix) {
  let landing;
  try {
    landing = await getJSON(`${prefix}/`);
  } catch {
    return; // the search service's own card says why
  }
  if (!page.current()) return;
  const providers = landing.providers || [];
  document.getElementById('prov-title').hidden = providers.length === 0;
  document.getElementById('providers').innerHTML = providers.map((p) => `
    <li data-provider="${h(p.name)}">
      <h2>${h(p.name)}</h2>
      <p class="meta">${h(p.kind)} provider of the federated search (<code>${h(prefix)}</code>) · asked with a ${h(p.timeout_seconds)} s timeout</p>
    </li>`).join('');
}
