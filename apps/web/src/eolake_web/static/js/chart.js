// The water-level chart of one station: the series, a band of ± its uncertainty, with uPlot (canvas).

export function seriesSummary(points) {
  const heights = points.map((p) => p.height).filter((h) => Number.isFinite(h));
  if (!heights.length) return null;
  return { count: points.length, min: Math.min(...heights), max: Math.max(...heights),
    first: points[0].time, last: points[points.length - 1].time };
}

export function drawChart(container, series, width) {
  container.replaceChildren();
  if (!window.uPlot) {
    container.textContent = 'The chart library did not load.';
    return null;
  }
  const pts = series.points.filter((p) => Number.isFinite(p.height));
  const times = pts.map((p) => Date.parse(p.time) / 1000);
  const height = pts.map((p) => p.height);
  const unc = pts.map((p) => (Number.isFinite(p.uncertainty) ? p.uncertainty : 0));
  const upper = height.map((h, i) => h + unc[i]);
  const lower = height.map((h, i) => h - unc[i]);
  const unit = series.unit || 'm';
  const fmt = (u, v) => (v == null ? '–' : `${v.toFixed(2)} ${unit}`);
  const opts = {
    width: Math.max(260, width),
    height: 260,
    title: undefined,
    scales: { x: { time: true } },
    axes: [{}, { label: `water level (${unit}${series.reference ? `, ${series.reference}` : ''})`, size: 60 }],
    series: [
      {},
      { label: 'water level', stroke: '#0b5f8a', width: 2, points: { show: pts.length < 80, size: 4 }, value: fmt },
      { label: '+ uncertainty', stroke: 'rgba(11,95,138,0.25)', width: 1, value: fmt },
      { label: '− uncertainty', stroke: 'rgba(11,95,138,0.25)', width: 1, value: fmt },
    ],
    bands: [{ series: [2, 3], fill: 'rgba(11,95,138,0.18)' }],
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
  };
  const plot = new uPlot(opts, [times, height, upper, lower], container);
  const canvas = container.querySelector('canvas');
  if (canvas) {
    canvas.setAttribute('role', 'img');
    const s = seriesSummary(pts);
    canvas.setAttribute('aria-label', s
      ? `Water level of ${series.station}: ${s.count} measurements from ${s.first.slice(0, 10)} to `
        + `${s.last.slice(0, 10)}, between ${s.min.toFixed(2)} and ${s.max.toFixed(2)} ${unit}`
      : `No water level for ${series.station} in this range`);
  }
  container.dataset.points = String(pts.length);
  return plot;
}
