// The hydrology page: virtual stations on the map and in a list, and a station's water-level series as a chart
// with its uncertainty band, for a date range. Both come from the time-series service's OGC APIs: the stations
// from its Features collection, a station's water levels from its EDR `locations` query (CoverageJSON).
import { escapeHTML as h, getJSON, query, sameOrigin } from './api.js';
import { drawChart, seriesSummary } from './chart.js';

// The water extent of the stations' rivers, drawn under them (water pixels only): the demo's product, where the
// platform has it; elsewhere the basemap's rivers alone.
const WATER_EXTENT = { collection: 'garonne-wse', asset: 'water_extent', colormap: { 1: [61, 133, 198, 255] } };
const STATION_ZOOM = 11; // the river's banks and the station on them; the nearest stations a few km away
const STATIONS = '/collections/stations';
const MAX_PAGES = 20; // of up to 1000 stations each

// Every station of the Features collection, following its `next` links.
async function allStations(prefix) {
  const stations = [];
  let url = `${prefix}${STATIONS}/items${query({ limit: 1000 })}`;
  for (let i = 0; url && i < MAX_PAGES; i += 1) {
    const body = await getJSON(url);
    stations.push(...(body.features || []));
    const next = (body.links || []).find((l) => l.rel === 'next');
    url = next ? sameOrigin(next.href) : null;
  }
  return stations;
}

// A CoverageJSON PointSeries coverage as the chart's points, unit and height reference.
export function coveragePoints(coverage) {
  const times = coverage.domain?.axes?.t?.values || [];
  const wse = coverage.ranges?.wse?.values || [];
  const wseU = coverage.ranges?.wse_u?.values || [];
  return {
    points: times.map((time, i) => ({ time, height: wse[i], uncertainty: wseU[i] })),
    unit: coverage.parameters?.wse?.unit?.symbol?.value || 'm',
    reference: coverage['eolake:station']?.reference,
  };
}

export async function hydrologyPage(page, stationId) {
  page.render(`
    <h1>Hydrology</h1>
    <p class="lead">Virtual stations: water levels of rivers measured by satellite altimetry. Choose a station on the map or in the list.</p>
    ${page.DEMO_NOTE}
    <p id="h-status" class="meta" role="status">Loading stations…</p>
    <ul class="cards" id="h-list" aria-label="Stations"></ul>
    <section id="h-station" aria-labelledby="h-title" hidden>
      <h2 id="h-title"></h2>
      <p id="h-meta" class="meta"></p>
      <p id="h-along" class="meta"></p>
      <form class="range" id="h-range" aria-label="Date range">
        <div><label for="h-start">From</label><input id="h-start" type="date"></div>
        <div><label for="h-end">To</label><input id="h-end" type="date"></div>
        <div><button type="submit">Show</button></div>
      </form>
      <p id="h-chart-status" class="meta" role="status"></p>
      <div class="chart" id="h-chart"></div>
      <p><a id="h-csv" href="#">Download the series (CSV)</a></p>
    </section>`, 'Hydrology');
  await page.map.clear();
  const prefix = page.svc('timeseries');
  const status = document.getElementById('h-status');
  if (prefix === null) {
    status.textContent = 'The time-series service is not part of this platform.';
    return;
  }
  let features;
  try {
    features = await allStations(prefix);
  } catch (error) {
    if (page.current()) status.textContent = `Cannot list the stations (${page.problemText(error)}).`;
    return;
  }
  if (!page.current()) return;
  const stations = features.map((f) => ({ ...f, sid: String(f.id ?? f.properties?.id) }));
  status.textContent = `${stations.length} station${stations.length === 1 ? '' : 's'}.`;
  const list = document.getElementById('h-list');
  list.innerHTML = stations.map((s, i) => `
    <li data-fid="${i}">
      <h2><button type="button" class="secondary station" data-station="${h(s.sid)}">${h(s.properties?.name || s.sid)}</button></h2>
      <p class="meta">${h(s.properties?.river || '')}${s.properties?.basin ? ` · ${h(s.properties.basin)}` : ''} · ${h(s.properties?.measurements ?? '?')} measurements, ${h(page.fmtDate(s.properties?.start_time))} – ${h(page.fmtDate(s.properties?.end_time))}</p>
    </li>`).join('');
  await page.map.show('stations', stations, { maxZoom: 9 });
  showWaterExtent(page);
  page.syncList(list, 'stations');
  const open = (i) => {
    const s = stations[i];
    if (!s) return;
    history.replaceState(null, '', `#/hydrology/${encodeURIComponent(s.sid)}`);
    page.map.highlight('stations', i);
    page.mark(list, i);
    openStation(page, s, stations);
  };
  list.querySelectorAll('button.station').forEach((b, i) => b.addEventListener('click', () => open(i)));
  page.map.hooks.onClick = (src, id) => { if (src === 'stations') open(id); };
  if (stationId) {
    const i = stations.findIndex((s) => s.sid === stationId);
    if (i >= 0) open(i);
    else status.textContent = `No station ${stationId}; ${stations.length} stations listed.`;
  }
}

