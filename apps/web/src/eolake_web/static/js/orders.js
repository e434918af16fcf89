// Ordering from the web view: a basket of items (kept in this browser), sign-in (signin.js), orders placed with the download service, their progress file by file, and downloads that go
// through /downloads with the user's credentials and are checked against their SHA-256 before they are saved.
import { escapeHTML as h, getJSON } from './api.js';
import { Pager, countText, matchedOf, nextHref, pagerHTML } from './paging.js';
import { authHeaders, session, signInForm, signOut, whoLabel, wireSignIn } from './signin.js';

const BASKET = 'eolake.basket';
const FINAL = ['succeeded', 'failed', 'canceled'];
const POLL_MS = 1500;
const ORDERS_PAGE = 20;

// ------------------------------------------------------------------------------------------------ basket

export function basket() {
  try { return JSON.parse(localStorage.getItem(BASKET)) || []; } catch { return []; }
}

function saveBasket(items) {
  localStorage.setItem(BASKET, JSON.stringify(items));
  updateNav();
}

export function inBasket(collection, id) {
  return basket().some((b) => b.collection === collection && b.id === id);
}

export function toggleBasket(collection, id, title) {
  const items = basket();
  const kept = items.filter((b) => !(b.collection === collection && b.id === id));
  saveBasket(kept.length === items.length ? [...items, { collection, id, title: title || id }] : kept);
  return kept.length === items.length;
}

// A button that adds an item to the basket or takes it out; its label says which.
export function basketButton(collection, id, title) {
  const on = inBasket(collection, id);
  return `<button type="button" class="secondary basket-toggle" data-collection="${h(collection)}" data-item="${h(id)}"
    data-title="${h(title || id)}" aria-pressed="${on}">${on ? 'In the basket ✓' : 'Add to basket'}<span class="visually-hidden"> ${h(id)}</span></button>`;
}

export function wireBasketButtons(root) {
  root.querySelectorAll('button.basket-toggle').forEach((b) => b.addEventListener('click', () => {
    const on = toggleBasket(b.dataset.collection, b.dataset.item, b.dataset.title);
    b.setAttribute('aria-pressed', String(on));
    b.firstChild.textContent = on ? 'In the basket ✓' : 'Add to basket';
  }));
}

export function updateNav() {
  const link = document.querySelector('nav a[data-nav="basket"]');
  if (link) link.textContent = `Basket (${basket().length})`;
}

export async function basketPage(page) {
  const items = basket();
  const signedIn = Boolean(session());
  page.render(`
    <h1>Basket</h1>
    <p class="lead">Items to order. The download service stages their files; you download them from the order page.</p>
    <p id="b-status" class="meta" role="status">${items.length ? `${items.length} item${items.length === 1 ? '' : 's'}.` : 'The basket is empty: add items from a search or an item page.'}</p>
    <ul class="cards" id="b-list">${items.map((b) => `
      <li data-item="${h(b.id)}"><h2><a href="#/items/${encodeURIComponent(b.collection)}/${encodeURIComponent(b.id)}">${h(b.title)}</a></h2>
        <p class="meta">${h(b.collection)}</p>
        <div class="actions"><button type="button" class="secondary b-remove" data-collection="${h(b.collection)}" data-item="${h(b.id)}">Remove<span class="visually-hidden"> ${h(b.id)}</span></button></div></li>`).join('')}</ul>
    ${items.length ? (signedIn ? `<p class="actions"><button type="button" id="b-order">Order these items</button></p>${signedInLine('b')}`
      : `<h2>Sign in to order</h2><p>Browsing and searching need no account; ordering does.</p>${signInForm('b-signin', page.config.oidc)}`) : ''}`, 'Basket');
  await page.map.clear();
  document.querySelectorAll('button.b-remove').forEach((b) => b.addEventListener('click', () => {
    toggleBasket(b.dataset.collection, b.dataset.item);
    basketPage(page);
  }));
  if (!items.length) return;
  if (!signedIn) {
    wireSignIn(page, 'b-signin', () => basketPage(page));
    return;
  }
  wireSignOut('b', () => basketPage(page));
  document.getElementById('b-order').addEventListener('click', () => placeOrder(page, items));
}

