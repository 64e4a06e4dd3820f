// The signed-in user's own tables (the workspace, docs/workspace.md), through the service's
// youcat API under the TAP URL: save a query's result as a table (an async job with DEST),
// upload a file as a table (PUT /tables, POST /load), delete and share one's tables
// (DELETE /tables, POST /permissions). Anonymous callers see none of it.
import { authHeaders, errorFromText, job as fetchJob, post, tapPath } from "./api.js";
import { el } from "./schema.js";

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

/** A table name the service accepts (a regular identifier), or an Error saying why not. */
export function checkName(name) {
  if (!NAME.test(name)) {
    throw new Error(`"${name}" is not a table name: use letters, digits and _, starting with a letter`);
  }
  return name;
}

async function send(method, path, body = null, contentType = null) {
  const headers = authHeaders(contentType ? { "Content-Type": contentType } : {});
  const response = await fetch(tapPath(path), { method, headers, body });
  if (!response.ok) throw errorFromText(await response.text(), response.status);
  return response.text();
}

/** Run ``query`` as an async job whose result is saved as the table ``qualified``. */
export async function saveAsTable(query, qualified) {
  const response = await post(tapPath("async"), {
    LANG: "ADQL",
    QUERY: query,
    RESPONSEFORMAT: "arrow",
    RUNID: `save as ${qualified}`,
    DEST: qualified,
    DEST_MODE: "create",
    PHASE: "RUN",
  });
  const doc = new DOMParser().parseFromString(await response.text(), "application/xml");
  const id = doc.getElementsByTagNameNS("http://www.ivoa.net/xml/UWS/v1.0", "jobId")[0];
  return (id ? id.textContent : doc.documentElement.getAttribute("id") || "").trim();
}

/** Poll job ``id`` until it ends; resolves with the job (its phase and error message). */
export async function waitForJob(id, every = 1000) {
  for (;;) {
    const j = await fetchJob(id);
    if (!["PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED"].includes(j.phase)) return j;
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

// --- upload ----------------------------------------------------------------------------------

function xml(text) {
  return String(text).replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]);
}

/** The CSV/TSV header and the first rows' cells (quotes as RFC 4180 writes them). */
export function splitDelimited(text, delimiter, maxRows = 1000) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length && rows.length <= maxRows; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === "") quoted = true;
    else if (c === delimiter) row.push(cell), (cell = "");
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell);
      cell = "";
      if (row.length > 1 || row[0] !== "") rows.push(row);
      row = [];
    } else cell += c;
  }
  if (cell !== "" || row.length) rows.push(row.concat([cell]));
  return rows;
}

/**
 * The VOTable type of each column from its cells: ``long`` when every non-empty cell is an
 * integer that fits 64 bits, ``double`` when every one is a number, else ``char`` (a string);
 * a column without values is a string.
 */
export function columnTypes(rows, width) {
  const types = [];
  for (let c = 0; c < width; c++) {
    let kind = null;
    for (const row of rows) {
      const v = (row[c] ?? "").trim();
      if (v === "" || /^(nan|null)$/i.test(v)) continue;
      if (/^[-+]?\d{1,18}$/.test(v)) kind = kind || "long";
      else if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v) || /^[-+]?inf(inity)?$/i.test(v)) {
        kind = kind === "char" ? "char" : "double";
      } else {
        kind = "char";
        break;
      }
    }
    types.push(kind || "char");
  }
  return types;
}

/** A VOSI table document for columns ``names`` of VOTable types ``types`` (and ``units``). */
export function vosiTable(qualified, names, types, units = []) {
  const columns = names.map((n, i) => {
    const size = types[i] === "char" ? ' arraysize="*"' : "";
    const unit = units[i] ? `<unit>${xml(units[i])}</unit>` : "";
    return `<column><name>${xml(n)}</name>${unit}<dataType xsi:type="vs:VOTableType"${size}>${types[i]}</dataType></column>`;
  });
  return (
    '<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" ' +
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" ' +
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
    `<name>${xml(qualified)}</name>${columns.join("")}</vosi:table>`
  );
}

// FITS binary-table column formats (TFORMn: repeat count, then the code) as VOTable types.
const FITS_TYPES = { L: "boolean", B: "unsignedByte", I: "short", J: "int", K: "long", E: "float", D: "double" };

/**
 * The columns of the first binary-table extension of a FITS file (its header cards: TTYPEn,
 * TFORMn, TUNITn), as {names, types, sizes, units}; an Error for what the portal cannot define.
 */