async function showWaterExtent(page) {
  const tiles = page.svc('tiles');
  if (tiles === null) return;
  const { collection, asset, colormap } = WATER_EXTENT;
  let tilejson;
  try {
    // Asked of the catalog's list first: a collection this platform lacks must not cost a 404 in the console.
    const known = await getJSON(`${page.svc('catalog')}/collections?limit=100`);
    if (!(known.collections || []).some((c) => c.id === collection)) return;
    tilejson = await getJSON(`${tiles}/collections/${encodeURIComponent(collection)}/WebMercatorQuad/tilejson.json`
      + query({ assets: asset, colormap: JSON.stringify(colormap) }));
  } catch {
    return; // not on this platform: the basemap's rivers are the only ones
  }
  if (!page.current()) return;
  await page.map.preview({ ...tilejson, tiles: (tilejson.tiles || []).map(sameOrigin) }, { fit: false, opacity: 1 });
  page.note(`Water extent: ${collection}`);
}

// Where a station is: the map zoomed onto it, on its river, and the other stations along that river.
async function openStation(page, station, stations) {
  const section = document.getElementById('h-station');
  const p = station.properties || {};
  section.hidden = false;
  document.getElementById('h-title').textContent = `Water level at ${p.name || station.sid}${p.river ? `, on the ${p.river}` : ''}`;
  document.getElementById('h-meta').textContent = [p.river, p.basin, p.unit && `unit ${p.unit}`].filter(Boolean).join(' · ');
  const along = stations.filter((s) => s !== station && p.river && s.properties?.river === p.river);
  document.getElementById('h-along').innerHTML = along.length
    ? `Also on the ${h(p.river)}: ${along.map((s) => `<a href="#/hydrology/${encodeURIComponent(s.sid)}">${h(s.properties?.name || s.sid)}</a>`).join(', ')}.`
    : '';
  if (station.geometry?.type === 'Point') {
    page.map.focus(station.geometry.coordinates, STATION_ZOOM);
    if (p.river) page.map.label(station.geometry.coordinates, p.river);
  }
  const start = document.getElementById('h-start');
  const end = document.getElementById('h-end');
  start.value = page.fmtDate(p.start_time) === '…' ? '' : page.fmtDate(p.start_time);
  end.value = page.fmtDate(p.end_time) === '…' ? '' : page.fmtDate(p.end_time);
  start.min = end.min = start.value;
  start.max = end.max = end.value;
  const form = document.getElementById('h-range');
  form.onsubmit = (event) => {
    event.preventDefault();
    loadSeries(page, station, start.value, end.value);
  };
  await loadSeries(page, station, start.value, end.value);
  section.scrollIntoView({ block: 'nearest' });
}

async function loadSeries(page, station, start, end) {
  const status = document.getElementById('h-chart-status');
  const chart = document.getElementById('h-chart');
  if (start && end && start > end) {
    status.textContent = 'The start date is after the end date.';
    return;
  }
  const data = (station.links || []).find((l) => l.rel === 'data');
  const base = data ? sameOrigin(data.href).split('?')[0]
    : `${page.svc('timeseries')}${STATIONS}/locations/${encodeURIComponent(station.sid)}`;
  // Dates as a closed interval of whole days (the service reads a date as its first or, at the end, last instant).
  const datetime = start || end ? `${start || '..'}/${end || '..'}` : undefined;
  document.getElementById('h-csv').href = `${base}${query({ datetime, f: 'csv' })}`;
  status.textContent = 'Loading the series…';
  let series;
  try {
    series = coveragePoints(await getJSON(`${base}${query({ datetime, f: 'CoverageJSON' })}`));
  } catch (error) {
    if (page.current()) status.textContent = `Cannot load the series (${page.problemText(error)}).`;
    return;
  }
  if (!page.current()) return;
  const s = seriesSummary(series.points);
  status.textContent = s ? `${s.count} measurements, ${s.min.toFixed(2)} to ${s.max.toFixed(2)} ${series.unit || ''}; the band is ± the uncertainty.`
    : 'No measurement in this date range.';
  const p = station.properties || {};
  drawChart(chart, { ...series, station: `${p.name || station.sid}${p.river ? ` (${p.river})` : ''}` },
    chart.clientWidth || page.main.clientWidth - 40);
}
