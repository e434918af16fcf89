// The operations console, for administrators: the SLOs and their error budgets, alerts firing and silenced (each
// with its runbook), each service's traffic, errors and latency, the download queue, the database; and traces.
// Everything comes from Prometheus, Alertmanager and the trace store through the web view's admin-only proxy
// (/console/api/…): the browser never reaches them itself. Pictures first; numbers are in their text alternatives.
import { ApiError, escapeHTML as h, getJSON, query } from './api.js';
import { authHeaders, session, signInForm, signOut, whoLabel, wireSignIn } from './signin.js';
import { bars, colour, gauge, lineChart } from './svgchart.js';

const API = '/console/api';
const HOUR = 3600;
const STEP = 60;
const REFRESH_MS = 30000;
const HTTP = 'route!~"/healthz|/readyz|/metrics"'; // the kit's probes are nobody's traffic
// Burn-rate windows and the rate at which their alert fires (monitoring/slos.yaml's policy).
const WINDOWS = [['5m', 14.4], ['1h', 14.4], ['30m', 6], ['6h', 6], ['3d', 1]];
const PERIOD = '30d';

// Every PromQL expression the console sends: the recording rules of monitoring/rules/slo.yaml and the metrics the
// kit, the download service, the backup schedule and the PostgreSQL exporter export.
export const QUERIES = {
  objective: 'slo:objective:ratio',
  budget: `1 - avg_over_time((slo:sli_error:ratio_rate1h >= 0)[${PERIOD}:1m]) / on (slo) (1 - slo:objective:ratio)`,
  events: 'slo:sli_events:increase1h',
  burn: (w) => `slo:sli_error:ratio_rate${w} / on (slo) (1 - slo:objective:ratio)`,
  alerts: 'max by (alertname, severity) (ALERTS{alertstate="firing"})',
  rate: `sum by (service) (rate(eolake_http_requests_total{${HTTP}}[5m]))`,
  errors: `sum by (service) (rate(eolake_http_requests_total{${HTTP},status_class="5xx"}[5m])) / sum by (service) (rate(eolake_http_requests_total{${HTTP}}[5m]))`,
  p95: `histogram_quantile(0.95, sum by (service, le) (rate(eolake_http_request_duration_seconds_bucket{${HTTP}}[5m])))`,
  queue: 'sum(eolake_download_queue_depth)',
  jobs: 'sum by (outcome) (increase(eolake_download_jobs_total[5m]))',
  connections: 'sum(pg_stat_database_numbackends)',
  maxConnections: 'max(pg_settings_max_connections)',
  size: 'sum(pg_database_size_bytes{datname!~"template.*"})',
  backupAge: 'time() - max(eolake_backup_last_success_timestamp_seconds > 0)',
  backupInterval: 'max(eolake_backup_interval_seconds)',
  replication: 'max(pg_stat_replication_pg_wal_lsn_diff)',
};

