// The ADQL editor: CodeMirror 6 with an ADQL dialect of @codemirror/lang-sql, completion of
// schemas, tables, columns and ADQL functions, and the service's error position underlined.
import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { sql, SQLDialect, StandardSQL } from "@codemirror/lang-sql";
import { setDiagnostics } from "@codemirror/lint";

// ADQL 2.1's reserved words and functions beyond standard SQL (the geometry and math ones).
const ADQL_FUNCTIONS = [
  "point", "circle", "box", "polygon", "region", "contains", "intersects", "distance",
  "area", "centroid", "coord1", "coord2", "coordsys", "ivo_healpix_index", "ivo_healpix_center",
  "ivo_hasword", "ivo_nocasematch", "ivo_string_agg", "ivo_epoch_prop", "in_unit", "lower", "upper",
  "abs", "ceiling", "degrees", "exp", "floor", "log", "log10", "mod", "pi", "power", "radians",
  "sqrt", "rand", "round", "truncate", "acos", "asin", "atan", "atan2", "cos", "cot", "sin", "tan",
  "gavo_normal_random", "scisql_nanojanskytoabmag", "scisql_s2ptincircle",
];

const ADQL = SQLDialect.define({
  ...StandardSQL.spec,
  keywords: StandardSQL.spec.keywords + " top offset ilike",
  builtin: ADQL_FUNCTIONS.join(" "),
});

export function createEditor(parent, { schema, onRun }) {
  const completion = {};
  for (const [name, table] of schema.tables) {
    completion[name] = table.columns.map((c) => ({
      label: c.column_name,
      type: "property",
      detail: [c.datatype, c.unit ? `[${c.unit}]` : ""].filter(Boolean).join(" "),
      info: c.description || undefined,
    }));
  }
  const view = new EditorView({
    parent,
    doc: "",
    extensions: [
      keymap.of([
        {
          key: "Mod-Enter",
          run: () => {
            onRun();
            return true;
          },
        },
      ]),
      basicSetup,
      sql({ dialect: ADQL, schema: completion, upperCaseKeywords: true }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) view.dispatch(setDiagnostics(view.state, []));
      }),
      EditorView.theme({ "&": { height: "100%" }, ".cm-scroller": { overflow: "auto" } }),
    ],
  });
  // A handle for scripts and browser tests: the page's editor view.
  window.skyvault = window.skyvault || {}; // (keeps the getters main.js defines)
  window.skyvault.editor = view;
  return {
    view,
    get text() {
      return view.state.doc.toString();
    },
    set text(value) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } });
    },
    insert(text) {
      const { from, to } = view.state.selection.main;
      view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length } });
      view.focus();
    },
    /** Underline the token at (line, column) (1-based, as the service reports them). */
    markError(line, column, message) {
      const doc = view.state.doc;
      const lineNo = Math.min(Math.max(line || 1, 1), doc.lines);
      const info = doc.line(lineNo);
      let from = Math.min(info.from + Math.max((column || 1) - 1, 0), info.to);
      const rest = doc.sliceString(from, info.to);
      const word = /^[\w.]+|^\S/.exec(rest);
      let to = from + (word ? word[0].length : 0);
      if (to === from) {
        // At the end of a line (e.g. "expected a value" after the last word): mark the
        // character before, so the underline is visible.
        if (from > info.from) from -= 1;
        else to = Math.min(from + 1, doc.length);
      }
      view.dispatch(setDiagnostics(view.state, [{ from, to, severity: "error", message }]));
    },
  };
}

/** True when a query reads a table without TOP or WHERE (the whole table comes back). */
export function unbounded(text, bigTables) {
  const plain = text.replace(/'(?:[^']|'')*'/g, "''").replace(/--[^\n]*/g, "");
  if (/\bTOP\s+\d+/i.test(plain) || /\bWHERE\b/i.test(plain)) return null;
  if (/\b(COUNT|SUM|AVG|MIN|MAX)\s*\(/i.test(plain) && /\bGROUP\s+BY\b/i.test(plain) === false) return null;
  const from = /\bFROM\s+([\w."]+)/i.exec(plain);
  if (!from) return null;
  const name = from[1].replaceAll('"', "").toLowerCase();
  return bigTables.has(name) ? from[1] : null;
}
