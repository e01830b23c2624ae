// Bundles src/ into the static dir the app serves at /static (make assets). No CDN: the
// page loads only what this writes. Usage: node build.mjs [OUT_DIR]
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2] ?? path.join(here, "..", "src", "mongars", "static", "web");

await build({
  entryPoints: [path.join(here, "src", "chat.js"), path.join(here, "src", "style.css")],
  outdir,
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
});
console.log(`web assets built into ${outdir}`);