const fmt = {
  percent: (v) => `${(v * 100).toFixed(v !== 0 && Math.abs(v) < 0.01 ? 2 : 1)} %`,
  rate: (v) => (v >= 10 ? `${v.toFixed(0)}/s` : `${v.toFixed(2)}/s`),
  seconds: (v) => (v >= 1 ? `${v.toFixed(2)} s` : `${(v * 1000).toFixed(0)} ms`),
  count: (v) => v.toFixed(v < 10 && v % 1 ? 1 : 0),
  times: (v) => `${v.toFixed(v >= 10 ? 0 : 1)}×`,
  bytes: (v) => {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    const i = Math.min(units.length - 1, Math.max(0, Math.floor(Math.log10(Math.max(v, 1)) / 3)));
    return `${(v / 1000 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  age: (v) => (v >= 86400 ? `${(v / 86400).toFixed(1)} d` : v >= 3600 ? `${(v / 3600).toFixed(1)} h` : `${Math.round(v / 60)} min`),
};

// ------------------------------------------------------------------------------------------------ the proxy

async function api(path, params = {}) {
  return getJSON(`${API}/${path}${query(params)}`, { headers: { Accept: 'application/json', ...authHeaders() } });
}

async function instant(expr) {
  const body = await api('prometheus/api/v1/query', { query: expr });
  return body.data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
}

async function range(expr, end) {
  const body = await api('prometheus/api/v1/query_range', { query: expr, start: end - HOUR, end, step: STEP });
  return body.data.result.map((r) => ({ labels: r.metric, points: r.values.map(([t, v]) => [Number(t), Number(v)]) }));
}

function single(results) {
  return results.length ? results[0].value : NaN;
}

// ------------------------------------------------------------------------------------------------ the page

export async function consolePage(page, parts, params) {
  document.body.dataset.console = 'loading'; // what the console shows once drawn: sign-in, forbidden, overview…
  await page.map.clear();
  if (!session()) {
    signInView(page, parts, params, 'The operations console is for administrators: sign in with an administrator\'s account or API key.');
    return;
  }
  const sub = parts[0] || '';
  try {
    if (sub === 'traces' && parts[1]) await tracePage(page, parts[1]);
    else if (sub === 'traces') await tracesPage(page, params);
    else await overviewPage(page);
  } catch (error) {
    if (!(error instanceof ApiError) || ![401, 403, 502, 503, 504].includes(error.status)) throw error;
    if (!page.current()) return;
    if (error.status >= 500) {
      page.render(`${header(sub === 'traces' ? 'traces' : 'overview')}<p class="note" id="con-unavailable" role="alert">${h(page.problemText(error))}</p>`, 'Operations console');
      document.body.dataset.console = 'unavailable';
      wireSignOut(page, parts, params);
    } else if (error.status === 401) {
      signOut();
      signInView(page, parts, params, 'Your sign-in is no longer valid: sign in again.');
    } else {
      forbiddenView(page, parts, params);
    }
  }
}

function header(active) {
  return `
    <h1>Operations console</h1>
    <p class="meta">Signed in as ${whoLabel()} · <button type="button" class="secondary" id="con-signout">Sign out</button></p>
    <nav class="con-tabs" aria-label="Console"><a href="#/console" ${active === 'overview' ? 'aria-current="page"' : ''}>Health</a>
      <a href="#/console/traces" ${active === 'traces' ? 'aria-current="page"' : ''}>Traces</a></nav>`;
}

function wireSignOut(page, parts, params) {
  document.getElementById('con-signout')?.addEventListener('click', () => {
    signOut();
    signInView(page, parts, params, 'Signed out.');
  });
}

function signInView(page, parts, params, why) {
  page.render(`<h1>Operations console</h1><p class="lead" id="con-why">${h(why)}</p>${signInForm('con-signin', page.config.oidc)}`, 'Operations console');
  document.body.dataset.console = 'sign-in';
  wireSignIn(page, 'con-signin', () => consolePage(page, parts, params));
}

function forbiddenView(page, parts, params) {
  page.render(`${header('')}<p class="note" id="con-forbidden" role="alert">You are signed in without the administrator role: the operations console is for administrators. Sign out and sign in as one.</p>`, 'Operations console');
  document.body.dataset.console = 'forbidden';
  wireSignOut(page, parts, params);
}

// ------------------------------------------------------------------------------------------------ health

async function overviewPage(page) {
  // The first query doubles as the access check: a 401 or 403 reaches consolePage before anything is drawn.
  const objectives = await instant(QUERIES.objective);
  if (!page.current()) return;
  page.render(`${header('overview')}
    <p class="lead">The platform now and over the last hour, from Prometheus and Alertmanager; refreshed every ${REFRESH_MS / 1000} s.</p>
    <section aria-labelledby="con-slo-h"><h2 id="con-slo-h">Service level objectives</h2>
      <p class="meta">Error budget left over the ${PERIOD} period (mean of the hourly error ratios, hours without traffic left out), and how fast each window burns it: 1× spends exactly the budget over the period; a red bar has reached the rate its alert fires at.</p>
      <div class="con-grid" id="con-slos"></div></section>
    <section aria-labelledby="con-alerts-h"><h2 id="con-alerts-h">Alerts</h2><div id="con-alerts"></div></section>
    <section aria-labelledby="con-svc-h"><h2 id="con-svc-h">Services, last hour</h2><div class="con-grid wide" id="con-services"></div></section>
    <section aria-labelledby="con-dl-h"><h2 id="con-dl-h">Download queue</h2><div class="con-grid wide" id="con-downloads"></div></section>
    <section aria-labelledby="con-db-h"><h2 id="con-db-h">Database</h2><div id="con-database"></div></section>
    <p class="meta" id="con-status" role="status">Loading…</p>`, 'Operations console');
  document.body.dataset.console = 'overview';
  wireSignOut(page, [], new URLSearchParams());
  const refresh = () => drawOverview(page, objectives).catch((error) => {
    if (page.current()) document.getElementById('con-status').textContent = `Refresh failed (${page.problemText(error)}).`;
  });
  const timer = setInterval(refresh, REFRESH_MS);
  page.onLeave(() => clearInterval(timer));
  await drawOverview(page, objectives);
}

async function drawOverview(page, objectives) {
  const end = Math.floor(Date.now() / 1000);
  const sections = [
    ['con-slos', () => sloCards(objectives)],
    ['con-alerts', () => alertsSection(end)],
    ['con-services', () => servicesSection(end)],
    ['con-downloads', () => downloadsSection(end)],
    ['con-database', () => databaseSection(end)],
  ];
  await Promise.all(sections.map(async ([id, draw]) => {
    let html;
    try {
      html = await draw();
    } catch (error) {
      if (error instanceof ApiError && [401, 403].includes(error.status)) throw error;
      html = `<p class="meta con-error">Cannot read this (${h(page.problemText(error))}).</p>`;
    }
    if (page.current()) document.getElementById(id).innerHTML = html;
  }));
  if (!page.current()) return;
  document.getElementById('con-status').textContent = `Updated at ${new Date(end * 1000).toLocaleTimeString()}.`;
  window.eolake.console = { updated: end, charts: document.querySelectorAll('#content figure').length };
}

async function sloCards(objectives) {
  if (!objectives.length) return '<p class="meta">No SLO recording rules are loaded in Prometheus (monitoring/rules/slo.yaml).</p>';
  const [budgets, events, ...burns] = await Promise.all([instant(QUERIES.budget), instant(QUERIES.events),
    ...WINDOWS.map(([w]) => instant(QUERIES.burn(w)))]);
  const bySlo = (results, slo) => single(results.filter((r) => r.labels.slo === slo));
  return objectives.sort((a, b) => a.labels.slo.localeCompare(b.labels.slo)).map(({ labels, value }) => {
    const budget = bySlo(budgets, labels.slo);
    const seen = bySlo(events, labels.slo);
    return `<article class="con-card" data-slo="${h(labels.slo)}">
      <h3>${h(labels.slo)}</h3>
      <p class="meta">${h(labels.service)} · objective ${fmt.percent(value)} · ${Number.isFinite(seen) ? `${fmt.count(seen)} events in the last hour` : 'no events in the last hour'}</p>
      ${gauge({ value: budget, max: 1, format: fmt.percent, label: 'error budget left',
    steps: [{ at: -Infinity, colour: '#c0392b' }, { at: 0.25, colour: '#d98e04' }, { at: 0.5, colour: '#2e8b57' }] })}
      ${bars({ items: WINDOWS.map(([w, limit], i) => ({ label: w, value: bySlo(burns[i], labels.slo), limit })), format: fmt.times, label: 'burn rate by window' })}
    </article>`;
  }).join('');
}

async function alertsSection(end) {
  const [rules, managed, silences, history] = await Promise.all([
    api('prometheus/api/v1/alerts'),
    api('alertmanager/api/v2/alerts', { active: 'true', silenced: 'true', inhibited: 'true' }).catch((e) => e),
    api('alertmanager/api/v2/silences').catch((e) => e),
    range(QUERIES.alerts, end),
  ]);
  const silenced = new Set((Array.isArray(managed) ? managed : [])
    .filter((a) => (a.status?.silencedBy || []).length).map((a) => alertKey(a.labels)));
  const alerts = rules.data.alerts.filter((a) => a.state === 'firing' || a.state === 'pending')
    .sort((a, b) => severityRank(a.labels.severity) - severityRank(b.labels.severity) || a.labels.alertname.localeCompare(b.labels.alertname));
  const active = Array.isArray(silences) ? silences.filter((s) => s.status?.state === 'active') : [];
  return `${timeline(history, end)}
    <ul class="con-alerts" aria-label="Alerts firing or pending">${alerts.map((a) => alertItem(a, silenced.has(alertKey(a.labels)))).join('')
      || '<li class="meta">No alert is firing or pending.</li>'}</ul>
    <h3>Silences</h3>
    ${Array.isArray(silences) ? `<ul class="con-alerts" aria-label="Active silences">${active.map(silenceItem).join('') || '<li class="meta">No active silence.</li>'}</ul>`
    : `<p class="meta con-error">Alertmanager cannot be read (${h(silences.message)}).</p>`}`;
}

function alertKey(labels) {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'alertstate').sort());
}

function severityRank(severity) {
  return { page: 0, ticket: 1, heartbeat: 3 }[severity] ?? 2;
}

function alertItem(alert, isSilenced) {
  const { labels, annotations = {} } = alert;
  const runbook = annotations.runbook_url;
  const where = Object.entries(labels).filter(([k]) => !['alertname', 'severity', 'alertstate'].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(', ');
  return `<li class="con-alert ${h(labels.severity || '')}" data-alert="${h(labels.alertname)}" data-state="${h(alert.state)}${isSilenced ? ' silenced' : ''}">
    <span class="badge sev-${h(labels.severity || 'none')}">${h(labels.severity || 'no severity')}</span>
    <strong>${h(labels.alertname)}</strong> ${alert.state === 'pending' ? '<span class="badge pending">pending</span>' : ''}${isSilenced ? '<span class="badge silenced">silenced</span>' : ''}
    <span class="meta">since ${h(new Date(alert.activeAt).toLocaleString())}${where ? ` · ${h(where)}` : ''}</span>
    <div class="desc">${h(annotations.summary || '')}</div>
    ${runbook && /^https?:\/\//.test(runbook) ? `<a class="runbook" href="${h(runbook)}" rel="noopener noreferrer">Runbook: ${h(labels.alertname)}</a>` : '<span class="meta">no runbook</span>'}
  </li>`;
}

function silenceItem(silence) {
  const matchers = silence.matchers.map((m) => `${m.name}${m.isEqual === false ? '!' : ''}${m.isRegex ? '=~' : '='}"${m.value}"`).join(', ');
  return `<li class="con-silence"><strong>${h(matchers)}</strong>
    <span class="meta">until ${h(new Date(silence.endsAt).toLocaleString())} · by ${h(silence.createdBy)}</span>
    <div class="desc">${h(silence.comment)}</div></li>`;
}

// One lane per alert over the last hour: a bar where it was firing.
function timeline(history, end) {
  const start = end - HOUR;
  if (!history.length) {
    return `<figure class="chart-svg" data-series="0"><svg viewBox="0 0 640 34" width="640" height="34" role="img" aria-label="No alert fired in the last hour">
      <rect x="0" y="6" width="640" height="22" fill="#e9f5ee"/><text x="320" y="21" text-anchor="middle" font-size="12" fill="#2e8b57">no alert fired in the last hour</text></svg>
      <figcaption>Alerts firing, last hour</figcaption></figure>`;
  }
  const left = 200;
  const width = 900;
  const lane = 20;
  const x = (t) => left + ((t - start) / HOUR) * (width - left);
  const lanes = history.map((s, i) => {
    const y = i * lane;
    const runs = s.points.filter(([, v]) => v > 0).map(([t]) => `<rect x="${x(t - STEP / 2).toFixed(1)}" y="${y + 3}" width="${(((width - left) * STEP) / HOUR).toFixed(1)}" height="${lane - 6}" fill="${s.labels.severity === 'page' ? '#c0392b' : s.labels.severity === 'ticket' ? '#d98e04' : '#7f8c8d'}"/>`).join('');
    return `<text x="0" y="${y + 14}" font-size="11" fill="#1d2a33">${h(s.labels.alertname)}</text>${runs}`;
  }).join('');
  const label = history.map((s) => `${s.labels.alertname} (${s.labels.severity || 'no severity'}) fired ${s.points.filter(([, v]) => v > 0).length} of 60 minutes`).join('; ');
  return `<figure class="chart-svg" data-series="${history.length}"><svg viewBox="0 0 ${width} ${history.length * lane}" width="${width}" height="${history.length * lane}" role="img" aria-label="${h(`Alerts firing, last hour: ${label}`)}">${lanes}</svg>
    <figcaption>Alerts firing, last hour (red: page, orange: ticket, grey: other)</figcaption></figure>`;
}

async function servicesSection(end) {
  const [rate, errors, p95] = await Promise.all([range(QUERIES.rate, end), range(QUERIES.errors, end), range(QUERIES.p95, end)]);
  const start = end - HOUR;
  // One colour per service in all three charts.
  const names = [...new Set([...rate, ...errors, ...p95].map((r) => r.labels.service || '?'))].sort();
  const named = (results) => results.map((r) => ({ name: r.labels.service || '?', points: r.points }))
    .sort((a, b) => a.name.localeCompare(b.name)).map((s) => ({ ...s, colour: colour(names.indexOf(s.name)) }));
  return [
    lineChart({ series: named(rate), start, end, format: fmt.rate, label: 'Requests per second by service' }),
    lineChart({ series: named(errors), start, end, format: fmt.percent, label: 'Share of requests answered 5xx, by service' }),
    lineChart({ series: named(p95), start, end, format: fmt.seconds, label: 'Latency p95 by service',
      limits: [{ value: 0.5, label: 'SLO threshold 0.5 s (catalog search, tiles)' }] }),
  ].join('');
}

async function downloadsSection(end) {
  const [queue, jobs] = await Promise.all([range(QUERIES.queue, end), range(QUERIES.jobs, end)]);
  const start = end - HOUR;
  return [
    lineChart({ series: queue.map((r) => ({ name: 'files waiting or staging', points: r.points })), start, end, format: fmt.count,
      label: 'Files waiting for or being staged' }),
    lineChart({ series: jobs.map((r) => ({ name: r.labels.outcome, points: r.points })), start, end, format: fmt.count,
      label: 'Orders finished per 5 minutes, by outcome' }),
  ].join('');
}

async function databaseSection(end) {
  const [connections, most, size, age, interval, lag] = await Promise.all([range(QUERIES.connections, end),
    instant(QUERIES.maxConnections), range(QUERIES.size, end), instant(QUERIES.backupAge), instant(QUERIES.backupInterval),
    instant(QUERIES.replication)]);
  const limit = single(most);
  const now = connections[0]?.points.at(-1)?.[1];
  const backupAge = single(age);
  const every = single(interval);
  const start = end - HOUR;
  return `<div class="con-grid">${[
    gauge({ value: now, max: limit, format: (v) => `${fmt.count(v)} of ${fmt.count(limit)}`, label: 'Connections in use now',
      steps: [{ at: 0, colour: '#2e8b57' }, { at: limit * 0.8, colour: '#c0392b' }] }),
    gauge({ value: backupAge, max: Number.isFinite(every) ? 2 * every : 86400, format: fmt.age, label: 'Age of the last base backup',
      note: Number.isFinite(every) ? `alert past ${fmt.age(2 * every)}` : 'no backup schedule is running',
      steps: [{ at: 0, colour: '#2e8b57' }, { at: Number.isFinite(every) ? every * 1.2 : 86400, colour: '#d98e04' }, { at: Number.isFinite(every) ? 2 * every : 2 * 86400, colour: '#c0392b' }] }),
    gauge({ value: single(lag), max: 512 * 1024 * 1024, format: fmt.bytes, label: 'Replication: WAL a standby has not replayed',
      note: lag.length ? 'alert past 512 MB' : 'no standby streams from this database', steps: [{ at: 0, colour: '#2e8b57' }] }),
  ].join('')}</div><div class="con-grid wide">${[
    lineChart({ series: connections.map((r) => ({ name: 'connections', points: r.points })), start, end, format: fmt.count,
      label: 'Connections, last hour', limits: Number.isFinite(limit) ? [{ value: limit, label: `max_connections ${limit}` }] : [] }),
    lineChart({ series: size.map((r) => ({ name: 'size', points: r.points })), start, end, format: fmt.bytes, label: 'Size of the databases, last hour' }),
  ].join('')}</div>`;
}

// ------------------------------------------------------------------------------------------------ traces

async function tracesPage(page, params) {
  const [recent, slow, failed] = await Promise.all([
    api('traces', { limit: 20 }), api('traces', { limit: 20, min_duration_ms: 500 }), api('traces', { limit: 20, errors: 'true' })]);
  if (!page.current()) return;
  page.render(`${header('traces')}
    <p class="lead">Requests as traces: every service the request went through, each database query, in one waterfall. The services log each request's <code>trace_id</code>.</p>
    <form class="search" id="trace-form" role="search" aria-label="Find a trace">
      <div class="wide"><label for="trace-id">Trace id</label><input id="trace-id" name="id" pattern="[0-9a-fA-F]{32}" required placeholder="32 hexadecimal digits, from a log line's trace_id"></div>
      <div><button type="submit">Show the trace</button></div>
      <p class="meta wide" id="trace-form-status" role="status"></p>
    </form>
    <h2>Failed recently</h2>${traceList(failed.traces, 'failed')}
    <h2>Slow recently (≥ 500 ms)</h2>${traceList(slow.traces, 'slow')}
    <h2>Most recent</h2>${traceList(recent.traces, 'recent')}
    <p class="meta">The store keeps the newest ${h(recent.store.max_spans)} spans (${h(recent.store.traces)} traces now).</p>`, 'Traces');
  document.body.dataset.console = 'traces';
  wireSignOut(page, ['traces'], params);
  document.getElementById('trace-form').addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/console/traces/${document.getElementById('trace-id').value.trim().toLowerCase()}`;
  });
}