async function placeOrder(page, items) {
  const status = document.getElementById('b-status');
  const button = document.getElementById('b-order');
  button.disabled = true;
  status.textContent = 'Placing the order…';
  let order;
  try {
    order = await getJSON(`${page.config.services.downloads}/orders`, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', ...authHeaders() },
      body: JSON.stringify({ items: items.map((b) => ({ collection: b.collection, id: b.id })) }),
    });
  } catch (error) {
    button.disabled = false;
    status.textContent = `The order was refused (${page.problemText(error)}).`;
    return;
  }
  saveBasket([]);
  location.hash = `#/orders/${encodeURIComponent(order.id)}`;
}

// ------------------------------------------------------------------------------------------------ orders

function needsSignIn(page, title, route) {
  page.render(`<h1>${h(title)}</h1><p>Sign in to see your orders.</p>${signInForm('o-signin', page.config.oidc)}`, title);
  wireSignIn(page, 'o-signin', () => route());
}

// Who is signed in, with a way out: `${prefix}-who` and `${prefix}-signout`.
function signedInLine(prefix) {
  return `<p class="actions"><span class="meta" id="${prefix}-who">Signed in: ${whoLabel()}</span>
    <button type="button" class="secondary" id="${prefix}-signout">Sign out</button></p>`;
}

function wireSignOut(prefix, then) {
  document.getElementById(`${prefix}-signout`).addEventListener('click', () => { signOut(); then(); });
}

export async function ordersPage(page) {
  await page.map.clear();
  if (!session()) {
    needsSignIn(page, 'My orders', () => ordersPage(page));
    return;
  }
  page.render(`<h1>My orders</h1><p id="o-status" class="meta" role="status">Loading…</p><ul class="cards" id="o-list"></ul>
    ${pagerHTML('o-pager')}${signedInLine('o')}`, 'My orders');
  wireSignOut('o', () => ordersPage(page));
  const pager = new Pager('o-pager', (href, offset) => showOrders(page, href, offset));
  await pager.first(`${page.config.services.downloads}/orders?limit=${ORDERS_PAGE}`);
}

async function showOrders(page, href, offset) {
  let body;
  try {
    body = await getJSON(href, { headers: { Accept: 'application/json', ...authHeaders() } });
  } catch (error) {
    if (page.current()) document.getElementById('o-status').textContent = `Cannot list your orders (${page.problemText(error)}).`;
    return null;
  }
  if (!page.current()) return null;
  const orders = body.orders || [];
  const next = nextHref(body);
  document.getElementById('o-status').textContent = `${countText('order', { first: offset + 1, shown: orders.length, matched: matchedOf(body), more: Boolean(next) })}${orders.length ? ' Newest first.' : ''}`;
  document.getElementById('o-list').innerHTML = orders.map((o) => `
    <li><h2><a href="#/orders/${encodeURIComponent(o.id)}">Order of ${h(o.created.slice(0, 16).replace('T', ' '))}</a> <span class="badge ${h(o.status)}">${h(o.status)}</span></h2>
      <p class="meta">${o.progress.ready}/${o.progress.files} files ready</p></li>`).join('');
  return { shown: orders.length, next };
}

