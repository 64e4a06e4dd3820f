// A query result held as columns: read from the service's Arrow IPC stream (RESPONSEFORMAT=arrow)
// without building one JavaScript object per row. 64-bit integers stay exact (BigInt64Array),
// NULLs are validity bits, and each column's unit, UCD and description come from its Arrow
// field metadata (the one source the grid, sky and plot read). skyvault's JSON format (an older
// job's result) is turned into the same shape.
import { RecordBatchReader, Table, Type } from "apache-arrow";

const NUMERIC = new Set(["short", "int", "long", "float", "double", "unsignedByte"]);
const KEYS = ["datatype", "arraysize", "xtype", "unit", "ucd", "utype", "description"];

/** One column: typed values where the type allows, exact text for display, NaN for NULL. */
class Column {
  constructor(meta, get, valid, raw, kind, unit = null) {
    this.meta = meta;
    this.get = get; // row -> value (BigInt for 64-bit integers, null for NULL)
    this.valid = valid; // row -> boolean
    this.raw = raw; // typed array (numbers or BigInts) or null
    this.kind = kind; // "number" | "bigint" | "timestamp" | "other"
    this.unit = unit; // timestamp unit divisor to seconds (BigInt), else null
    this.numeric = NUMERIC.has(meta.datatype) && !meta.arraysize;
    this._numbers = null;
  }

  /** The cell as text: exact integers, shortest round-trip floats, ISO-8601 timestamps. */
  text(row) {
    if (!this.valid(row)) return "";
    if (this.kind === "timestamp") return isoTimestamp(this.raw[row], this.unit);
    if (this.raw instanceof Float32Array) return shortestFloat32(this.raw[row]);
    const v = this.get(row);
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return `[${v.join(", ")}]`;
    if (typeof v === "object" && typeof v.toArray === "function") return `[${Array.from(v.toArray()).join(", ")}]`;
    return String(v);
  }

  /** Every cell as a double (NaN where NULL or not a number): what the sky and plots read. */
  numbers() {
    if (this._numbers) return this._numbers;
    const n = this.length;
    const out = new Float64Array(n);
    if (this.kind === "number" && this.raw instanceof Float64Array) out.set(this.raw);
    else if (this.raw && this.kind !== "other") for (let i = 0; i < n; i++) out[i] = Number(this.raw[i]);
    else for (let i = 0; i < n; i++) out[i] = typeof this.get(i) === "number" ? this.get(i) : Number.NaN;
    if (this.nullCount) for (let i = 0; i < n; i++) if (!this.valid(i)) out[i] = Number.NaN;
    this._numbers = out;
    return out;
  }
}

// A float's shortest decimal that reads back as the same float (as the service's text formats
// write it): 0.1f is "0.1", not the double 0.10000000149011612.
function shortestFloat32(value) {
  if (!Number.isFinite(value)) return String(value);
  for (let digits = 1; digits < 10; digits++) {
    const text = value.toPrecision(digits);
    if (Math.fround(Number(text)) === value) return String(Number(text));
  }
  return String(value);
}

function isoTimestamp(value, perSecond) {
  const units = BigInt(value);
  let seconds = units / perSecond;
  let fraction = units % perSecond;
  if (fraction < 0n) {
    fraction += perSecond;
    seconds -= 1n;
  }
  const date = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  if (!fraction) return date;
  const digits = String(perSecond).length - 1;
  return `${date}.${String(fraction).padStart(digits, "0").replace(/0+$/, "")}`;
}

const PER_SECOND = [1n, 1000n, 1000000n, 1000000000n]; // arrow TimeUnit: SECOND, MILLI, MICRO, NANO

function arrowColumn(field, vector, length) {
  const meta = { name: field.name };
  for (const key of KEYS) {
    const value = field.metadata.get(key);
    if (value) meta[key] = value;
  }
  if (!meta.datatype) meta.datatype = "char";
  const typeId = vector.type.typeId;
  const nullCount = vector.nullCount;
  const valid = nullCount ? (i) => vector.isValid(i) : () => true;
  let raw = null;
  let kind = "other";
  let unit = null;
  let get = (i) => vector.get(i);
  if (typeId === Type.Int || typeId === Type.Float) {
    raw = vector.toArray();
    kind = raw instanceof BigInt64Array || raw instanceof BigUint64Array ? "bigint" : "number";
    get = nullCount ? (i) => (vector.isValid(i) ? raw[i] : null) : (i) => raw[i];
  } else if (typeId === Type.Timestamp) {
    raw = vector.toArray(); // BigInt64Array in the column's own unit
    kind = "timestamp";
    unit = PER_SECOND[vector.type.unit];
    get = nullCount ? (i) => (vector.isValid(i) ? isoTimestamp(raw[i], unit) : null) : (i) => isoTimestamp(raw[i], unit);
  }
  const column = new Column(meta, get, valid, raw, kind, unit);
  column.length = length;
  column.nullCount = nullCount;
  return column;
}

/** A result: metadata, columns, the row count and how it ended (OK, OVERFLOW, ERROR). */
export class Result {
  constructor(columns, numRows, status = "OK", message = "") {
    this.columns = columns;
    this.metadata = columns.map((c) => c.meta);
    this.numRows = numRows;
    this.status = status;
    this.message = message;
  }

  text(row, col) {
    return this.columns[col].text(row);
  }

  value(row, col) {
    return this.columns[col].get(row);
  }
}

/** An Arrow IPC stream (bytes) as a Result; its last, empty batch says how it ended. */
export function fromArrow(bytes) {
  const reader = RecordBatchReader.from(bytes);
  const batches = [];
  let status = "OK";
  let message = "";
  for (const batch of reader) {
    if (batch.metadata && batch.metadata.has("QUERY_STATUS")) {
      status = batch.metadata.get("QUERY_STATUS");
      message = batch.metadata.get("message") || "";
    }
    if (batch.numRows) batches.push(batch);
  }
  const table = new Table(reader.schema, batches);
  const n = table.numRows;
  const columns = table.schema.fields.map((f, i) => arrowColumn(f, table.getChildAt(i), n));
  return new Result(columns, n, status, message);
}

/** skyvault's JSON result ({metadata, data, status}) as a Result. */
export function fromJson(doc) {
  const rows = doc.data;
  const columns = doc.metadata.map((meta, c) => {
    const get = (i) => (rows[i][c] === undefined ? null : rows[i][c]);
    const column = new Column(meta, get, (i) => rows[i][c] !== null && rows[i][c] !== undefined, null, "other");
    column.length = rows.length;
    column.nullCount = 0;
    return column;
  });
  return new Result(columns, rows.length, doc.status || "OK", doc.message || "");
}
