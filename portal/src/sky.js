// The sky view: Aladin Lite (shipped with the portal, never from a CDN) over skyvault's own
// HiPS, with the result rows as a catalogue layer linked to the grid, ObsCore footprints
// (s_region), MOC layers, and regions drawn on the sky written into the query.
import A from "aladin-lite";
import { base } from "./api.js";

const MAX_HIGHLIGHTED = 100000;
const RA_UCDS = ["pos.eq.ra;meta.main", "pos.eq.ra"];
const DEC_UCDS = ["pos.eq.dec;meta.main", "pos.eq.dec"];
const RA_NAMES = ["ra", "coord_ra", "s_ra", "raj2000", "ra_icrs"];
const DEC_NAMES = ["dec", "coord_dec", "s_dec", "dej2000", "de_icrs", "decl"];

/** Indexes of the result's RA and Dec columns (by UCD, then by name), or null. */
export function positionColumns(metadata) {
  const find = (ucds, names) => {
    for (const ucd of ucds) {
      const i = metadata.findIndex((m) => (m.ucd || "").toLowerCase() === ucd);
      if (i >= 0) return i;
    }
    return metadata.findIndex((m) => names.includes(m.name.toLowerCase()));
  };
  const ra = find(RA_UCDS, RA_NAMES);
  const dec = find(DEC_UCDS, DEC_NAMES);
  return ra >= 0 && dec >= 0 ? [ra, dec] : null;
}

function polygonFrom(value) {
  if (Array.isArray(value) && value.length >= 6) {
    const points = [];
    for (let i = 0; i + 1 < value.length; i += 2) points.push([value[i], value[i + 1]]);
    return points;
  }
  if (typeof value === "string") {
    const numbers = value.replace(/^[^\d+-]*(ICRS|FK5|GALACTIC|UNKNOWNFRAME)?/i, "").trim().split(/\s+/).map(Number);
    if (/polygon/i.test(value) && numbers.length >= 6 && numbers.every(Number.isFinite)) {
      return polygonFrom(numbers);
    }
  }
  return null;
}

