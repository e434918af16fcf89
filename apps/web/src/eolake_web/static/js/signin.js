// Signing in, for ordering: at the platform's OIDC issuer (authorization code with PKCE; the page is a public
// client, the access token stays in this tab's sessionStorage) or with an API key (service accounts, the local
// demo). Browsing and searching need neither.
import { ApiError, escapeHTML as h, getJSON } from './api.js';

const SESSION = 'eolake.session';
const PENDING = 'eolake.oidc';
const MARGIN_S = 30; // a token this close to its expiry counts as expired

export function session() {
  let s = null;
  try { s = JSON.parse(sessionStorage.getItem(SESSION)); } catch { s = null; }
  if (s && s.expires && Date.now() / 1000 > s.expires - MARGIN_S) {
    sessionStorage.removeItem(SESSION);
    return null;
  }
  return s;
}

export function authHeaders() {
  const s = session();
  if (s && s.token) return { Authorization: `Bearer ${s.token}` };
  return s && s.apiKey ? { 'X-API-Key': s.apiKey } : {};
}

export function signOut() {
  sessionStorage.removeItem(SESSION);
}

async function signInWithKey(page, apiKey) {
  // Any authenticated request tells whether the key is good: my (possibly empty) list of orders.
  await getJSON(`${page.config.services.downloads}/orders?limit=1`, { headers: { Accept: 'application/json', 'X-API-Key': apiKey } });
  sessionStorage.setItem(SESSION, JSON.stringify({ apiKey, who: 'API key' }));
}

// ------------------------------------------------------------------------------------------------ OIDC

function randomText(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function discovery(oidc) {
  const doc = await getJSON(`${oidc.issuer}/.well-known/openid-configuration`);
  if (doc.issuer !== oidc.issuer || !doc.authorization_endpoint || !doc.token_endpoint) {
    throw new ApiError(0, 'the identity provider\'s discovery document does not match the configured issuer', oidc.issuer);
  }
  return doc;
}

function redirectUri() {
  return `${location.origin}/`;
}

// To the identity provider's login page; it sends the browser back to the base URL with a code.
export async function startOidc(oidc, returnTo) {
  const doc = await discovery(oidc);
  const verifier = randomText();
  const state = randomText(16);
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, returnTo, tokenEndpoint: doc.token_endpoint }));
  const params = new URLSearchParams({ response_type: 'code', client_id: oidc.client_id, redirect_uri: redirectUri(),
    scope: oidc.scope, state, code_challenge: challenge, code_challenge_method: 'S256' });
  location.assign(`${doc.authorization_endpoint}?${params}`);
}

// Back from the identity provider (?code=&state=): the code for a token, then the page the user was on.
// Returns the hash route to show, or null when this load is not a sign-in return.
export async function finishOidc(oidc) {
  const params = new URLSearchParams(location.search);
  if (!params.has('state') || !(params.has('code') || params.has('error'))) return null;
  let pending = null;
  try { pending = JSON.parse(sessionStorage.getItem(PENDING)); } catch { pending = null; }
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `/${(pending && pending.returnTo) || '#/basket'}`);
  if (!oidc || !pending || params.get('state') !== pending.state) throw new ApiError(0, 'this sign-in answer was not asked for by this page', '');
  if (params.has('error')) throw new ApiError(0, `the identity provider refused: ${params.get('error_description') || params.get('error')}`, '');
  const body = new URLSearchParams({ grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri(),
    client_id: oidc.client_id, code_verifier: pending.verifier });
  const token = await getJSON(pending.tokenEndpoint, { method: 'POST', body,
    headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' } });
  if (!token.access_token) throw new ApiError(0, 'the identity provider sent no access token', pending.tokenEndpoint);
  sessionStorage.setItem(SESSION, JSON.stringify({ token: token.access_token, who: claims(token.id_token || token.access_token),
    expires: Math.floor(Date.now() / 1000) + Number(token.expires_in || 300) }));
  return pending.returnTo;
}

function claims(jwt) {
  try {
    const payload = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return payload.preferred_username || payload.email || payload.sub || 'signed in';
  } catch {
    return 'signed in';
  }
}

// ------------------------------------------------------------------------------------------------ form

export function signInForm(id, oidc) {
  return `
    ${oidc ? `<p class="actions"><button type="button" id="${id}-oidc">Sign in with your account</button></p>
      <p class="meta">or with an API key:</p>` : ''}
    <form class="search" id="${id}" aria-label="Sign in with an API key">
      <div class="wide"><label for="${id}-key">API key</label>
        <input id="${id}-key" type="password" autocomplete="current-password" required
          placeholder="your key (locally: the content of .eolake/user.key)"></div>
      <div><button type="submit">Sign in</button></div>
      <p class="meta wide" role="status" id="${id}-status"></p>
    </form>`;
}

export function wireSignIn(page, id, then) {
  const status = document.getElementById(`${id}-status`);
  const oidcButton = document.getElementById(`${id}-oidc`);
  if (oidcButton) {
    oidcButton.addEventListener('click', () => startOidc(page.config.oidc, location.hash)
      .catch((error) => { status.textContent = `Cannot reach the identity provider (${page.problemText(error)}).`; }));
  }
  document.getElementById(id).addEventListener('submit', async (event) => {
    event.preventDefault();
    status.textContent = 'Checking the key…';
    try {
      await signInWithKey(page, document.getElementById(`${id}-key`).value.trim());
    } catch (error) {
      status.textContent = error instanceof ApiError && error.status === 401
        ? 'This key is not valid.' : `Cannot sign in (${page.problemText(error)}).`;
      return;
    }
    then();
  });
}

export function whoLabel() {
  const s = session();
  return s ? h(s.who || 'signed in') : '';
}