export async function orderPage(page, orderId) {
  await page.map.clear();
  if (!session()) {
    needsSignIn(page, 'Order', () => orderPage(page, orderId));
    return;
  }
  page.render(`
    <p class="meta"><a href="#/orders">My orders</a> › ${h(orderId)}</p>
    <h1>Order <span id="od-badge" class="badge checking">loading</span></h1>
    <p id="od-status" class="meta" role="status">Loading…</p>
    <progress id="od-progress" max="1" value="0" aria-label="Files ready"></progress>
    <table id="od-files"><thead><tr><th scope="col">File</th><th scope="col">State</th><th scope="col">Download</th></tr></thead><tbody></tbody></table>`, 'Order');
  const url = `${page.config.services.downloads}/orders/${encodeURIComponent(orderId)}`;
  const poll = async () => {
    let order;
    try {
      order = await getJSON(url, { headers: { Accept: 'application/json', ...authHeaders() } });
    } catch (error) {
      if (page.current()) document.getElementById('od-status').textContent = `Cannot show this order (${page.problemText(error)}).`;
      return;
    }
    if (!page.current()) return;
    showOrder(order);
    if (!FINAL.includes(order.status)) {
      const timer = setTimeout(poll, POLL_MS);
      page.onLeave(() => clearTimeout(timer));
    }
  };
  await poll();
}

function showOrder(order) {
  const p = order.progress;
  const badge = document.getElementById('od-badge');
  badge.className = `badge ${order.status}`;
  badge.textContent = order.status;
  document.getElementById('od-status').textContent = `${p.ready} of ${p.files} files ready (${fmtBytes(p.bytes)})${order.reason ? `: ${order.reason}` : ''}.`;
  const bar = document.getElementById('od-progress');
  bar.max = Math.max(1, p.files);
  bar.value = p.done;
  const body = document.querySelector('#od-files tbody');
  // A download started in an earlier poll keeps its cell (its progress, its check, its saved file).
  const kept = Object.fromEntries([...body.querySelectorAll('td.dl[data-started]')].map((td) => [td.closest('tr').dataset.file, td.outerHTML]));
  body.innerHTML = order.files.map((f) => `
    <tr data-file="${h(f.id)}" data-state="${h(f.state)}"><td>${h(f.name)}<br><span class="meta">${h(f.item)} · ${h(f.asset)} · ${fmtBytes(f.size)}</span></td>
      <td><span class="badge ${h(f.state)}">${h(f.state)}</span>${f.reason ? `<br><span class="meta">${h(f.reason)}</span>` : ''}</td>
      ${kept[f.id] || `<td class="dl">${f.href ? `<button type="button" class="secondary dl-file">Download<span class="visually-hidden"> ${h(f.name)}</span></button>` : '–'}</td>`}</tr>`).join('');
  order.files.forEach((f) => {
    const button = body.querySelector(`tr[data-file="${f.id}"] button.dl-file`);
    if (button) button.addEventListener('click', () => download(f, button.closest('td')));
  });
}

// Fetched with the user's credentials (a plain link could not send them), checked, then saved by the browser.
async function download(file, cell) {
  cell.dataset.started = 'true';
  cell.innerHTML = '<span class="meta">downloading…</span>';
  let blob;
  try {
    const response = await fetch(file.href.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, ''), { headers: authHeaders() });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    blob = await response.blob();
  } catch (error) {
    cell.innerHTML = `<span class="meta">download failed (${h(error.message)})</span>`;
    return;
  }
  const expected = String(file.checksum || '').toLowerCase().replace(/^1220/, '');
  const digest = await sha256(blob);
  const verified = Boolean(expected && digest === expected);
  cell.dataset.verified = String(Boolean(verified));
  if (expected && digest !== null && !verified) {
    cell.innerHTML = '<span class="meta">the file did not match its checksum: not saved, try again</span>';
    return;
  }
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = file.name;
  link.textContent = `Save ${file.name}`;
  cell.innerHTML = verified ? '<span class="badge ready">sha-256 verified</span> '
    : '<span class="meta">not verified (the browser checks only on HTTPS or this machine)</span> ';
  cell.append(link);
  link.click();
}

// Hex SHA-256 of a blob; null where the browser offers no digest (a page not served over HTTPS or from localhost).
async function sha256(blob) {
  if (!window.crypto || !window.crypto.subtle) return null;
  const digest = await window.crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '? bytes';
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB'];
  let i = 0; let v = Number(n);
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}
