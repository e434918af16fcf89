// The basemap, from this origin only: land, coastlines and country borders (Natural Earth 1:50m, through the npm
// package world-atlas) drawn from the start, rivers and lakes (OpenStreetMap water areas generalised by geo-maps,
// cut into squares by eolake_web.assets) loaded for the squares in view from zoom WATER_ZOOM on.
import { getJSON } from './api.js';

export const WATER_ZOOM = 6;
export const COLORS = { sea: '#c9dfea', land: '#f3f0e8', coast: '#8fb0c2', border: '#a99aa6', water: '#3d85c6' };
const MAX_CELLS = 64; // squares loaded for one view (a wide view at WATER_ZOOM on a large screen)
const EMPTY = { type: 'FeatureCollection', features: [] };
export const ATTRIBUTION = 'Land and borders: Natural Earth · Rivers and lakes: © OpenStreetMap contributors (ODbL)';

export class Basemap {
  constructor(map, staticBase) {
    this.map = map;
    this.base = `${staticBase}/vendor`;
    this.cells = null; // {size, layers: {rivers: Set, lakes: Set}} once the index is read
    this.water = { rivers: new Map(), lakes: new Map() };
    this.state = { land: false, rivers: 0, lakes: 0, failed: 0 };
  }

  // Layers (empty at first) under everything else; the data arrives when it is read.
  addLayers() {
    const map = this.map;
    for (const id of ['land', 'countries', 'borders', 'rivers', 'lakes']) map.addSource(id, { type: 'geojson', data: EMPTY });
    // Filled country by country: the merged land is one polygon of Eurasia and Africa so large that its triangulation
    // failed in some tiles at low zooms (squares of sea over France); its outline is still the coastline.
    map.addLayer({ id: 'land', type: 'fill', source: 'countries', paint: { 'fill-color': COLORS.land, 'fill-antialias': false } });
    map.addLayer({ id: 'lakes', type: 'fill', source: 'lakes', minzoom: WATER_ZOOM,
      paint: { 'fill-color': COLORS.water, 'fill-antialias': false } });
    map.addLayer({ id: 'rivers', type: 'fill', source: 'rivers', minzoom: WATER_ZOOM,
      paint: { 'fill-color': COLORS.water, 'fill-antialias': false } });
    // A river narrower than a pixel still shows as a line.
    map.addLayer({ id: 'rivers-line', type: 'line', source: 'rivers', minzoom: WATER_ZOOM,
      paint: { 'line-color': COLORS.water, 'line-width': ['interpolate', ['linear'], ['zoom'], WATER_ZOOM, 0.6, 12, 3] } });
    map.addLayer({ id: 'coast', type: 'line', source: 'land', paint: { 'line-color': COLORS.coast, 'line-width': 0.8 } });
    map.addLayer({ id: 'borders', type: 'line', source: 'borders',
      paint: { 'line-color': COLORS.border, 'line-width': 1, 'line-dasharray': [3, 2] } });
  }

  async load() {
    try {
      const [atlas, index] = await Promise.all([
        getJSON(`${this.base}/world-atlas/countries-50m.json`), getJSON(`${this.base}/basemap/index.json`)]);
      this.map.getSource('land').setData(topojson.feature(atlas, atlas.objects.land));
      this.map.getSource('countries').setData(topojson.feature(atlas, atlas.objects.countries));
      this.map.getSource('borders').setData(topojson.mesh(atlas, atlas.objects.countries, (a, b) => a !== b));
      this.cells = { size: index.cell, layers: Object.fromEntries(Object.entries(index.layers).map(([k, v]) => [k, new Set(v)])) };
      this.state.land = true;
    } catch (error) {
      this.state.failed += 1;
      this.publish();
      return;
    }
    this.map.on('moveend', () => this.loadWater());
    await this.loadWater();
  }

  // The squares of the current view, each read once and kept.
  async loadWater() {
    if (!this.cells || this.map.getZoom() < WATER_ZOOM) {
      this.publish();
      return;
    }
    const wanted = this.cellsInView();
    await Promise.all(Object.keys(this.water).map(async (layer) => {
      const known = this.water[layer];
      const missing = wanted.filter((c) => this.cells.layers[layer]?.has(c) && !known.has(c));
      if (!missing.length) return;
      const features = await Promise.all(missing.map((c) => getJSON(`${this.base}/basemap/${layer}/${c}.json`)
        .catch(() => { this.state.failed += 1; return null; })));
      missing.forEach((c, i) => { if (features[i]) known.set(c, features[i]); });
      this.map.getSource(layer).setData({ type: 'FeatureCollection', features: [...known.values()] });
      this.state[layer] = known.size;
    }));
    this.publish();
  }

  cellsInView() {
    const b = this.map.getBounds();
    const size = this.cells.size;
    const [x0, x1] = [Math.floor(Math.max(-180, b.getWest()) / size), Math.floor(Math.min(179.999, b.getEast()) / size)];
    const [y0, y1] = [Math.floor(Math.max(-90, b.getSouth()) / size), Math.floor(Math.min(89.999, b.getNorth()) / size)];
    const cells = [];
    for (let x = x0; x <= x1; x += 1) for (let y = y0; y <= y1; y += 1) cells.push(`${x}_${y}`);
    return cells.slice(0, MAX_CELLS);
  }

  publish() {
    window.eolake = window.eolake || {};
    window.eolake.basemap = { ...this.state, water: COLORS.water, colors: COLORS };
  }
}
