// Retrieving an item kept offline (STAC storage and order extensions: `storage:tier` offline, a `retrieve` link):
// its link's body POSTed with the user's credentials creates a retrieval order at the download service, then the
// page follows the order and the item until the item is online again. Signing in works as for ordering.
import { ApiError, getJSON, sameOrigin } from './api.js';
import { authHeaders, session, signInForm, signOut, wireSignIn } from './signin.js';

const POLL_MS = 1500;
const FAILED = ['failed', 'canceled'];

export function isOffline(item) {
  return item.properties?.['storage:tier'] === 'offline';
}

export function retrieveLink(item) {
  return (item.links || []).find((l) => l.rel === 'retrieve' && l.href);
}

// The retrieval box; its data-state says where it is: offline, retrieving, online or failed.
export function retrievalHTML() {
  return `<div id="retrieval" data-state="offline">
      <p class="actions"><span class="badge offline">offline</span>
        <button type="button" id="retrieve">Retrieve</button></p>
      <p id="retrieve-status" class="meta" role="status">This item is kept in a slow storage tier. Retrieve it to stage its files back online; then preview or order it.</p>
      <div id="retrieve-signin"></div>
    </div>`;
}

function show(state, text) {
  document.getElementById('retrieval').dataset.state = state;
  document.getElementById('retrieve-status').textContent = text;
}

// `itemUrl`: the item in the catalog, polled until online; `online()`: what to do then (draw the item again).
export function wireRetrieval(page, item, itemUrl, online) {
  const button = document.getElementById('retrieve');
  if (!button) return;
  const start = () => {
    document.getElementById('retrieve-signin').innerHTML = '';
    if (!session()) {
      askSignIn(page, start);
      return;
    }
    button.disabled = true;
    retrieve(page, retrieveLink(item), itemUrl, online).then((done) => { if (!done) button.disabled = false; });
  };
  button.addEventListener('click', start);
}

function askSignIn(page, then) {
  document.getElementById('retrieve-signin').innerHTML = `<p>Sign in to retrieve this item.</p>${signInForm('r-signin', page.config.oidc)}`;
  wireSignIn(page, 'r-signin', then);
}

// POST the link's body; on success (or when the item is being retrieved already) follow it. False when refused.
async function retrieve(page, link, itemUrl, online) {
  show('retrieving', 'Asking for the retrieval…');
  let order = null;
  try {
    order = await getJSON(sameOrigin(link.href), {
      method: link.method || 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', ...authHeaders() },
      body: JSON.stringify(link.body || {}),
    });
  } catch (error) {
    if (!page.current()) return false;
    if (error instanceof ApiError && error.status === 401) {
      signOut();
      show('offline', 'Your sign-in was refused (expired or revoked): sign in again.');
      askSignIn(page, () => document.getElementById('retrieve').click());
      return false;
    }
    // 409: retrieved already, or being retrieved by another order: the item itself says when it is online.
    if (!(error instanceof ApiError && error.status === 409)) {
      show('failed', `The retrieval was refused (${page.problemText(error)}).`);
      return false;
    }
  }
  const orderUrl = order ? `${page.config.services.downloads}/orders/${encodeURIComponent(order.id)}` : null;
  await follow(page, itemUrl, orderUrl, online);
  return true;
}

// Poll the order (for its progress and failure) and the item (for its tier) until the item is online.
async function follow(page, itemUrl, orderUrl, online) {
  let order = null;
  let item;
  try {
    if (orderUrl) order = await getJSON(orderUrl, { headers: { Accept: 'application/json', ...authHeaders() } });
    item = await getJSON(itemUrl, { cache: 'no-store' });
  } catch (error) {
    if (page.current()) show('failed', `Cannot follow the retrieval (${page.problemText(error)}).`);
    return;
  }
  if (!page.current()) return;
  if (!isOffline(item)) {
    await online();
    return;
  }
  if (order && FAILED.includes(order.status)) {
    show('failed', `The retrieval ${order.status}${order.reason ? `: ${order.reason}` : ''}.`);
    return;
  }
  const progress = order ? ` (order ${order.status}, ${order.progress.ready} of ${order.progress.files} files ready)` : '';
  show('retrieving', `Retrieving from the slow storage tier${progress}…`);
  const timer = setTimeout(() => follow(page, itemUrl, orderUrl, online), POLL_MS);
  page.onLeave(() => clearTimeout(timer));
}
