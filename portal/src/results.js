// Results: a grid (Tabulator) over the result's columns, downloads in every format the service
// writes, and a pyvo snippet that reproduces the query.
//
// The grid never holds the whole result as row objects: it pages "remotely" against the Arrow
// columns in memory (Tabulator's ajaxRequestFunc), so a page of rows becomes objects only when it
// is shown; sorting and header filters are computed on the columns as an order of row indexes.
// Within a page only the visible rows are in the DOM (virtual rendering).
import { TabulatorFull as Tabulator } from "tabulator-tables";
import { authHeaders, tapPath } from "./api.js";

export const FORMATS = [
  ["votable", "VOTable (BINARY2)", "vot"],
  ["csv", "CSV", "csv"],
  ["tsv", "TSV", "tsv"],
  ["fits", "FITS", "fits"],
  ["parquet", "Parquet", "parquet"],
  ["arrow", "Arrow IPC stream", "arrows"],
  ["json", "JSON", "json"],
];

export const PAGE_SIZE = 1000;

function headerTitle(m) {
  return [m.name, m.datatype, m.unit && `unit: ${m.unit}`, m.ucd && `UCD: ${m.ucd}`, m.description]
    .filter(Boolean)
    .join("\n");
}

// A header filter on a numeric column accepts "<10", ">= 3", "1..2" or a number; on any other
// column (and for text that is none of those) it matches a part of the cell, ignoring case.
function rowTest(column, text) {
  const value = String(text).trim();
  const lower = value.toLowerCase();
  const contains = (i) => column.valid(i) && column.text(i).toLowerCase().includes(lower);
  if (!column.numeric) return contains;
  const numbers = column.numbers();
  const range = /^(-?[\d.eE+-]+)\s*\.\.\s*(-?[\d.eE+-]+)$/.exec(value);
  if (range) {
    const [lo, hi] = [Number(range[1]), Number(range[2])];
    return (i) => numbers[i] >= lo && numbers[i] <= hi;
  }
  const cmp = /^(<=|>=|<|>|=)?\s*(-?[\d.eE+-]+)$/.exec(value);
  if (!cmp) return contains;
  const v = Number(cmp[2]);
  switch (cmp[1]) {
    case "<": return (i) => numbers[i] < v;
    case "<=": return (i) => numbers[i] <= v;
    case ">": return (i) => numbers[i] > v;
    case ">=": return (i) => numbers[i] >= v;
    default: return (i) => column.valid(i) && column.text(i) === cmp[2]; // exact, 64-bit ids too
  }
}

// Ascending comparison of two rows of a column; NULL and NaN last.
function rowComparator(column) {
  if (column.kind === "bigint" || column.kind === "timestamp") {
    const raw = column.raw;
    return (a, b) => {
      const va = column.valid(a);
      const vb = column.valid(b);
      if (!va || !vb) return va === vb ? a - b : va ? -1 : 1;
      return raw[a] < raw[b] ? -1 : raw[a] > raw[b] ? 1 : a - b;
    };
  }
  if (column.numeric) {
    const numbers = column.numbers();
    return (a, b) => {
      const x = numbers[a];
      const y = numbers[b];
      if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) === Number.isNaN(y) ? a - b : Number.isNaN(x) ? 1 : -1;
      return x - y || a - b;
    };
  }
  const keys = Array.from({ length: column.length }, (_, i) => (column.valid(i) ? column.text(i) : null));
  return (a, b) => {
    const x = keys[a];
    const y = keys[b];
    if (x === null || y === null) return x === y ? a - b : x === null ? 1 : -1;
    return x < y ? -1 : x > y ? 1 : a - b;
  };
}

/**
 * The grid of ``result``. ``onSelect(rows, "grid")`` gets the row indexes the user selected;
 * the returned object shows a selection made elsewhere (``brush``) and pages to a row.
 */
