// Bundle the viewer's and the set-up page's scripts with esbuild, from the npm packages
// package-lock.json pins (installed by `npm ci` in scripts/setup.sh), into api/static/build/,
// and copy the two prebuilt files the pages serve as they are into api/static/vendor/:
// loaders.gl's MVT worker (the version installed beside deck.gl, so the tiles' parser and the
// layers agree) and ReDoc's standalone bundle (/redoc). Nothing is fetched by the browser.
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

for (const [from, to] of [
  ["node_modules/@loaders.gl/mvt/dist/mvt-worker.js", "mvt-worker.js"],
  ["node_modules/redoc/bundles/redoc.standalone.js", "redoc.standalone.js"],
]) copyFileSync(join(root, from), join(vendor, to));

for (const file of Object.keys(result.metafile.outputs).filter((f) => f.endsWith(".js"))) {
  const bytes = readFileSync(join(root, file));
  console.log(`[build-viewer] ${file}: ${(bytes.length / 1e6).toFixed(2)} MB, ` +
    `${(gzipSync(bytes).length / 1e6).toFixed(2)} MB gzip`);
}
