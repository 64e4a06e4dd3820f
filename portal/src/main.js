// The skyvault portal: sign in, browse the schema, write ADQL, run it (sync or async), watch
// jobs, and look at the result as a table, on the sky and as a plot.
import "tabulator-tables/dist/css/tabulator_simple.min.css";
import "./style.css";
import * as api from "./api.js";
import { createEditor, unbounded } from "./editor.js";
import { createJobMonitor, rememberJob } from "./jobs.js";
import { drawPlot, numericColumns } from "./plot.js";
import { createGrid, download, FORMATS, notebookSnippet } from "./results.js";
import { el, loadSchema, renderSchema, starterQuery } from "./schema.js";
import { showLinks } from "./links.js";
import * as workspace from "./workspace.js";

const $ = (id) => document.getElementById(id);
const state = {
  result: null, // a Result (result.js): columns read from the service's Arrow stream
  query: "",
  jobId: null,
  grid: null,
  sky: null,
  selected: null, // the first selected row
  selection: null, // {rows: Uint32Array, mask: Uint8Array, region, from}: linked across the views
  session: null,
};
// For tests and the curious: the current result and selection.
window.skyvault = {
  ...(window.skyvault || {}),
  get result() {
    return state.result;
  },
  get selection() {
    return state.selection;
  },
  get grid() {
    return state.grid;
  },
  get sky() {
    return state.sky;
  },
};

function status(text, kind = "info") {
  const bar = $("status");
  bar.textContent = text;
  bar.className = `status ${kind}`;
}

function showError(error, editor = null) {
  status(error.message || String(error), "error");
  if (editor && error.line) editor.markError(error.line, error.column, error.message);
}

async function signIn() {
  const who = $("who");
  try {
    state.session = await api.whoami();
  } catch (e) {
    state.session = null;
    who.textContent = "";
    showError(e);
    return false;
  }
  const s = state.session;
  who.textContent = s.anonymous ? "anonymous" : s.user;
  who.title = s.groups && s.groups.length ? `groups: ${s.groups.join(", ")}` : "no groups";
  $("groups").textContent = s.groups && s.groups.length ? s.groups.join(", ") : "";
  $("token").value = api.token() ? "••••••••" : "";
  $("signout").hidden = !api.token();
  // The user's own tables: signed-in users only (the session names their schema).
  $("workspace-bar").hidden = s.anonymous || !s.workspace;
  return true;
}

async function loadExamples(editor) {
  try {
    const response = await api.get(api.tapPath("examples"), null, "application/xhtml+xml, text/html");
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const select = $("examples");
    for (const node of doc.querySelectorAll("[property='query']")) {
      const container = node.closest("[typeof='example']") || node.parentElement;
      const title = container.querySelector("[property='name'], h2, h3");
      const option = el("option", {}, (title ? title.textContent : node.textContent).trim().slice(0, 80));
      option.value = node.textContent.trim();
      select.append(option);
    }
    select.addEventListener("change", () => {
      if (select.value) editor.text = select.value;
      select.selectedIndex = 0;
    });
  } catch (_) {
    /* no examples: the menu stays empty */
  }
}

function showResult(result, query, jobId = null, format = "") {
  state.result = result;
  state.query = query;
  state.jobId = jobId;
  state.selected = null;
  state.selection = null;
  if (state.grid) state.grid.destroy();
  $("only-selected").checked = false;
  showSelectionCount();
  state.grid = createGrid($("grid"), result, { onSelect: (rows, from) => setSelection(rows, from) });
  const overflow = result.status === "OVERFLOW" ? " (truncated at MAXREC)" : "";
  if (result.status === "ERROR") status(`${result.numRows.toLocaleString()} rows, then: ${result.message}`, "error");
  else status(`${result.numRows.toLocaleString()} rows${overflow}`, "ok");
  $("snippet").textContent = notebookSnippet(query, jobId, format);
  fillPlotChoices();
  if (state.sky) state.sky.show(result);
  if (currentTab() === "plot") redrawPlot();
}