export function createGrid(element, result, { onSelect }) {
  const n = result.numRows;
  let order = null; // row indexes in the order shown (filters and sort applied); null: 0..n-1
  let orderKey = "[]";
  let brushed = null; // Uint8Array: 1 for each selected row
  let brushVersion = 0;
  let onlyBrushed = false;
  let firstBrushed = null;

  function orderFor(params) {
    const key = JSON.stringify([params.sort || [], params.filter || [], onlyBrushed ? brushVersion : -1]);
    if (key === orderKey) return order;
    const tests = (params.filter || []).map((f) => rowTest(result.columns[Number(f.field.slice(1))], f.value));
    if (onlyBrushed && brushed) tests.push((i) => brushed[i] === 1);
    let rows = null;
    if (tests.length) {
      const kept = new Uint32Array(n);
      let count = 0;
      for (let i = 0; i < n; i++) if (tests.every((t) => t(i))) kept[count++] = i;
      rows = kept.slice(0, count);
    }
    const sort = (params.sort || [])[0];
    if (sort) {
      if (!rows) rows = Uint32Array.from({ length: n }, (_, i) => i);
      const compare = rowComparator(result.columns[Number(sort.field.slice(1))]);
      rows.sort(sort.dir === "desc" ? (a, b) => compare(b, a) : compare);
    }
    order = rows;
    orderKey = key;
    return order;
  }

  function pageOf(params) {
    const rows = orderFor(params);
    const total = rows ? rows.length : n;
    const size = params.size || PAGE_SIZE;
    const start = ((params.page || 1) - 1) * size;
    const end = Math.min(start + size, total);
    const data = [];
    for (let k = start; k < end; k++) {
      const row = rows ? rows[k] : k;
      const record = { __row: row };
      for (let c = 0; c < result.columns.length; c++) record[`c${c}`] = result.columns[c].text(row);
      data.push(record);
    }
    return { last_page: Math.max(1, Math.ceil(total / size)), last_row: total, data };
  }

  const columns = result.metadata.map((m, i) => ({
    title: m.name + (m.unit ? ` [${m.unit}]` : ""),
    field: `c${i}`,
    headerTooltip: headerTitle(m),
    headerFilter: "input",
    hozAlign: result.columns[i].numeric ? "right" : "left",
  }));
  const grid = new Tabulator(element, {
    ajaxURL: "arrow:result", // never fetched: ajaxRequestFunc answers from the columns
    ajaxRequestFunc: (url, config, params) => Promise.resolve(pageOf(params)),
    dataLoader: false,
    pagination: true,
    paginationMode: "remote",
    paginationSize: PAGE_SIZE,
    paginationCounter: "rows",
    sortMode: "remote",
    filterMode: "remote",
    columns,
    index: "__row",
    layout: "fitDataStretch",
    height: "100%",
    renderVertical: "virtual",
    selectableRows: true,
    selectableRowsRangeMode: "click",
    placeholder: "no rows",
    rowFormatter: (row) => {
      const on = brushed !== null && brushed[row.getData().__row] === 1;
      row.getElement().classList.toggle("brushed", on);
    },
  });
  // Nothing may touch the grid before Tabulator has built it (it builds asynchronously).
  const built = new Promise((resolve) => grid.on("tableBuilt", resolve));
  // A user's click (not a page change, which deselects too) tells the other views.
  grid.on("rowClick", () =>
    setTimeout(() => onSelect(Uint32Array.from(grid.getSelectedData().map((d) => d.__row)), "grid")),
  );

  /** Page to ``row`` in the current order, select it and scroll it into view. */
  async function showRow(row, { selectIt = true } = {}) {
    await built;
    const rows = orderFor({ sort: grid.getSorters().map((s) => ({ field: s.field, dir: s.dir })), filter: grid.getHeaderFilters() });
    const position = rows ? rows.indexOf(row) : row;
    if (position < 0) return false;
    const page = Math.floor(position / PAGE_SIZE) + 1;
    if (grid.getPage() !== page) await grid.setPage(page);
    if (selectIt) {
      grid.deselectRow();
      grid.selectRow(row);
    }
    await grid.scrollToRow(row, "center", false);
    return true;
  }

  return {
    grid,
    showRow,
    /** Highlight ``rows`` (a selection made in the plot or on the sky); page to the first. */
    async brush(mask, rows) {
      brushed = mask;
      firstBrushed = rows && rows.length ? rows[0] : null;
      await built;
      brushVersion += 1;
      grid.deselectRow();
      if (onlyBrushed) await grid.setData();
      else for (const row of grid.getRows()) row.reformat();
      if (rows && rows.length) await showRow(rows[0], { selectIt: rows.length === 1 });
    },
    /** Draw again once visible (a grid in a hidden panel draws no rows): the highlight too. */
    async refresh() {
      await built;
      grid.redraw(true);
      if (brushed && firstBrushed !== null) await showRow(firstBrushed, { selectIt: false });
    },
    /** Show only the selected rows (true) or every row (false). */
    async onlySelected(on) {
      onlyBrushed = on;
      await built;
      await grid.setData();
    },
    destroy() {
      grid.destroy();
    },
  };
}

/** Fetch the query in ``format`` (with the token in a header) and save it as a file. */
export async function download(query, format, extension) {
  const response = await fetch(tapPath("sync"), {
    method: "POST",
    headers: authHeaders(),
    body: new URLSearchParams({ LANG: "ADQL", QUERY: query, RESPONSEFORMAT: format }),
  });
  if (!response.ok) throw new Error(`download failed: HTTP ${response.status}`);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `result.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/**
 * Python that reproduces the result with pyvo; a job id reopens the async job (its result read
 * with pyarrow when the job wrote Arrow, as the portal's jobs do).
 */
export function notebookSnippet(query, jobId = null, format = "") {
  const tap = tapPath().href;
  const lines = [
    "import pyvo",
    "",
    `service = pyvo.dal.TAPService("${tap}")`,
    "# with a token: pyvo.auth.AuthSession() + session.credentials.set_password(...) or",
    "# requests' headers {'Authorization': 'Bearer TOKEN'}",
  ];
  if (jobId && /arrow/i.test(format)) {
    lines.push(`job = pyvo.dal.AsyncTAPJob("${tap}/async/${jobId}")`);
    lines.push("# the portal's jobs write an Arrow IPC stream (RESPONSEFORMAT=arrow)");
    lines.push("import pyarrow as pa");
    lines.push("import requests");
    lines.push("table = pa.ipc.open_stream(requests.get(job.result_uri).content).read_all()");
  } else if (jobId) {
    lines.push(`job = pyvo.dal.AsyncTAPJob("${tap}/async/${jobId}")`);
    lines.push("table = job.fetch_result().to_table()");
  } else {
    lines.push(`query = """\n${query}\n"""`);
    lines.push("table = service.run_sync(query).to_table()");
  }
  return lines.join("\n");
}
