// Plots of result columns (scatter, histogram) with Observable Plot; a click on a point
// selects its row in the grid and on the sky.
import * as Plot from "@observablehq/plot";

export function numericColumns(metadata) {
  const numeric = new Set(["short", "int", "long", "float", "double", "unsignedByte"]);
  return metadata
    .map((m, i) => ({ name: m.name, index: i, numeric: numeric.has(m.datatype) && !m.arraysize }))
    .filter((c) => c.numeric);
}

export function drawPlot(container, result, { kind, x, y, selected, onSelect }) {
  const points = [];
  result.data.forEach((row, index) => {
    const xv = row[x];
    const yv = y === null ? 0 : row[y];
    if (xv === null || yv === null || !Number.isFinite(Number(xv)) || !Number.isFinite(Number(yv))) return;
    points.push({ x: Number(xv), y: Number(yv), index });
  });
  const xName = result.metadata[x].name;
  // Fluxes and the like span decades: a log axis when every value is positive and they do.
  const axis = (key) => {
    const values = points.map((p) => p[key]);
    if (!values.length) return "linear";
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    return lo > 0 && hi / lo > 1000 ? "log" : "linear";
  };
  const width = Math.max(container.clientWidth - 20, 300);
  const height = Math.max(container.clientHeight - 20, 240);
  let figure;
  if (kind === "histogram") {
    figure = Plot.plot({
      width,
      height,
      marginLeft: 60,
      x: { label: xName },
      y: { label: "rows", grid: true },
      marks: [Plot.rectY(points, Plot.binX({ y: "count" }, { x: "x", fill: "#4a7bd0" })), Plot.ruleY([0])],
    });
  } else {
    const yName = result.metadata[y].name;
    const magnitude = /mag/i.test(yName);
    figure = Plot.plot({
      width,
      height,
      grid: true,
      marginLeft: 60,
      x: { label: xName, type: axis("x") },
      y: { label: yName, reverse: magnitude, type: axis("y") },
      marks: [
        Plot.dot(points, { x: "x", y: "y", r: 1.5, fill: "#4a7bd0", fillOpacity: 0.6 }),
        Plot.dot(
          points.filter((p) => p.index === selected),
          { x: "x", y: "y", r: 6, stroke: "#ff5a36", strokeWidth: 2 },
        ),
        Plot.tip(points, Plot.pointer({ x: "x", y: "y", title: (p) => `row ${p.index + 1}` })),
      ],
    });
    figure.addEventListener("click", () => {
      const picked = figure.value;
      if (picked && picked.index !== undefined) onSelect(picked.index, "plot");
    });
  }
  figure.setAttribute("data-points", String(points.length));
  container.replaceChildren(figure);
  return points.length;
}