function rowLinks(index) {
  const meta = state.result.metadata.map((m) => m.name.toLowerCase());
  const idColumn = meta.indexOf("obs_publisher_did");
  const panel = $("links");
  if (idColumn < 0) {
    panel.textContent = "row actions need an image row (a result with obs_publisher_did, e.g. from C.obscore)";
    return;
  }
  const value = (name) => {
    const col = meta.indexOf(name);
    return col < 0 ? null : state.result.value(index, col);
  };
  showLinks(panel, state.result.text(index, idColumn), value("s_ra"), value("s_dec"), (e) => showError(e));
}

function showSelectionCount() {
  const n = state.selection ? state.selection.rows.length : 0;
  $("selection-count").textContent = n ? `${n.toLocaleString()} selected` : "";
  $("clear-selection").hidden = !n;
}

/**
 * The selection, linked across the views: ``rows`` (row indexes) chosen in the grid, on the sky
 * or in a plot (``from``) are highlighted in the others; a plot's brush ``region`` is kept.
 */
function setSelection(rows, from, region = null, plot = null) {
  if (!state.result) return;
  rows = rows || new Uint32Array(0);
  if (rows.length) {
    const mask = new Uint8Array(state.result.numRows);
    for (const i of rows) mask[i] = 1;
    state.selection = { rows, mask, region, from, plot };
    state.selected = rows[0];
  } else {
    state.selection = null;
    state.selected = null;
  }
  showSelectionCount();
  const mask = state.selection ? state.selection.mask : null;
  if (rows.length === 1 && (currentTab() === "links" || from === "grid")) rowLinks(rows[0]);
  if (from !== "grid" && state.grid) state.grid.brush(mask, rows).catch((e) => showError(e));
  if (from !== "sky" && state.sky) state.sky.highlight(rows);
  if (currentTab() === "plot") redrawPlot();
}

function select(index, from) {
  setSelection(Uint32Array.of(index), from);
}

function currentTab() {
  const active = document.querySelector(".tabs button.active");
  return active ? active.dataset.tab : "table";
}

function fillPlotChoices() {
  const columns = numericColumns(state.result.metadata);
  for (const id of ["plot-x", "plot-y"]) {
    const select = $(id);
    select.replaceChildren(...columns.map((c) => {
      const option = el("option", {}, c.name);
      option.value = String(c.index);
      return option;
    }));
  }
  if (columns.length > 1) $("plot-y").selectedIndex = 1;
}

function redrawPlot() {
  if (!state.result) return;
  const kind = $("plot-kind").value;
  const x = $("plot-x").value;
  const y = $("plot-y").value;
  if (x === "") {
    $("plot").textContent = "no numeric column to plot";
    return;
  }
  const sel = state.selection;
  const key = `${kind}|${x}|${y}`;
  drawPlot($("plot"), state.result, {
    kind,
    x: Number(x),
    y: kind === "histogram" || y === "" ? null : Number(y),
    selection: sel ? sel.mask : null,
    // The brush is drawn again only on the plot it was drawn on.
    region: sel && sel.from === "plot" && sel.plot === key ? sel.region : null,
    onBrush: (rows, region) => setSelection(rows, "plot", region, key),
  });
}

async function openSky() {
  if (state.sky) return state.sky;
  const { createSky } = await import("./sky.js");
  state.sky = await createSky($("sky"), {
    hips: state.session ? state.session.hips : [],
    onSelect: select,
    onSelectRows: (rows) => setSelection(rows, "sky"),
    onRegion: (region) => insertRegion(region),
  });
  if (state.result) {
    state.sky.show(state.result);
    if (state.selection) state.sky.highlight(state.selection.rows);
  }
  return state.sky;
}

let editor;

function insertRegion(region) {
  const text = editor.text;
  const condition = `CONTAINS(POINT('ICRS', ra, dec), ${region}) = 1`;
  if (/\bWHERE\b/i.test(text)) editor.text = text.replace(/\bWHERE\b/i, `WHERE ${condition} AND`);
  else if (text.trim()) editor.text = `${text.trimEnd()}\nWHERE ${condition}`;
  else editor.insert(region);
  status("region written into the query: check the position columns' names", "info");
}

