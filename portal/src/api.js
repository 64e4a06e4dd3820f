// Talking to the skyvault service: TAP sync/async, UWS job lists, VOSI, DALI errors.
// Every request carries the signed-in token (if any) as a Bearer header; nothing else
// leaves the page (no CDN, no third-party service). Results come as Arrow IPC streams
// (RESPONSEFORMAT=arrow: columnar, 64-bit integers exact) and are held as columns (result.js).
import { fromArrow, fromJson } from "./result.js";

export const ARROW = "application/vnd.apache.arrow.stream";

const TOKEN_KEY = "skyvault.token";

export const base = new URL("..", window.location.href); // the server root (/portal/ -> /)
// The TAP service's URL (the session document says where; "/tap" by default).
let tap = new URL("tap", base).href;

export function tapPath(path = "") {
  return new URL(path ? `${tap}/${path}` : tap);
}

export function token() {
  return window.localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) window.localStorage.setItem(TOKEN_KEY, value);
  else window.localStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  // X-Requested-With: a 401 then carries no Basic challenge, which would open the
  // browser's own password dialog over the page.
  const headers = { ...extra, "X-Requested-With": "XMLHttpRequest" };
  const t = token();
  return t ? { ...headers, Authorization: `Bearer ${t}` } : headers;
}

/** An error the service reported, with the position in the query when it gave one. */
export class ServiceError extends Error {
  constructor(message, status, line = null, column = null) {
    super(message);
    this.status = status;
    this.line = line;
    this.column = column;
  }
}

/** The message of a DALI VOTable error document (INFO name="QUERY_STATUS" value="ERROR"). */
export function daliMessage(text) {
  try {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    for (const info of doc.getElementsByTagName("INFO")) {
      if (info.getAttribute("name") === "QUERY_STATUS" && info.getAttribute("value") === "ERROR") {
        return (info.textContent || "").trim();
      }
    }
  } catch (_) {
    /* not XML */
  }
  return text.slice(0, 500);
}

export function errorFromText(text, status) {
  const message = daliMessage(text);
  const where = /line (\d+), column (\d+)/.exec(message);
  return new ServiceError(
    message || `HTTP ${status}`,
    status,
    where ? Number(where[1]) : null,
    where ? Number(where[2]) : null,
  );
}

async function checked(response) {
  if (!response.ok) throw errorFromText(await response.text(), response.status);
  return response;
}

export async function get(path, params = null, accept = null) {
  const url = new URL(path, base);
  if (params) for (const [k, v] of Object.entries(params)) url.searchParams.append(k, v);
  const headers = authHeaders(accept ? { Accept: accept } : {});
  return checked(await fetch(url, { headers }));
}

export async function post(path, params, extraHeaders = {}) {
  const body = new URLSearchParams(params);
  const response = await fetch(new URL(path, base), {
    method: "POST",
    headers: authHeaders(extraHeaders),
    body,
    redirect: "follow",
  });
  return checked(response);
}

/**
 * Parse skyvault's JSON result keeping 64-bit integers exact: ids such as objectId exceed
 * 2^53, which a JavaScript number cannot hold, so an integer beyond the safe range is kept
 * as its decimal text (JSON.parse's source access, in every current browser). Only for a
 * job whose result was written as JSON; the portal's own queries ask for Arrow.
 */
export function parseResult(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
      return context.source;
    }
    return value;
  });
}

/** A result response (Arrow stream, or skyvault's JSON for an older job) as a Result. */
async function readResult(response) {
  const type = (response.headers.get("Content-Type") || "").split(";")[0].trim();
  if (type === ARROW) return fromArrow(new Uint8Array(await response.arrayBuffer()));
  if (type === "application/json") return fromJson(parseResult(await response.text()));
  throw new ServiceError(
    `this result is ${type || "of an unknown type"}: the portal shows Arrow or JSON results — download it instead`,
    415,
  );
}

