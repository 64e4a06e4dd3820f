// The schema browser: schemas, tables and columns from TAP_SCHEMA (what the caller may see),
// with units, UCDs and full descriptions on hover; a search box; a click writes a starter query.
import { syncJson } from "./api.js";

function rows(result) {
  const names = result.metadata.map((m) => m.name.toLowerCase());
  return result.data.map((row) => Object.fromEntries(names.map((n, i) => [n, row[i]])));
}

/** Everything the portal needs to know about the visible tables (one round trip each). */
export async function loadSchema() {
  const [schemas, tables, columns] = await Promise.all([
    syncJson("SELECT schema_name, description FROM TAP_SCHEMA.schemas ORDER BY schema_name"),
    syncJson(
      "SELECT schema_name, table_name, table_type, description FROM TAP_SCHEMA.tables ORDER BY table_name",
    ),
    syncJson(
      "SELECT table_name, column_name, datatype, unit, ucd, description, principal, indexed " +
        "FROM TAP_SCHEMA.columns ORDER BY table_name, column_index",
      200000,
    ),
  ]);
  const bySchema = new Map(rows(schemas).map((s) => [s.schema_name, { ...s, tables: [] }]));
  const byTable = new Map();
  for (const t of rows(tables)) {
    const entry = { ...t, columns: [] };
    byTable.set(t.table_name, entry);
    if (!bySchema.has(t.schema_name)) bySchema.set(t.schema_name, { schema_name: t.schema_name, tables: [] });
    bySchema.get(t.schema_name).tables.push(entry);
  }
  for (const c of rows(columns)) {
    const table = byTable.get(c.table_name);
    if (table) table.columns.push(c);
  }
  return { schemas: [...bySchema.values()], tables: byTable };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

export { el };

/** The starter query for a table: its principal columns (or the first few), TOP 100. */
export function starterQuery(table) {
  const principal = table.columns.filter((c) => Number(c.principal) === 1).map((c) => c.column_name);
  const names = (principal.length ? principal : table.columns.map((c) => c.column_name)).slice(0, 12);
  const list = names.length ? names.join(", ") : "*";
  return `SELECT TOP 100 ${list}\nFROM ${table.table_name}`;
}

function columnTitle(c) {
  const parts = [`${c.column_name} (${c.datatype || "?"})`];
  if (c.unit) parts.push(`unit: ${c.unit}`);
  if (c.ucd) parts.push(`UCD: ${c.ucd}`);
  if (c.description) parts.push(c.description);
  return parts.join("\n");
}

const OPEN_ALL_UP_TO = 60; // tables

/**
 * Draw the schema tree into ``container``; ``actions(table, item)``, when given, returns the
 * extra buttons of a table's line (the user's own tables: workspace.js), or nothing.
 */
export function renderSchema(container, schema, onTable, onColumn, actions = null) {
  const search = el("input", {
    type: "search",
    placeholder: "search tables and columns…",
    class: "schema-search",
    "aria-label": "search the schema",
  });
  const tree = el("div", { class: "schema-tree" });
  container.replaceChildren(search, tree);

  function draw() {
    const needle = search.value.trim().toLowerCase();
    tree.replaceChildren();
    for (const s of schema.schemas) {
      const tables = s.tables.filter(
        (t) =>
          !needle ||
          t.table_name.toLowerCase().includes(needle) ||
          (t.description || "").toLowerCase().includes(needle) ||
          t.columns.some((c) => c.column_name.toLowerCase().includes(needle)),
      );
      if (!tables.length) continue;
      // Every schema open while the whole list is short (a search opens those that match).
      const open = needle || schema.tables.size <= OPEN_ALL_UP_TO;
      const details = el("details", { class: "schema", open: open ? "" : null });
      details.append(el("summary", { title: s.description || "" }, s.schema_name));
      for (const t of tables) {
        const item = el("details", { class: "table", "data-table": t.table_name });
        const name = el(
          "summary",
          { title: `${t.table_name}\n${t.description || ""}` },
          el("span", { class: "table-name" }, t.table_name.split(".").pop()),
          el("button", {
            class: "starter",
            title: "write a starter query for this table",
            onclick: (e) => {
              e.preventDefault();
              onTable(t);
            },
          }, "query"),
          ...((actions && actions(t, item)) || []),
        );
        item.append(name);
        item.addEventListener("toggle", () => {
          if (!item.open || item.querySelector("ul")) return;
          const list = el("ul", { class: "columns" });
          const shown = needle
            ? t.columns.filter((c) => c.column_name.toLowerCase().includes(needle)).concat(
                t.columns.filter((c) => !c.column_name.toLowerCase().includes(needle)),
              )
            : t.columns;
          for (const c of shown) {
            list.append(
              el(
                "li",
                { title: columnTitle(c), onclick: () => onColumn(c) },
                el("span", { class: "col-name" }, c.column_name),
                el("span", { class: "col-unit" }, c.unit ? ` [${c.unit}]` : ""),
              ),
            );
          }
          item.append(list);
        });
        details.append(item);
      }
      tree.append(details);
    }
  }
  search.addEventListener("input", draw);
  draw();
}