async function run(mode) {
  const query = editor.text.trim();
  if (!query) return;
  const big = new Set(
    (state.session ? state.session.tables : []).filter((t) => t.nrows > 100000).map((t) => t.name.toLowerCase()),
  );
  const table = unbounded(query, big);
  if (table && !window.confirm(`${table} is large and the query has neither TOP nor WHERE: run it anyway?`)) {
    status("not run: add TOP n or a WHERE condition", "info");
    return;
  }
  status(mode === "async" ? "submitting job…" : "running…", "busy");
  try {
    if (mode === "async") {
      const runId = $("runid").value.trim() || query.replace(/\s+/g, " ").slice(0, 60);
      const job = await api.createJob(query, runId);
      rememberJob(job.id);
      status(`job ${job.id} ${job.phase}`, "info");
      jobs.update();
      document.querySelector(".tabs button[data-tab='jobs']").click();
    } else {
      const result = await api.syncResult(query);
      showResult(result, query);
    }
  } catch (e) {
    showError(e, editor);
  }
}

let jobs;

// --- the user's own tables (workspace.js) ----------------------------------------------------

function ownSchema() {
  const s = state.session;
  return s && !s.anonymous && s.workspace ? s.workspace : null;
}

/** "share" and "delete" on the tables of the user's own schema. */
function ownTableActions(table, item) {
  const own = ownSchema();
  if (!own || (table.schema_name || "").toLowerCase() !== own.toLowerCase()) return [];
  const name = table.table_name;
  const share = el("button", {
    class: "own share",
    title: "who else may read or load this table",
    onclick: (e) => {
      e.preventDefault();
      if (item.parentElement.querySelector(`form[data-share="${name}"]`)) return;
      const form = workspace.shareForm(name, state.session.groups || [], {
        onDone: () => status(`${name}: sharing saved`, "ok"),
        onError: (err) => showError(err),
      });
      item.after(form);
    },
  }, "share");
  const drop = el("button", {
    class: "own delete",
    title: "delete this table",
    onclick: async (e) => {
      e.preventDefault();
      if (!window.confirm(`Delete the table ${name}? Its rows are gone for good.`)) return;
      try {
        await workspace.dropTable(name);
        // After the reload, which shows its own progress in the status line.
        await reloadSession();
        status(`${name} deleted`, "ok");
      } catch (err) {
        showError(err);
      }
    },
  }, "delete");
  return [share, drop];
}

/** The session (tables, sizes) and the schema browser again, after a table came or went. */
async function reloadSession() {
  await signIn();
  await loadAll();
}

function askTableName(suggested) {
  const own = ownSchema();
  const answer = window.prompt(`Name of the new table (in your schema ${own}):`, suggested);
  if (answer === null) return null;
  return workspace.checkName(answer.trim());
}

/** Follow a job that writes a table; the schema browser shows the table when it is done. */
async function whenSaved(jobId, qualified) {
  rememberJob(jobId);
  jobs.update();
  status(`job ${jobId}: saving ${qualified}…`, "busy");
  const done = await workspace.waitForJob(jobId);
  jobs.update();
  if (done.phase === "COMPLETED") {
    await reloadSession();
    status(`saved as ${qualified}`, "ok");
  } else {
    status(`${qualified} not saved: ${done.error || done.phase}`, "error");
  }
}

async function saveResultAsTable() {
  const query = (state.query || editor.text).trim();
  if (!query) {
    status("run a query first: its result is what is saved", "info");
    return;
  }
  try {
    const name = askTableName("my_result");
    if (!name) return;
    const qualified = `${ownSchema()}.${name}`;
    const id = await workspace.saveAsTable(query, qualified);
    await whenSaved(id, qualified);
  } catch (e) {
    showError(e);
  }
}