export async function fitsColumns(file) {
  const BLOCK = 2880;
  let offset = 0;
  let primary = true;
  for (let hdu = 0; hdu < 50 && offset < file.size; hdu++) {
    const cards = new Map();
    let end = false;
    while (!end && offset < file.size) {
      const block = await file.slice(offset, offset + BLOCK).text();
      offset += BLOCK;
      for (let i = 0; i + 80 <= block.length; i += 80) {
        const card = block.slice(i, i + 80);
        const key = card.slice(0, 8).trim();
        if (key === "END") {
          end = true;
          break;
        }
        if (card.slice(8, 10) !== "= ") continue;
        let value = card.slice(10).trim();
        if (value.startsWith("'")) value = value.slice(1, value.indexOf("'", 1)).trim();
        else value = value.split("/")[0].trim();
        cards.set(key, value);
      }
    }
    if (!primary && cards.get("XTENSION") === "BINTABLE") {
      const n = Number(cards.get("TFIELDS") || 0);
      const out = { names: [], types: [], sizes: [], units: [] };
      for (let i = 1; i <= n; i++) {
        const name = cards.get(`TTYPE${i}`) || `col${i}`;
        const form = /^(\d*)([A-Z])/.exec(cards.get(`TFORM${i}`) || "");
        const repeat = form && form[1] ? Number(form[1]) : 1;
        const code = form ? form[2] : "?";
        if (code === "A") out.types.push("char"), out.sizes.push("*");
        else if (FITS_TYPES[code] && repeat === 1) out.types.push(FITS_TYPES[code]), out.sizes.push("");
        else {
          throw new Error(
            `column ${name} of the FITS table (TFORM ${cards.get(`TFORM${i}`)}) is not a scalar the portal can define: ` +
              "create the table with pyvo (docs/workspace.md), then load the file",
          );
        }
        out.names.push(name);
        out.units.push(cards.get(`TUNIT${i}`) || "");
      }
      return out;
    }
    // Skip this unit's data: |BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn), in blocks.
    const naxis = Number(cards.get("NAXIS") || 0);
    let size = naxis ? 1 : 0;
    for (let i = 1; i <= naxis; i++) size *= Number(cards.get(`NAXIS${i}`) || 0);
    size = (Math.abs(Number(cards.get("BITPIX") || 8)) / 8) * Number(cards.get("GCOUNT") || 1) *
      (Number(cards.get("PCOUNT") || 0) + size);
    offset += Math.ceil(size / BLOCK) * BLOCK;
    primary = false;
  }
  throw new Error(`${file.name} has no binary table (a FITS BINTABLE extension) to load`);
}

function kindOf(file) {
  const name = file.name.toLowerCase();
  if (/\.(csv|txt)$/.test(name)) return "csv";
  if (/\.tsv$/.test(name)) return "tsv";
  if (/\.(xml|vot|votable)$/.test(name)) return "votable";
  if (/\.parquet$/.test(name)) return "parquet";
  if (/\.(fits|fit|fts)$/.test(name)) return "fits";
  return null;
}

/** The default table name for a file: its name without the extension, as an identifier. */
export function tableNameFor(file) {
  const stem = file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_]/g, "_");
  return /^[A-Za-z]/.test(stem) ? stem : `t_${stem}`;
}

/**
 * Upload ``file`` as the table ``qualified``: a VOTable is created with its rows in one PUT; a
 * CSV/TSV gets a definition from its header line and first rows, a FITS file from its
 * binary table's header (PUT), then its rows (POST /load), and the table is dropped again
 * when the load fails; a Parquet file is saved through
 * an async job over the upload (the service reads its schema). Resolves with the service's
 * message (or, for Parquet, the job id as ``{job}``).
 */