function traceList(traces, kind) {
  if (!traces.length) return `<p class="meta">None kept.</p>`;
  const longest = Math.max(...traces.map((t) => t.duration_ms), 1);
  return `<ul class="con-traces" data-kind="${kind}">${traces.map((t) => `<li>
    <a href="#/console/traces/${h(t.trace_id)}">${h(t.root.service)} ${h(t.root.name)}</a>
    <svg viewBox="0 0 200 10" width="200" height="10" role="img" aria-label="${h(`${t.duration_ms.toFixed(1)} ms`)}"><rect width="${Math.max(1, (200 * t.duration_ms) / longest).toFixed(1)}" height="10" fill="${t.error ? '#c0392b' : '#0b5f8a'}"/></svg>
    <span class="meta">${t.duration_ms.toFixed(1)} ms · ${t.span_count} spans · ${h(t.services.join(', '))} · ${h(new Date(t.start_ms).toLocaleTimeString())}</span></li>`).join('')}</ul>`;
}

async function tracePage(page, traceId) {
  let trace;
  try {
    trace = await api(`traces/${encodeURIComponent(traceId)}`);
  } catch (error) {
    if (!(error instanceof ApiError) || ![400, 404].includes(error.status)) throw error;
    page.render(`${header('traces')}<p role="status" id="trace-missing">No trace ${h(traceId)} (${h(page.problemText(error))}).</p><p><a href="#/console/traces">Recent traces</a></p>`, 'Trace');
    wireSignOut(page, ['traces', traceId], new URLSearchParams());
    return;
  }
  if (!page.current()) return;
  page.render(`${header('traces')}
    <p class="meta"><a href="#/console/traces">Traces</a> › ${h(trace.trace_id)}</p>
    <h2>${h(trace.root.service)} ${h(trace.root.name)}</h2>
    <p class="meta">${trace.duration_ms.toFixed(1)} ms · ${trace.span_count} spans · ${trace.error ? '<strong>failed</strong> · ' : ''}${new Date(trace.start_ms).toLocaleString()}</p>
    ${waterfall(trace)}
    <h3>Span details</h3><p class="meta" id="span-hint">Choose a span in the waterfall.</p><dl class="con-span" id="span-details"></dl>`, `Trace ${trace.trace_id.slice(0, 8)}`);
  document.body.dataset.console = 'trace';
  wireSignOut(page, ['traces', traceId], new URLSearchParams());
  document.querySelectorAll('#waterfall [data-span]').forEach((row) => {
    const show = () => spanDetails(trace.spans[Number(row.dataset.span)]);
    row.addEventListener('click', show);
    row.addEventListener('keydown', (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); show(); } });
  });
}

