// The job monitor: the caller's UWS jobs (phase, elapsed, rows, destruction), cancel,
// delete, reopen.  The server keeps the jobs, so the list survives a page reload.
import { abortJob, deleteJob, job as fetchJob, listJobs } from "./api.js";
import { el } from "./schema.js";

function elapsed(j) {
  if (!j.startTime) return "";
  const end = j.endTime ? Date.parse(j.endTime) : Date.now();
  return `${((end - Date.parse(j.startTime)) / 1000).toFixed(1)} s`;
}

// Anonymous callers cannot list jobs (a job list needs an account), but a job's URL is
// enough to read it: the page remembers the ids of the jobs it created, in this browser.
const KNOWN = "skyvault.jobs";

function known() {
  try {
    return JSON.parse(window.localStorage.getItem(KNOWN) || "[]");
  } catch (_) {
    return [];
  }
}

function keep(ids) {
  window.localStorage.setItem(KNOWN, JSON.stringify(ids.slice(-50)));
}

export function rememberJob(id) {
  keep(known().filter((k) => k !== id).concat([id]));
}

function forget(id) {
  keep(known().filter((k) => k !== id));
}

export function createJobMonitor(container, { onOpen, onError }) {
  const table = el("table", { class: "jobs" });
  const refresh = el("button", { onclick: () => update() }, "refresh");
  container.replaceChildren(el("div", { class: "jobs-bar" }, refresh), table);
  let timer = null;

  async function update() {
    let listed;
    try {
      listed = await listJobs();
    } catch (e) {
      onError(e);
      return;
    }
    const ids = [...new Set(listed.map((j) => j.id).concat(known().reverse()))];
    const details = (
      await Promise.all(
        ids.map((id) =>
          fetchJob(id).catch((e) => {
            if (e.status === 404) forget(id); // destroyed, or not this caller's
            return null;
          }),
        ),
      )
    ).filter(Boolean);
    details.sort((a, b) => (b.creationTime || "").localeCompare(a.creationTime || ""));
    table.replaceChildren(
      el(
        "tr",
        {},
        ...["job", "name", "phase", "elapsed", "rows", "destruction", ""].map((h) => el("th", {}, h)),
      ),
    );
    for (const j of details) {
      const rows = j.results && j.results.length ? j.params.ROWS || "" : "";
      const actions = el("td", { class: "job-actions" });
      if (j.phase === "COMPLETED") {
        actions.append(el("button", { onclick: () => onOpen(j) }, "open"));
      }
      if (["PENDING", "QUEUED", "EXECUTING"].includes(j.phase)) {
        actions.append(
          el("button", { onclick: () => abortJob(j.id).then(update, onError) }, "cancel"),
        );
      }
      actions.append(
        el("button", { onclick: () => deleteJob(j.id).then(() => (forget(j.id), update()), onError) }, "delete"),
      );
      table.append(
        el(
          "tr",
          { "data-job": j.id, class: `phase-${(j.phase || "").toLowerCase()}`, title: j.error || j.query || "" },
          el("td", {}, j.id),
          el("td", {}, j.runId || ""),
          el("td", { class: "phase" }, j.phase || ""),
          el("td", {}, elapsed(j)),
          el("td", {}, rows),
          el("td", {}, j.destruction ? j.destruction.replace("T", " ").replace(/\.\d+/, "") : ""),
          actions,
        ),
      );
    }
    const busy = details.some((j) => ["PENDING", "QUEUED", "EXECUTING"].includes(j.phase));
    clearTimeout(timer);
    if (busy) timer = setTimeout(update, 1500);
  }
  return { update };
}
