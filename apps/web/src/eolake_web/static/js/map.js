// The one map of the page: a basemap from this origin (basemap.js) under our own GeoJSON and raster layers.
import { ATTRIBUTION, Basemap, COLORS as BASE } from './basemap.js';

const EMPTY = { type: 'FeatureCollection', features: [] };
const COLORS = { extent: '#0b5f8a', footprint: '#6a3d9a', station: '#c2185b', highlight: '#e8590c' };
// Features smaller than this (degrees) also get a dot at their centre, so that they show at every zoom.
const TINY = 3;
const DOTS = { extents: 'extent-dots', footprints: 'footprint-dots' };
const SOURCES = ['extents', 'extent-dots', 'footprints', 'footprint-dots', 'stations'];

export class LakeMap {
  constructor(container, staticBase) {
    this.hooks = { onHover: null, onClick: null };
    this.previewTiles = { loaded: 0, failed: 0 };
    this.ready = new Promise((resolve) => { this._resolveReady = resolve; });
    this.hovered = null;
    this.available = Boolean(window.maplibregl);
    this.element = container;
    this.staticBase = staticBase;
    if (!this.available) {
      container.textContent = 'The map library did not load.';
      this._resolveReady();
      return;
    }
    // The CSP build: the worker is a file from our origin (no blob: workers).
    maplibregl.setWorkerUrl(`${staticBase}/vendor/maplibre-gl/maplibre-gl-csp-worker.js`);
    try {
      this.map = new maplibregl.Map({
        container,
        style: {
          version: 8,
          sources: {},
          layers: [{ id: 'background', type: 'background', paint: { 'background-color': BASE.sea } }],
        },
        center: [1.4, 43.6],
        zoom: 3,
        attributionControl: { compact: true, customAttribution: ATTRIBUTION },
        dragRotate: false,
        pitchWithRotate: false,
      });
    } catch (error) {
      container.textContent = `The map could not start (${error.message}).`;
      this.available = false;
      this._resolveReady();
      return;
    }
    this.map.touchZoomRotate.disableRotation();
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
    this.map.addControl(new maplibregl.ScaleControl(), 'bottom-right');
    this.map.on('load', () => this._setup());
    this.map.on('error', (event) => {
      if (event.sourceId === 'preview') {
        this.previewTiles.failed += 1;
        this._publish();
      }
    });
  }

