// HTTP helpers: every service is reached through the origin the page came from (the gateway).

export class ApiError extends Error {
  constructor(status, detail, url) {
    super(detail);
    this.status = status;
    this.url = url;
  }
}

// A URL built by a service (a STAC link, a TileJSON tile template) on this origin: only its path and query are
// kept, so that the page works under whatever name the browser used for the platform.
// Done on the string: a tile template's {z}/{x}/{y} must not be percent-encoded.
export function sameOrigin(href) {
  return String(href).replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '') || '/';
}

export async function getJSON(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: 'application/json' }, ...options });
  } catch (error) {
    throw new ApiError(0, `cannot reach ${url}: ${error.message}`, url);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && (body.detail || body.description || body.title);
    throw new ApiError(response.status, detail || `${response.status} ${response.statusText}`, url);
  }
  return body;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export function escapeHTML(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}
