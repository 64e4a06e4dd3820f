// Row actions for image rows (ObsCore results): the row's DataLink links — preview, header (the
// header service), the file, and a SODA cutout around a position — fetched with the caller's token.
import { authHeaders, errorFromText, tapPath } from "./api.js";
import { el } from "./schema.js";

/** The links of one ID: [{semantics, access_url, service_def, content_type, ...}] and the
 * SODA accessURL of the #cutout descriptor. */
export async function fetchLinks(id) {
  const url = tapPath("datalink/links");
  url.searchParams.set("ID", id);
  const response = await fetch(url, { headers: authHeaders() });
  const text = await response.text();
  if (!response.ok) throw errorFromText(text, response.status);
  const doc = new DOMParser().parseFromString(text, "application/xml");
  const results = [...doc.getElementsByTagName("RESOURCE")].find((r) => r.getAttribute("type") === "results");
  const names = [...results.getElementsByTagName("FIELD")].map((f) => f.getAttribute("name"));
  const rows = [...results.getElementsByTagName("TR")].map((tr) =>
    Object.fromEntries([...tr.getElementsByTagName("TD")].map((td, i) => [names[i], (td.textContent || "").trim()])),
  );
  let soda = null;
  for (const r of doc.getElementsByTagName("RESOURCE")) {
    if (r.getAttribute("utype") !== "adhoc:service") continue;
    for (const p of r.getElementsByTagName("PARAM")) if (p.getAttribute("name") === "accessURL") soda = p.getAttribute("value");
  }
  return { rows, soda };
}

async function blobOf(url) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw errorFromText(await response.text(), response.status);
  return response.blob();
}

function save(blob, name) {
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** Fill ``container`` with the actions of the image ``id`` (at ``ra``, ``dec`` when known). */
export async function showLinks(container, id, ra, dec, onError) {
  container.replaceChildren(el("p", {}, `links of ${id}…`));
  let found;
  try {
    found = await fetchLinks(id);
  } catch (e) {
    onError(e);
    container.replaceChildren(el("p", { class: "error" }, e.message));
    return;
  }
  const by = (term) => found.rows.find((r) => r.semantics === term && r.access_url);
  const failed = found.rows.find((r) => r.error_message);
  if (failed) {
    container.replaceChildren(el("p", { class: "error" }, failed.error_message));
    return;
  }
  const title = el("h3", {}, id);
  const preview = el("img", { class: "preview", alt: `preview of ${id}` });
  const header = el("pre", { class: "header" });
  const actions = el("div", { class: "link-actions" });
  const file = by("#this");
  if (file) {
    const size = file.content_length ? ` (${(Number(file.content_length) / 1024).toFixed(0)} kB)` : "";
    actions.append(el("button", { onclick: () => blobOf(file.access_url).then((b) => save(b, `${id}.fits`), onError) }, `download FITS${size}`));
  }
  if (found.soda) {
    const radius = el("input", { id: "cutout-radius", type: "number", value: "0.01", step: "0.005", min: "0.0001", size: "6", "aria-label": "cutout radius (deg)" });
    const cut = el("button", {
      id: "cutout",
      onclick: () => {
        const url = new URL(found.soda, window.location.href);
        url.searchParams.set("ID", id);
        url.searchParams.set("CIRCLE", `${ra} ${dec} ${radius.value}`);
        blobOf(url).then((b) => save(b, `${id}-cutout.fits`), onError);
      },
    }, "cutout (FITS)");
    actions.append(el("span", {}, " radius ", radius, " deg at the row's position "), cut);
  }
  container.replaceChildren(title, actions, preview, header);
  const p = by("#preview");
  if (p) blobOf(p.access_url).then((b) => { preview.src = URL.createObjectURL(b); }, onError);
  const h = by("#detached-header");
  if (h) blobOf(h.access_url).then((b) => b.text()).then((t) => { header.textContent = t; }, onError);
}
