// Collection descriptions are Markdown (STAC says CommonMark): parsed by marked, then sanitised by DOMPurify before
// they reach the page. Images are dropped (they would come from other origins, which the page's CSP refuses).
import { escapeHTML as h } from './api.js';

const PURIFY = { FORBID_TAGS: ['img', 'style', 'form', 'input', 'button', 'iframe', 'svg', 'math'], FORBID_ATTR: ['style'] };

export function markdownHTML(text) {
  if (!window.marked || !window.DOMPurify) return `<p>${h(text)}</p>`;
  const html = window.DOMPurify.sanitize(window.marked.parse(String(text || ''), { async: false }), PURIFY);
  const box = document.createElement('div');
  box.innerHTML = html;
  box.querySelectorAll('a[href]').forEach((a) => {
    if (!/^(https?:|#|\/)/i.test(a.getAttribute('href'))) a.removeAttribute('href');
    else if (/^https?:/i.test(a.getAttribute('href'))) a.rel = 'noopener noreferrer';
  });
  return box.innerHTML;
}

// The text of a description without its markup, cut at `limit` characters (for lists).
export function markdownExcerpt(text, limit = 220) {
  const box = document.createElement('div');
  box.innerHTML = markdownHTML(text);
  const plain = box.textContent.replace(/\s+/g, ' ').trim();
  return plain.length > limit ? `${plain.slice(0, limit)}…` : plain;
}