async function uploadFile(input) {
  const file = input.files && input.files[0];
  input.value = "";
  if (!file) return;
  try {
    const name = askTableName(workspace.tableNameFor(file));
    if (!name) return;
    const qualified = `${ownSchema()}.${name}`;
    status(`uploading ${file.name}…`, "busy");
    const answer = await workspace.uploadTable(file, qualified);
    if (answer && answer.job) {
      await whenSaved(answer.job, qualified);
      return;
    }
    await reloadSession();
    status(String(answer).trim() || `uploaded as ${qualified}`, "ok");
  } catch (e) {
    showError(e);
  }
}

async function start() {
  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value && !value.startsWith("•")) api.setToken(value);
    if (await signIn()) await loadAll();
  });
  $("signout").addEventListener("click", async () => {
    api.setToken("");
    await signIn();
    await loadAll();
  });
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", async () => {
      for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b === button);
      for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== `panel-${button.dataset.tab}`;
      if (button.dataset.tab === "sky") await openSky().catch((e) => showError(e));
      if (button.dataset.tab === "plot") redrawPlot();
      if (button.dataset.tab === "table" && state.grid) await state.grid.refresh().catch((e) => showError(e));
      if (button.dataset.tab === "jobs") jobs.update();
      if (button.dataset.tab === "links" && state.result && state.selected !== null) rowLinks(state.selected);
    });
  }
  for (const id of ["plot-kind", "plot-x", "plot-y"]) $(id).addEventListener("change", redrawPlot);
  $("only-selected").addEventListener("change", () => {
    if (state.grid) state.grid.onlySelected($("only-selected").checked).catch((e) => showError(e));
  });
  $("clear-selection").addEventListener("click", () => setSelection(null, "button"));
  $("save-table").addEventListener("click", saveResultAsTable);
  $("upload-table").addEventListener("change", (e) => uploadFile(e.target));
  const formats = $("download");
  for (const [value, label, extension] of FORMATS) {
    const option = el("option", {}, label);
    option.value = `${value}|${extension}`;
    formats.append(option);
  }
  formats.addEventListener("change", async () => {
    const [value, extension] = formats.value.split("|");
    formats.selectedIndex = 0;
    if (!state.query || !value) return;
    try {
      await download(state.query, value, extension);
    } catch (e) {
      showError(e);
    }
  });
  $("copy-snippet").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("snippet").textContent));
  $("region-view").addEventListener("click", async () => (await openSky()).regionFromView());
  $("sky-select").addEventListener("click", async () => {
    (await openSky()).selectRectangle();
    status("drag a rectangle on the sky: the rows inside are selected", "info");
  });
  $("region-draw").addEventListener("click", async () => {
    const sky = await openSky();
    if (sky.drawing) {
      if (!sky.finishPolygon()) status("click at least three points on the sky first", "info");
      $("region-draw").textContent = "draw polygon";
    } else {
      sky.startPolygon();
      $("region-draw").textContent = "finish polygon";
      status("click the polygon's corners on the sky, then 'finish polygon'", "info");
    }
  });
  jobs = createJobMonitor($("jobs"), {
    onOpen: async (job) => {
      try {
        const result = await api.jobResult(job.id);
        showResult(result, job.query, job.id, (job.params && job.params.RESPONSEFORMAT) || "");
        document.querySelector(".tabs button[data-tab='table']").click();
      } catch (e) {
        showError(e);
      }
    },
    onError: (e) => showError(e),
  });
  await signIn();
  await loadAll();
}

async function loadAll() {
  status("loading the schema…", "busy");
  let schema;
  try {
    schema = await loadSchema();
  } catch (e) {
    showError(e);
    return;
  }
  const holder = $("editor");
  const previous = editor ? editor.text : "";
  holder.replaceChildren();
  editor = createEditor(holder, { schema, onRun: () => run("sync") });
  editor.text = previous;
  renderSchema($("schema"), schema, (table) => {
    editor.text = starterQuery(table);
  }, (column) => editor.insert(column.column_name), ownTableActions);
  $("run").onclick = () => run("sync");
  $("run-async").onclick = () => run("async");
  if (!$("examples").options.length || $("examples").options.length === 1) await loadExamples(editor);
  status(`${schema.tables.size} tables`, "ok");
  document.body.dataset.ready = "true";
}

start();