export async function createSky(element, { hips, onSelect, onSelectRows, onRegion }) {
  await A.init;
  const images = hips.filter((h) => h.dataproduct_type !== "catalog");
  const catalogs = hips.filter((h) => h.dataproduct_type === "catalog");
  // Without an image HiPS on the server, an empty one shipped with the portal: Aladin Lite
  // needs a background survey, and its default ones live at CDS.
  const empty = { id: "skyvault-empty", title: "No image survey (empty sky)", url: new URL("empty-hips", window.location.href).href };
  const first = images[0];
  const surveys = images.length ? images : [empty];
  const aladin = A.aladin(element, {
    survey: surveys[0].url,
    hipsList: surveys.map((h) => ({ id: h.id, name: h.title, url: h.url })),
    fov: first && first.fov ? first.fov : 60,
    target: first && first.ra !== undefined ? `${first.ra} ${first.dec}` : "0 +0",
    log: false, // Aladin Lite's usage log goes to CDS: never from here
    samp: false,
    showSimbadPointerControl: false,
    showShareControl: false,
    showContextMenu: false,
    showCooGridControl: true,
    showLayersControl: true,
    showFullscreenControl: false,
  });
  for (const c of catalogs) {
    aladin.addCatalog(A.catalogHiPS(c.url, { name: c.title, sourceSize: 8, color: "#7ec8e3" }));
  }
  // Each HiPS's coverage (its Moc.fits) as a MOC layer: what the archive holds, on the sky.
  for (const h of hips) {
    aladin.addMOC(
      A.MOCFromURL(`${h.url}/Moc.fits`, { name: `${h.title}: coverage`, color: "#a0ff80", opacity: 0.12, lineWidth: 1 }),
    );
  }
  let layer = null;
  let chosen = null; // the selection, as its own layer over the result's
  let footprints = null;
  let sources = [];
  aladin.on("objectClicked", (object) => {
    if (object && object.data && object.data.__row !== undefined) onSelect(object.data.__row, "sky");
  });

  // Drawing: clicks add polygon vertices until "done".
  let drawing = null;
  const drawn = A.graphicOverlay({ color: "#ffcc00", lineWidth: 2, name: "drawn region" });
  aladin.addOverlay(drawn);
  aladin.on("click", (event) => {
    if (!drawing || !event) return;
    const [ra, dec] = aladin.pix2world(event.x, event.y) || [];
    if (ra === undefined) return;
    drawing.push([ra, dec]);
    drawn.removeAll();
    if (drawing.length > 1) drawn.add(A.polyline(drawing.concat([drawing[0]])));
  });

  return {
    aladin,
    show(result) {
      if (layer) layer.removeAll();
      if (footprints) footprints.removeAll();
      if (chosen) chosen.removeAll();
      sources = [];
      const where = positionColumns(result.metadata);
      element.dataset.sources = "0";
      element.dataset.selected = "0";
      if (!where) return 0;
      // The position columns as doubles, read straight from the result's columns.
      const ras = result.columns[where[0]].numbers();
      const decs = result.columns[where[1]].numbers();
      if (!layer) {
        layer = A.catalog({ name: "result", sourceSize: 10, color: "#ff5a36", shape: "circle" });
        aladin.addCatalog(layer);
      }
      const region = result.metadata.findIndex((m) => m.name.toLowerCase() === "s_region");
      if (region >= 0 && !footprints) {
        footprints = A.graphicOverlay({ color: "#36c3ff", lineWidth: 1, name: "footprints" });
        aladin.addOverlay(footprints);
      }
      const batch = [];
      let [raLo, raHi, shLo, shHi, decLo, decHi] = [Infinity, -Infinity, Infinity, -Infinity, Infinity, -Infinity];
      for (let index = 0; index < result.numRows; index++) {
        const ra = ras[index];
        const dec = decs[index];
        if (!Number.isFinite(ra) || !Number.isFinite(dec)) continue;
        const source = A.source(ra, dec, { __row: index });
        sources[index] = source;
        batch.push(source);
        const shifted = (ra + 180) % 360;
        raLo = Math.min(raLo, ra);
        raHi = Math.max(raHi, ra);
        shLo = Math.min(shLo, shifted);
        shHi = Math.max(shHi, shifted);
        decLo = Math.min(decLo, dec);
        decHi = Math.max(decHi, dec);
        if (region >= 0) {
          let value = result.value(index, region);
          if (value && typeof value === "object" && typeof value.toArray === "function") value = Array.from(value.toArray());
          const polygon = polygonFrom(value);
          if (polygon) footprints.add(A.polygon(polygon));
        }
      }
      layer.addSources(batch);
      element.dataset.sources = String(batch.length);
      if (batch.length) {
        // RA across 0h: measure the spread around 180 instead.
        const wraps = shHi - shLo < raHi - raLo;
        const ra = wraps ? ((shLo + shHi) / 2 + 180) % 360 : (raLo + raHi) / 2;
        const dec = (decLo + decHi) / 2;
        const raSpan = (wraps ? shHi - shLo : raHi - raLo) * Math.cos((dec * Math.PI) / 180);
        const decSpan = decHi - decLo;
        // Aladin's field of view is the width: fit the height through the aspect ratio.
        const aspect = element.clientWidth / Math.max(element.clientHeight, 1);
        const fov = Math.max(raSpan, decSpan * aspect, 0.01) * 1.3;
        aladin.gotoRaDec(ra, dec);
        aladin.setFoV(Math.min(fov, 180));
      }
      return batch.length;
    },
    /** Highlight the selected rows (a Uint32Array of row indexes): one row is also centred. */
    highlight(rows) {
      if (!chosen) {
        chosen = A.catalog({ name: "selection", sourceSize: 14, color: "#ffe14d", shape: "square" });
        aladin.addCatalog(chosen);
      }
      chosen.removeAll();
      const picked = [];
      for (const index of rows || []) {
        const source = sources[index];
        if (source && picked.length < MAX_HIGHLIGHTED) picked.push(A.source(source.ra, source.dec, { __row: index }));
      }
      chosen.addSources(picked);
      element.dataset.selected = String(picked.length);
      if (rows && rows.length === 1 && picked.length) aladin.gotoRaDec(picked[0].ra, picked[0].dec);
    },
    addMoc(url, name) {
      aladin.addMOC(A.MOCFromURL(url, { name, color: "#a0ff80", opacity: 0.25 }));
    },
    /** Drag a rectangle on the sky: the result's markers inside it become the selection. */
    selectRectangle() {
      aladin.select("rect", (shape, found) => {
        const rows = new Set();
        for (const group of found || []) {
          for (const object of Array.isArray(group) ? group : [group]) {
            if (object && object.data && object.data.__row !== undefined) rows.add(object.data.__row);
          }
        }
        onSelectRows(Uint32Array.from([...rows].sort((a, b) => a - b)));
      });
    },
    regionFromView() {
      const [ra, dec] = aladin.getRaDec();
      const [fov] = aladin.getFov();
      const radius = Math.min(fov / 2, 90);
      onRegion(`CIRCLE('ICRS', ${ra.toFixed(6)}, ${dec.toFixed(6)}, ${radius.toFixed(6)})`);
    },
    startPolygon() {
      drawing = [];
      drawn.removeAll();
    },
    finishPolygon() {
      const points = drawing || [];
      drawing = null;
      if (points.length < 3) return false;
      const coords = points.map(([ra, dec]) => `${ra.toFixed(6)}, ${dec.toFixed(6)}`).join(", ");
      onRegion(`POLYGON('ICRS', ${coords})`);
      return true;
    },
    get drawing() {
      return drawing !== null;
    },
  };
}

export const hipsUrl = (path) => new URL(path, base).href;
