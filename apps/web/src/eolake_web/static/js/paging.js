// Lists that come a page at a time: what the status line says about the total, and Previous/Next buttons that
// show only when there is such a page. A total is the service's own (numberMatched); without it the page says
// only what it knows for sure ("more than N"), never a guess.
import { escapeHTML as h, sameOrigin } from './api.js';

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

// The answer's total: numberMatched (STAC API), or the older context extension's matched.
export function matchedOf(body) {
  const matched = body.numberMatched ?? body.context?.matched;
  return Number.isInteger(matched) && matched >= 0 ? matched : null;
}

// The catalog marks a total that is the planner's estimate rather than a count: it is shown as "about N".
export function isEstimate(body) {
  return body?.['eolake:numberMatchedEstimated'] === true;
}

export function nextHref(body) {
  const link = (body.links || []).find((l) => l.rel === 'next' && (!l.method || l.method === 'GET'));
  return link ? sameOrigin(link.href) : null;
}

// "12 collections.", "Collections 51–100 of 390.", "Orders 1–50 of more than 50.", "Results 1–20 of about 4000."
export function countText(noun, { first, shown, matched, more, estimated = false }) {
  if (!shown) return first === 1 ? `No ${noun}s.` : `No more ${noun}s.`;
  const last = first + shown - 1;
  let total = last; // the last page: everything before it was shown too
  if (matched !== null && matched >= last) total = matched;
  else if (more) total = null; // a total the service did not give is not guessed
  if (first === 1 && total === last) return `${plural(last, noun)}.`;
  const label = noun.charAt(0).toUpperCase() + noun.slice(1);
  const of = total === null ? `more than ${last}` : `${estimated && total === matched ? 'about ' : ''}${total}`;
  return `${label}s ${first}–${last} of ${of}.`;
}

export function pagerHTML(id) {
  return `<div class="pager" id="${h(id)}" hidden>
      <button type="button" class="secondary" id="${h(id)}-prev">Previous page</button>
      <span id="${h(id)}-page" class="meta"></span>
      <button type="button" class="secondary" id="${h(id)}-next">Next page</button>
    </div>`;
}

// `load(href, offset)` draws the page at `href` (whose first result is number offset + 1) and returns
// {shown, next}, or null when it could not (or the user has moved on): the pager then stays as it was.
export class Pager {
  constructor(id, load) {
    this.id = id;
    this.load = load;
    this.pages = []; // [{href, shown, next}] up to the current one
    this.index = -1;
    document.getElementById(`${id}-next`).addEventListener('click', () => this.next());
    document.getElementById(`${id}-prev`).addEventListener('click', () => this.previous());
  }

  first(href) {
    return this.go(0, href);
  }

  async go(index, href) {
    const offset = this.pages.slice(0, index).reduce((n, p) => n + p.shown, 0);
    const answer = await this.load(href, offset);
    if (!answer) return;
    this.pages = [...this.pages.slice(0, index), { href, ...answer }];
    this.index = index;
    this.show();
  }

  next() {
    const page = this.pages[this.index];
    if (page && page.next) this.go(this.index + 1, page.next);
  }

  previous() {
    if (this.index > 0) this.go(this.index - 1, this.pages[this.index - 1].href);
  }

  show() {
    const pager = document.getElementById(this.id);
    if (!pager) return;
    const more = Boolean(this.pages[this.index].next);
    pager.hidden = !(more || this.index > 0);
    document.getElementById(`${this.id}-prev`).hidden = this.index === 0;
    document.getElementById(`${this.id}-next`).hidden = !more;
    document.getElementById(`${this.id}-page`).textContent = `Page ${this.index + 1}`;
  }
}