/** A TAP sync query answered as an Arrow IPC stream, read into columns. */
export async function syncResult(query, maxrec = null, signal = undefined) {
  const params = { LANG: "ADQL", QUERY: query, RESPONSEFORMAT: "arrow" };
  if (maxrec !== null) params.MAXREC = String(maxrec);
  const response = await fetch(tapPath("sync"), {
    method: "POST",
    headers: authHeaders(),
    body: new URLSearchParams(params),
    signal,
  });
  await checked(response);
  return readResult(response);
}

/** A TAP sync query answered as skyvault's JSON format: {metadata, data, status}. */
export async function syncJson(query, maxrec = null, signal = undefined) {
  const params = { LANG: "ADQL", QUERY: query, RESPONSEFORMAT: "json" };
  if (maxrec !== null) params.MAXREC = String(maxrec);
  const response = await fetch(tapPath("sync"), {
    method: "POST",
    headers: authHeaders(),
    body: new URLSearchParams(params),
    signal,
  });
  await checked(response);
  return parseResult(await response.text());
}

export async function whoami() {
  const response = await get("portal/api/session");
  const session = await response.json();
  if (session.tap) tap = session.tap;
  return session;
}

// --- UWS -------------------------------------------------------------------------------------

const UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0";

function uwsText(node, name) {
  const found = node.getElementsByTagNameNS(UWS_NS, name)[0];
  return found ? (found.textContent || "").trim() : "";
}

function parseJob(node) {
  const params = {};
  for (const p of node.getElementsByTagNameNS(UWS_NS, "parameter")) {
    params[(p.getAttribute("id") || "").toUpperCase()] = (p.textContent || "").trim();
  }
  const results = [];
  for (const r of node.getElementsByTagNameNS(UWS_NS, "result")) {
    results.push({
      id: r.getAttribute("id"),
      href: r.getAttributeNS("http://www.w3.org/1999/xlink", "href"),
      size: r.getAttribute("size"),
    });
  }
  const error = node.getElementsByTagNameNS(UWS_NS, "errorSummary")[0];
  return {
    id: uwsText(node, "jobId") || node.getAttribute("id"),
    runId: uwsText(node, "runId"),
    phase: uwsText(node, "phase"),
    creationTime: uwsText(node, "creationTime"),
    startTime: uwsText(node, "startTime"),
    endTime: uwsText(node, "endTime"),
    destruction: uwsText(node, "destruction"),
    query: params.QUERY || "",
    params,
    results,
    error: error ? uwsText(error, "message") : "",
  };
}

export async function listJobs() {
  const response = await get(tapPath("async"), { LAST: "50" });
  const doc = new DOMParser().parseFromString(await response.text(), "application/xml");
  return [...doc.getElementsByTagNameNS(UWS_NS, "jobref")].map((ref) => ({
    id: ref.getAttribute("id"),
    phase: uwsText(ref, "phase"),
    runId: uwsText(ref, "runId"),
    creationTime: uwsText(ref, "creationTime"),
  }));
}

export async function job(id) {
  const response = await get(tapPath(`async/${encodeURIComponent(id)}`));
  const doc = new DOMParser().parseFromString(await response.text(), "application/xml");
  return parseJob(doc.documentElement);
}

export async function createJob(query, runId) {
  const response = await post(tapPath("async"), {
    LANG: "ADQL",
    QUERY: query,
    RESPONSEFORMAT: "arrow",
    RUNID: runId,
    PHASE: "RUN",
  });
  // fetch followed the 303 to the job document.
  const doc = new DOMParser().parseFromString(await response.text(), "application/xml");
  return parseJob(doc.documentElement);
}

export async function abortJob(id) {
  await post(tapPath(`async/${encodeURIComponent(id)}/phase`), { PHASE: "ABORT" });
}

export async function deleteJob(id) {
  const response = await fetch(tapPath(`async/${encodeURIComponent(id)}`), {
    method: "DELETE",
    headers: authHeaders(),
  });
  if (!response.ok && response.status !== 303) {
    throw errorFromText(await response.text(), response.status);
  }
}

export async function jobResult(id) {
  return readResult(await get(tapPath(`async/${encodeURIComponent(id)}/results/result`)));
}
