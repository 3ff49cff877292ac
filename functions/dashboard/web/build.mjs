//! Builds the dashboard bundle into dist/: index.html, app.js and app.css, the three files the
//! dashboard function embeds with include_bytes! (their names are part of that contract).
import { build } from "esbuild";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
await mkdir(dist, { recursive: true });

await build({
  entryPoints: { app: join(root, "src/main.js") },
  outdir: dist,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  // The bundle is embedded in a Rust binary: keep it one file per kind, with no source map beside it.
  sourcemap: false,
  loader: { ".css": "css" },
  logLevel: "warning",
});

// index.html is copied as is: it names the assets by absolute path, as the function serves them.
await writeFile(join(dist, "index.html"), await readFile(join(root, "src/index.html")));
