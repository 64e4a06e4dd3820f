// Plots of result columns (scatter, histogram) with Observable Plot, read straight from the
// result's columns. Linked brushing: drag a rectangle on the scatter (a range on the histogram)
// and the rows inside become the selection the grid and the sky highlight; a click on a point
// selects its row; the current selection is drawn over the points.
import * as Plot from "@observablehq/plot";
import { brush, brushX } from "d3-brush";
import { pointer, select } from "d3-selection";

const MAX_DRAWN = 20000; // points drawn at most (every row is brushable, drawn or not)
const MARGIN = { top: 20, right: 20, bottom: 40, left: 60 };

export function numericColumns(metadata) {
  const numeric = new Set(["short", "int", "long", "float", "double", "unsignedByte"]);
  return metadata
    .map((m, i) => ({ name: m.name, index: i, numeric: numeric.has(m.datatype) && !m.arraysize }))
    .filter((c) => c.numeric);
}

function extent(values, rows) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const i of rows) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

// Every ``step``-th of ``rows`` (at most ``max``), so a large result draws quickly.
function thin(rows, max) {
  if (rows.length <= max) return rows;
  const step = rows.length / max;
  return Uint32Array.from({ length: max }, (_, k) => rows[Math.floor(k * step)]);
}

/**
 * Draw the plot. ``selection`` (a Uint8Array mask or null) is drawn over the points; ``region``
 * ({x: [lo, hi], y: [lo, hi] | null}) is the brush to show again after a redraw.
 * ``onBrush(rows, region)`` gets the rows a brush (or a click) selected.
 */
export function drawPlot(container, result, { kind, x, y, selection, region, onBrush }) {
  const xs = result.columns[x].numbers();
  const ys = y === null ? null : result.columns[y].numbers();
  const finite = [];
  for (let i = 0; i < result.numRows; i++) {
    if (Number.isFinite(xs[i]) && (ys === null || Number.isFinite(ys[i]))) finite.push(i);
  }
  const rows = Uint32Array.from(finite);
  const chosen = selection ? rows.filter((i) => selection[i] === 1) : new Uint32Array(0);
  const drawn = thin(rows, MAX_DRAWN);
  const shown = thin(chosen, MAX_DRAWN);
  const xName = result.metadata[x].name;
  // Fluxes and the like span decades: a log axis when every value is positive and they do.
  const axis = (values) => {
    if (!rows.length) return "linear";
    const [lo, hi] = extent(values, rows);
    return lo > 0 && hi / lo > 1000 ? "log" : "linear";
  };
  const width = Math.max(container.clientWidth - 20, 300);
  const height = Math.max(container.clientHeight - 20, 240);
  const frame = {
    width,
    height,
    marginTop: MARGIN.top,
    marginRight: MARGIN.right,
    marginBottom: MARGIN.bottom,
    marginLeft: MARGIN.left,
  };
  let figure;
  if (kind === "histogram") {
    const values = Float64Array.from(rows, (i) => xs[i]);
    const picked = Float64Array.from(chosen, (i) => xs[i]);
    const [lo, hi] = rows.length ? extent(xs, rows) : [0, 1];
    const bins = { thresholds: 40, domain: [lo, hi] };
    figure = Plot.plot({
      ...frame,
      x: { label: xName, domain: [lo, hi] },
      y: { label: "rows", grid: true },
      marks: [
        Plot.rectY(values, Plot.binX({ y: "count" }, { x: (d) => d, fill: "#4a7bd0", ...bins })),
        Plot.rectY(picked, Plot.binX({ y: "count" }, { x: (d) => d, fill: "#ff5a36", ...bins })),
        Plot.ruleY([0]),
      ],
    });
  } else {
    const yName = result.metadata[y].name;
    const magnitude = /mag/i.test(yName);
    figure = Plot.plot({
      ...frame,
      grid: true,
      x: { label: xName, type: axis(xs) },
      y: { label: yName, reverse: magnitude, type: axis(ys) },
      marks: [
        Plot.dot(drawn, { x: (i) => xs[i], y: (i) => ys[i], r: 1.5, fill: "#4a7bd0", fillOpacity: 0.6 }),
        Plot.dot(shown, { x: (i) => xs[i], y: (i) => ys[i], r: 3, fill: "#ff5a36", stroke: "#7a1a00", strokeWidth: 0.5 }),
        Plot.tip(drawn, Plot.pointer({ x: (i) => xs[i], y: (i) => ys[i], title: (i) => `row ${i + 1}` })),
      ],
    });
  }
  figure.setAttribute("data-points", String(rows.length));
  figure.setAttribute("data-drawn", String(drawn.length));
  figure.setAttribute("data-selected", String(chosen.length));
  container.replaceChildren(figure);
  addBrush(figure, { kind, xs, ys, rows, drawn, width, height, region, onBrush });
  return rows.length;
}

function addBrush(figure, { kind, xs, ys, rows, drawn, width, height, region, onBrush }) {
  const sx = figure.scale("x");
  const sy = kind === "histogram" ? null : figure.scale("y");
  const box = [[MARGIN.left, MARGIN.top], [width - MARGIN.right, height - MARGIN.bottom]];
  const tool = (kind === "histogram" ? brushX() : brush()).extent(box);
  let quiet = false;
  const layer = select(figure).append("g").attr("class", "brush");
  const range = (scale, a, b) => {
    const [u, v] = [scale.invert(a), scale.invert(b)];
    return [Math.min(u, v), Math.max(u, v)];
  };
  tool.on("end", (event) => {
    if (quiet || !event.sourceEvent) return;
    if (!event.selection) {
      // A click: the nearest drawn point within 6 px, else nothing.
      if (!sy) return onBrush(new Uint32Array(0), null);
      const [px, py] = pointer(event.sourceEvent, figure);
      let best = -1;
      let bestDistance = 36;
      for (const i of drawn) {
        const dx = sx.apply(xs[i]) - px;
        const dy = sy.apply(ys[i]) - py;
        const d = dx * dx + dy * dy;
        if (d < bestDistance) [best, bestDistance] = [i, d];
      }
      return onBrush(best >= 0 ? Uint32Array.of(best) : new Uint32Array(0), null);
    }
    let inside;
    let picked;
    if (sy) {
      const [[x0, y0], [x1, y1]] = event.selection;
      const [xlo, xhi] = range(sx, x0, x1);
      const [ylo, yhi] = range(sy, y0, y1);
      inside = (i) => xs[i] >= xlo && xs[i] <= xhi && ys[i] >= ylo && ys[i] <= yhi;
      picked = { x: [xlo, xhi], y: [ylo, yhi] };
    } else {
      const [xlo, xhi] = range(sx, ...event.selection);
      inside = (i) => xs[i] >= xlo && xs[i] <= xhi;
      picked = { x: [xlo, xhi], y: null };
    }
    onBrush(rows.filter(inside), picked);
  });
  layer.call(tool);
  if (region) {
    // Show the brush again after a redraw, without selecting anew.
    quiet = true;
    const px = [sx.apply(region.x[0]), sx.apply(region.x[1])].sort((a, b) => a - b);
    if (sy && region.y) {
      const py = [sy.apply(region.y[0]), sy.apply(region.y[1])].sort((a, b) => a - b);
      layer.call(tool.move, [[px[0], py[0]], [px[1], py[1]]]);
    } else if (!sy) {
      layer.call(tool.move, px);
    }
    quiet = false;
  }
}
