// Build the portal into the Python package (src/skyvault/portal/static), so that users of
// `pip install skyvault` need no Node and the page loads nothing from a CDN.
//   npm ci && npm run build        (or: make portal)
// Aladin Lite (LGPL-3.0, see LICENSES.md) is shipped as its own unmodified file, loaded through
// an import map, not bundled into app.js.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const out = join(here, "..", "src", "skyvault", "portal", "static");

/** The files whose content decides the build (tests compare this hash with the shipped one). */
export function sourceFiles() {
  const files = ["package.json", "package-lock.json", "build.mjs", "index.html", "LICENSES.md"];
  const walk = (dir) => {
    for (const name of readdirSync(join(here, dir)).sort()) {
      const path = join(dir, name);
      if (statSync(join(here, path)).isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk("src");
  walk("public");
  return files;
}

function sourceHash() {
  const hash = createHash("sha256");
  for (const file of sourceFiles()) {
    hash.update(file + "\0");
    hash.update(readFileSync(join(here, file)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  format: "esm",
  splitting: true,
  minify: true,
  sourcemap: false,
  target: ["es2020"],
  outdir: out,
  chunkNames: "chunks/[name]-[hash]",
  external: ["aladin-lite"],
  loader: { ".css": "css" },
  legalComments: "linked",
  logLevel: "warning",
});
cpSync(join(here, "index.html"), join(out, "index.html"));
cpSync(join(here, "public"), out, { recursive: true });
const aladin = join(out, "vendor", "aladin-lite");
mkdirSync(aladin, { recursive: true });
const dist = join(here, "node_modules", "aladin-lite");
cpSync(join(dist, "dist", "aladin.js"), join(aladin, "aladin.js"));
for (const name of ["LICENSE", "COPYING", "COPYING.LESSER"]) cpSync(join(dist, name), join(aladin, name));
cpSync(join(here, "LICENSES.md"), join(out, "LICENSES.md"));
// Apache Arrow (Apache-2.0) is bundled into app.js: its licence and NOTICE go beside it (§4).
const arrow = join(out, "licenses", "apache-arrow");
mkdirSync(arrow, { recursive: true });
for (const name of ["LICENSE.txt", "NOTICE.txt"]) cpSync(join(here, "node_modules", "apache-arrow", name), join(arrow, name));
const versions = {};
for (const name of ["aladin-lite", "codemirror", "@codemirror/lang-sql", "tabulator-tables", "@observablehq/plot", "apache-arrow", "d3-brush", "esbuild"]) {
  versions[name] = JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"))).version;
}
writeFileSync(
  join(out, "build-info.json"),
  JSON.stringify({ sources_sha256: sourceHash(), files: sourceFiles(), packages: versions }, null, 1) + "\n",
);
const listing = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else listing.push(`${relative(out, path)}\t${statSync(path).size}`);
  }
};
walk(out);
console.log(listing.join("\n"));
