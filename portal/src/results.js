// Results: a virtualised grid (Tabulator: only the visible rows are in the DOM), downloads in
// every format the service writes, and a pyvo snippet that reproduces the query.
import { TabulatorFull as Tabulator } from "tabulator-tables";
import { authHeaders, tapPath } from "./api.js";

export const FORMATS = [
  ["votable", "VOTable (BINARY2)", "vot"],
  ["csv", "CSV", "csv"],
  ["tsv", "TSV", "tsv"],
  ["fits", "FITS", "fits"],
  ["parquet", "Parquet", "parquet"],
  ["json", "JSON", "json"],
];

function headerTitle(m) {
  return [m.name, m.datatype, m.unit && `unit: ${m.unit}`, m.ucd && `UCD: ${m.ucd}`, m.description]
    .filter(Boolean)
    .join("\n");
}

/** Rows as objects keyed by a safe field id (column names may contain dots or spaces). */
export function toRecords(result) {
  const n = result.metadata.length;
  return result.data.map((row, index) => {
    const record = { __row: index };
    for (let i = 0; i < n; i++) record[`c${i}`] = row[i];
    return record;
  });
}

export function createGrid(element, result, { onSelect }) {
  const numeric = new Set(["short", "int", "long", "float", "double", "unsignedByte"]);
  const columns = result.metadata.map((m, i) => ({
    title: m.name + (m.unit ? ` [${m.unit}]` : ""),
    field: `c${i}`,
    headerTooltip: headerTitle(m),
    headerFilter: "input",
    headerFilterFunc: numeric.has(m.datatype) ? numericFilter : "like",
    sorter: numeric.has(m.datatype) ? "number" : "string",
    hozAlign: numeric.has(m.datatype) ? "right" : "left",
    formatter: (cell) => {
      const v = cell.getValue();
      return v === null || v === undefined ? "" : Array.isArray(v) ? `[${v.join(", ")}]` : String(v);
    },
  }));
  const grid = new Tabulator(element, {
    data: toRecords(result),
    columns,
    index: "__row",
    layout: "fitDataStretch",
    height: "100%",
    renderVertical: "virtual",
    selectableRows: 1,
    placeholder: "no rows",
  });
  grid.on("rowSelectionChanged", (data) => {
    if (data.length) onSelect(data[0].__row, "grid");
  });
  return grid;
}

// A header filter on a numeric column accepts "<10", ">= 3", "1..2" or a number.
function numericFilter(headerValue, rowValue) {
  if (rowValue === null || rowValue === undefined) return false;
  const text = String(headerValue).trim();
  const range = /^(-?[\d.eE+-]+)\s*\.\.\s*(-?[\d.eE+-]+)$/.exec(text);
  if (range) return rowValue >= Number(range[1]) && rowValue <= Number(range[2]);
  const cmp = /^(<=|>=|<|>|=)?\s*(-?[\d.eE+-]+)$/.exec(text);
  if (!cmp) return String(rowValue).includes(text);
  const v = Number(cmp[2]);
  switch (cmp[1]) {
    case "<": return rowValue < v;
    case "<=": return rowValue <= v;
    case ">": return rowValue > v;
    case ">=": return rowValue >= v;
    default: return rowValue === v;
  }
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

/** Python that reproduces the result with pyvo (a job id reopens the async job). */
export function notebookSnippet(query, jobId = null) {
  const tap = tapPath().href;
  const lines = [
    "import pyvo",
    "",
    `service = pyvo.dal.TAPService("${tap}")`,
    "# with a token: pyvo.auth.AuthSession() + session.credentials.set_password(...) or",
    "# requests' headers {'Authorization': 'Bearer TOKEN'}",
  ];
  if (jobId) {
    lines.push(`job = pyvo.dal.AsyncTAPJob("${tap}/async/${jobId}")`);
    lines.push("table = job.fetch_result().to_table()");
  } else {
    lines.push(`query = """\n${query}\n"""`);
    lines.push("table = service.run_sync(query).to_table()");
  }
  return lines.join("\n");
}
