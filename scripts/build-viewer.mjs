// Bundle the viewer's and the set-up page's scripts with esbuild, from the npm packages
// package-lock.json pins (installed by `npm ci` in scripts/setup.sh), into api/static/build/,
// and copy ReDoc's standalone bundle (/redoc) into api/static/vendor/. Nothing is fetched by
// the browser.
// Prints each output's size, raw and gzipped (the viewer's budget: ≤ 1.5 MB gzip).
import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from "node:fs";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";
import {gzipSync} from "node:zlib";
import {build} from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "api/static/build");
const vendor = join(root, "api/static/vendor");
mkdirSync(out, {recursive: true});
mkdirSync(vendor, {recursive: true});

const result = await build({
  entryPoints: {viewer: join(root, "api/static/src/viewer.js"), admin: join(root, "api/static/src/admin.js")},
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: out,
  metafile: true,
  legalComments: "eof",
  logLevel: "warning",
});
writeFileSync(join(out, "meta.json"), JSON.stringify(result.metafile));

copyFileSync(join(root, "node_modules/redoc/bundles/redoc.standalone.js"), join(vendor, "redoc.standalone.js"));

// each script also gzipped once here (level 9), served as it is to a browser that accepts gzip
// instead of compressed again on every request
const scripts = Object.keys(result.metafile.outputs).filter((f) => f.endsWith(".js"));
for (const file of scripts) {
  const bytes = readFileSync(join(root, file));
  const gzipped = gzipSync(bytes, {level: 9});
  writeFileSync(join(root, `${file}.gz`), gzipped);
  console.log(`[build-viewer] ${file}: ${(bytes.length / 1e6).toFixed(2)} MB, ` +
    `${(gzipped.length / 1e6).toFixed(2)} MB gzip`);
}