  _setup() {
    const map = this.map;
    this.basemap = new Basemap(map, this.staticBase);
    this.basemap.addLayers();
    this.basemap.load();
    for (const id of SOURCES) map.addSource(id, { type: 'geojson', data: EMPTY });
    map.addLayer({ id: 'extents-fill', type: 'fill', source: 'extents',
      paint: { 'fill-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.extent],
        'fill-opacity': ['case', ['boolean', ['feature-state', 'hl'], false], 0.35, 0.12] } });
    map.addLayer({ id: 'extents-line', type: 'line', source: 'extents',
      paint: { 'line-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.extent],
        'line-width': ['case', ['boolean', ['feature-state', 'hl'], false], 3, 1.5] } });
    // Extents too small to see at the current zoom still show as a dot.
    map.addLayer({ id: 'extent-dots', type: 'circle', source: 'extent-dots', maxzoom: 7,
      paint: { 'circle-radius': 6, 'circle-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.extent],
        'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 } });
    map.addLayer({ id: 'footprints-fill', type: 'fill', source: 'footprints',
      paint: { 'fill-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.footprint],
        'fill-opacity': ['case', ['boolean', ['feature-state', 'hl'], false], 0.4, 0.08] } });
    map.addLayer({ id: 'footprints-line', type: 'line', source: 'footprints',
      paint: { 'line-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.footprint],
        'line-width': ['case', ['boolean', ['feature-state', 'hl'], false], 3, 1] } });
    map.addLayer({ id: 'footprint-dots', type: 'circle', source: 'footprint-dots', maxzoom: 7,
      paint: { 'circle-radius': 4, 'circle-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.footprint],
        'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1 } });
    map.addLayer({ id: 'stations', type: 'circle', source: 'stations',
      paint: { 'circle-radius': ['case', ['boolean', ['feature-state', 'hl'], false], 10, 7],
        'circle-color': ['case', ['boolean', ['feature-state', 'hl'], false], COLORS.highlight, COLORS.station],
        'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 } });
    const layerSource = { 'extents-fill': 'extents', 'extent-dots': 'extents', 'footprints-fill': 'footprints',
      'footprint-dots': 'footprints', stations: 'stations' };
    for (const [layer, source] of Object.entries(layerSource)) {
      map.on('mousemove', layer, (event) => {
        map.getCanvas().style.cursor = 'pointer';
        const feature = event.features[0];
        if (feature) this.highlight(source, feature.id, true);
      });
      map.on('mouseleave', layer, () => {
        map.getCanvas().style.cursor = '';
        this.highlight(source, null, true);
      });
      map.on('click', layer, (event) => {
        const feature = event.features[0];
        if (feature && this.hooks.onClick) this.hooks.onClick(source, feature.id);
      });
    }
    this.map.on('sourcedata', (event) => {
      if (event.sourceId === 'preview' && event.tile && event.isSourceLoaded !== undefined
          && event.tile.state === 'loaded' && !event.tile._eolakeCounted) {
        event.tile._eolakeCounted = true;
        this.previewTiles.loaded += 1;
        this._publish();
      }
    });
    this._resolveReady();
  }

  _publish() {
    this.element.dataset.previewTiles = String(this.previewTiles.loaded);
    this.element.dataset.previewErrors = String(this.previewTiles.failed);
    window.eolake = window.eolake || {};
    window.eolake.previewTiles = { ...this.previewTiles };
  }

  resize() {
    if (this.map) this.map.resize();
  }

  // features: GeoJSON features; ids are assigned in order (0..n-1) so that lists and map share them.
  async show(source, features, { fit = true, maxZoom = 9 } = {}) {
    await this.ready;
    if (!this.map) return;
    const data = { type: 'FeatureCollection', features: features.map((f, i) => ({ ...f, id: i })) };
    this._forget(source);
    this.map.getSource(source).setData(data);
    if (DOTS[source]) {
      // Features too small to see at a world view also get a dot at their centre (same ids: same highlight).
      const dots = data.features.map((f) => [f, bounds([f])]).filter(([, b]) => b && Math.max(b[2] - b[0], b[3] - b[1]) < TINY)
        .map(([f, b]) => ({ type: 'Feature', id: f.id, properties: {},
          geometry: { type: 'Point', coordinates: [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] } }));
      this.map.getSource(DOTS[source]).setData({ type: 'FeatureCollection', features: dots });
    }
    this.hovered = null;
    if (fit && features.length) this.fit(features, maxZoom);
  }

  async clear(...sources) {
    await this.ready;
    if (!this.map) return;
    for (const source of sources.length ? sources : SOURCES) {
      this._forget(source);
      this.map.getSource(source).setData(EMPTY);
    }
    this.removePreview();
    this.removeLabel();
  }

  // A name written on the map at a point (a river at its station): an HTML marker, since the map's own text layers
  // would need glyph files this origin does not serve. One label at a time.
  async label([lon, lat], text) {
    await this.ready;
    this.removeLabel();
    if (!this.map) return;
    const element = document.createElement('span');
    element.className = 'map-label';
    element.textContent = text;
    this._label = new maplibregl.Marker({ element, anchor: 'left', offset: [12, 0] }).setLngLat([lon, lat]).addTo(this.map);
  }

  removeLabel() {
    if (this._label) this._label.remove();
    this._label = null;
  }

  fit(features, maxZoom = 9) {
    const b = bounds(features);
    if (!b) return;
    const [w, s, e, n] = b;
    const pad = Math.min(60, Math.floor(Math.min(this.element.clientWidth, this.element.clientHeight) / 6));
    if (w === e && s === n) this.map.jumpTo({ center: [w, s], zoom: Math.min(maxZoom, 9) });
    else this.map.fitBounds([[w, s], [e, n]], { padding: pad, maxZoom, duration: 0 });
  }

  // Centre the map on a point at a zoom where its surroundings (the river of a station) can be told apart.
  async focus([lon, lat], zoom) {
    await this.ready;
    if (this.map) this.map.jumpTo({ center: [lon, lat], zoom });
  }

  // Highlight one feature of a source (null: none). fromMap: the hover came from the map, tell the list.
  highlight(source, id, fromMap = false) {
    if (!this.map) return;
    if (this.hovered && (this.hovered.source !== source || this.hovered.id !== id)) {
      this._state(this.hovered, false);
      if (fromMap && this.hooks.onHover) this.hooks.onHover(this.hovered.source, null);
    }
    this.hovered = null;
    if (id !== null && id !== undefined) {
      this.hovered = { source, id };
      this._state(this.hovered, true);
      if (fromMap && this.hooks.onHover) this.hooks.onHover(source, id);
    }
  }

  // Feature states (the highlight) are kept by id across new data: a new list must not inherit the last one's.
  _forget(source) {
    this.map.removeFeatureState({ source });
    if (this.hovered && this.hovered.source === source) this.hovered = null;
  }

  _state(target, on) {
    this.map.setFeatureState(target, { hl: on });
    if (DOTS[target.source]) this.map.setFeatureState({ source: DOTS[target.source], id: target.id }, { hl: on });
  }

  bbox() {
    if (!this.map) return null;
    const b = this.map.getBounds();
    const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180),
      clamp(b.getNorth(), -90, 90)].map((v) => Number(v.toFixed(5)));
  }

  // A raster layer of the tile service under the footprints and stations; fit: the view moves to its bounds.
  async preview(tilejson, { fit = true, opacity = 0.9 } = {}) {
    await this.ready;
    if (!this.map) return;
    this.removePreview();
    this.previewTiles = { loaded: 0, failed: 0 };
    this._publish();
    this.map.addSource('preview', {
      type: 'raster', tiles: tilejson.tiles, tileSize: /[?&]tilesize=512\b/.test(tilejson.tiles[0] || '') ? 512 : 256, bounds: tilejson.bounds,
      // The item's own minzoom is its native resolution: overviews draw it from a few levels lower (small screens).
      minzoom: Math.max(0, (tilejson.minzoom ?? 0) - 4), maxzoom: tilejson.maxzoom ?? 22,
    });
    this.map.addLayer({ id: 'preview', type: 'raster', source: 'preview', paint: { 'raster-opacity': opacity } },
      'footprints-fill');
    if (fit && tilejson.bounds) {
      const [w, s, e, n] = tilejson.bounds;
      this.map.fitBounds([[w, s], [e, n]], { padding: 30, duration: 0 });
    }
  }

  // The counts go with the layer: a page drawn anew waits for its own preview's tiles, not the last page's.
  removePreview() {
    if (!this.map) return;
    if (this.map.getLayer('preview')) this.map.removeLayer('preview');
    if (this.map.getSource('preview')) this.map.removeSource('preview');
    this.previewTiles = { loaded: 0, failed: 0 };
    this._publish();
  }
}

export function bboxPolygon([w, s, e, n], properties = {}) {
  return { type: 'Feature', properties,
    geometry: { type: 'Polygon', coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] } };
}

function bounds(features) {
  let w = Infinity; let s = Infinity; let e = -Infinity; let n = -Infinity;
  const visit = (c) => {
    if (typeof c[0] === 'number') {
      w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1]);
    } else c.forEach(visit);
  };
  for (const f of features) if (f.geometry) visit(f.geometry.coordinates);
  return Number.isFinite(w) ? [w, s, e, n] : null;
}