export async function uploadTable(file, qualified) {
  const kind = kindOf(file);
  if (kind === "votable") {
    return send("PUT", `tables/${qualified}`, file, "application/x-votable+xml");
  }
  if (kind === "csv" || kind === "tsv" || kind === "fits") {
    let definition;
    if (kind === "fits") {
      const c = await fitsColumns(file);
      definition = vosiTable(qualified, c.names, c.types, c.units);
    } else {
      const head = await file.slice(0, 1 << 20).text();
      const rows = splitDelimited(head, kind === "csv" ? "," : "\t");
      if (!rows.length) throw new Error(`${file.name} is empty: a header line naming the columns is needed`);
      const names = rows[0].map((n) => n.trim());
      definition = vosiTable(qualified, names, columnTypes(rows.slice(1), names.length));
    }
    await send("PUT", `tables/${qualified}`, definition, "text/xml");
    const type = { csv: "text/csv", tsv: "text/tab-separated-values", fits: "application/fits" }[kind];
    try {
      return await send("POST", `load/${qualified}`, file, type);
    } catch (e) {
      await send("DELETE", `tables/${qualified}`).catch(() => null);
      throw e;
    }
  }
  if (kind === "parquet") {
    const form = new FormData();
    form.append("LANG", "ADQL");
    form.append("QUERY", "SELECT * FROM TAP_UPLOAD.upload");
    form.append("UPLOAD", "upload,param:upload");
    form.append("upload", file, file.name);
    form.append("RESPONSEFORMAT", "arrow");
    form.append("RUNID", `upload ${file.name} as ${qualified}`);
    form.append("DEST", qualified);
    form.append("DEST_MODE", "create");
    form.append("PHASE", "RUN");
    const response = await fetch(tapPath("async"), { method: "POST", headers: authHeaders(), body: form });
    const text = await response.text();
    if (!response.ok) throw errorFromText(text, response.status);
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const id = doc.getElementsByTagNameNS("http://www.ivoa.net/xml/UWS/v1.0", "jobId")[0];
    return { job: (id ? id.textContent : "").trim() };
  }
  throw new Error(
    `${file.name}: the portal uploads CSV (.csv), TSV (.tsv), VOTable (.xml, .vot), FITS (.fits) and Parquet (.parquet) files`,
  );
}

// --- delete and share ------------------------------------------------------------------------

export function dropTable(qualified) {
  return send("DELETE", `tables/${qualified}`);
}

/** The grants on a table: {owner, public, rGroup, rwGroup} from youcat's key=value lines. */
export async function permissions(qualified) {
  const text = await send("GET", `permissions/${qualified}`);
  const out = { owner: "", public: false, rGroup: "", rwGroup: "" };
  for (const line of text.split("\n")) {
    const [key, ...rest] = line.split("=");
    const value = rest.join("=").trim();
    if (key.trim() === "owner") out.owner = value;
    if (key.trim() === "public") out.public = value === "true";
    // Several groups are several lines of the same key.
    if (key.trim() === "r-group" && value) out.rGroup = out.rGroup ? `${out.rGroup}, ${value}` : value;
    if (key.trim() === "rw-group" && value) out.rwGroup = out.rwGroup ? `${out.rwGroup}, ${value}` : value;
  }
  return out;
}

export function setPermissions(qualified, { isPublic, rGroup, rwGroup }) {
  const body = `public=${isPublic ? "true" : "false"}\nr-group=${rGroup.trim()}\nrw-group=${rwGroup.trim()}\n`;
  return send("POST", `permissions/${qualified}`, body, "text/plain");
}

/** The share form of table ``qualified`` (public, read group, read-write group). */
export function shareForm(qualified, groups, { onDone, onError }) {
  const isPublic = el("input", { type: "checkbox", name: "public" });
  const list = `groups-${qualified.replace(/\W/g, "_")}`;
  const rGroup = el("input", { name: "r-group", placeholder: "read group", size: "12", list });
  const rwGroup = el("input", { name: "rw-group", placeholder: "read-write group", size: "12", list });
  const options = el("datalist", { id: list }, ...groups.map((g) => el("option", { value: g })));
  // Disabled until the current grants are in: typing before they arrive would be overwritten.
  const fields = el(
    "fieldset",
    { disabled: "" },
    el("label", {}, isPublic, " public"),
    rGroup,
    rwGroup,
    options,
    el("button", { type: "submit" }, "save"),
  );
  const form = el(
    "form",
    { class: "share-form", "data-share": qualified },
    fields,
    el("button", { type: "button", onclick: () => form.remove() }, "close"),
  );
  permissions(qualified).then(
    (p) => {
      isPublic.checked = p.public;
      rGroup.value = p.rGroup;
      rwGroup.value = p.rwGroup;
      fields.disabled = false;
    },
    (e) => {
      fields.disabled = false;
      onError(e);
    },
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await setPermissions(qualified, { isPublic: isPublic.checked, rGroup: rGroup.value, rwGroup: rwGroup.value });
      form.remove();
      onDone();
    } catch (e) {
      onError(e);
    }
  });
  return form;
}