function waterfall(trace) {
  const services = [...new Set(trace.spans.map((s) => s.service))];
  const width = 900;
  const left = 330;
  const row = 20;
  const total = Math.max(trace.duration_ms, 0.001);
  const x = (ms) => left + (ms / total) * (width - left - 60);
  const rows = trace.spans.map((s, i) => {
    const y = i * row;
    const fill = colour(services.indexOf(s.service));
    const name = spanLabel(s).slice(0, 48 - Math.min(s.depth, 10) * 2);
    return `<g data-span="${i}" tabindex="0" role="button" aria-label="${h(`${s.service} ${s.name}, ${s.duration_ms.toFixed(2)} ms${s.error ? ', failed' : ''}`)}">
      <title>${h(`${s.service}: ${s.name} (${s.kind}) ${s.duration_ms.toFixed(2)} ms at +${s.offset_ms.toFixed(2)} ms`)}</title>
      <rect x="0" y="${y}" width="${width}" height="${row}" fill="${i % 2 ? '#f6f8f9' : '#ffffff'}"/>
      <text x="${4 + Math.min(s.depth, 10) * 12}" y="${y + 14}" font-size="11" fill="${s.error ? '#c0392b' : '#1d2a33'}">${h(name)}</text>
      <rect x="${x(s.offset_ms).toFixed(1)}" y="${y + 4}" width="${Math.max(1, x(s.offset_ms + s.duration_ms) - x(s.offset_ms)).toFixed(1)}" height="${row - 8}" fill="${fill}" ${s.error ? 'stroke="#c0392b" stroke-width="2"' : ''}/>
      <text x="${(x(s.offset_ms + s.duration_ms) + 4).toFixed(1)}" y="${y + 14}" font-size="10" fill="#5b6b75">${s.duration_ms.toFixed(1)} ms</text>
    </g>`;
  }).join('');
  return `<figure class="chart-svg" id="waterfall" data-spans="${trace.spans.length}" data-services="${h(services.join(' '))}">
    <svg viewBox="0 0 ${width} ${trace.spans.length * row}" width="${width}" height="${trace.spans.length * row}" role="group" aria-label="Waterfall of the trace's ${trace.spans.length} spans">${rows}</svg>
    <ul class="chart-legend">${services.map((s, i) => `<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="${colour(i)}"/></svg> ${h(s)}</li>`).join('')}</ul>
  </figure>`;
}

// A client span is named by its method only: the path it called says more.
function spanLabel(span) {
  const url = span.attributes['http.url'] || span.attributes['url.full'];
  if (span.kind !== 'CLIENT' || !url) return span.name;
  try {
    return `${span.name} → ${new URL(url).pathname}`;
  } catch {
    return span.name;
  }
}

function spanDetails(span) {
  document.getElementById('span-hint').textContent = `${span.service}: ${span.name}`;
  const rows = [['kind', span.kind], ['status', `${span.status}${span.status_message ? ` (${span.status_message})` : ''}`],
    ['starts at', `+${span.offset_ms.toFixed(3)} ms`], ['lasts', `${span.duration_ms.toFixed(3)} ms`], ['span id', span.span_id],
    ['parent', span.parent_span_id || '(root)'], ...Object.entries(span.attributes)];
  document.getElementById('span-details').innerHTML = rows.map(([k, v]) => `<dt>${h(k)}</dt><dd>${h(v)}</dd>`).join('');
}
