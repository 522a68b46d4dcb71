// The page around the map: the panel's fold and language switch, the legend (from the same
// styles as notebooks' maps: viewer/config.json `styles`, twin/deck.py), the scale bar and the
// north arrow, the search box (GET search), the time control (the as-of moment features are
// read at) and the export of the map as a PNG for a report. viewer.js hands its state and a few
// of its functions to initChrome and calls viewDrawn after every frame it draws.
import {WebMercatorViewport} from "@deck.gl/core";
import {GeoJsonLayer, ScatterplotLayer} from "@deck.gl/layers";
import {LANGUAGES, language, onLanguageChange, setLanguage, t} from "./i18n.js";
import {layerTitle, valueName} from "./names.js";

// Web Mercator as deck.gl draws it: 512 px tiles, the WGS 84 semi-major axis (EPSG:3857)
const EARTH_RADIUS_M = 6378137;
const TILE_PX = 512;
const SCALE_MAX_PX = 120;  // the scale bar is at most this long
const SEARCH_LIMIT = 8;
const SEARCH_WAIT_MS = 200;  // typing pauses this long before the search is asked
const HIT_ZOOM = 18;  // a hit is looked at from at most this close
const POINT_BOX_DEG = 0.0015;  // a hit without extent (a point) is shown with this much around it
const HIT_COLOR = [0, 170, 255, 255];
const MARGIN = 12;  // px kept free around what the view is fitted to

let ctx = null;  // {state, el, json, render, setView, shownLayer, readable}
const chrome = {
  legend: [], scale: null, north: 0, shown: null,
  search: {seq: 0, query: "", hits: [], answered: 0, error: null, pending: null, picked: null, highlight: null},
  exports: 0, lastExport: null, pendingExport: null,
};
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const rgba = (c) => `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${((c[3] ?? 255) / 255).toFixed(3)})`;

/** Metres a CSS pixel spans at `latitude` (degrees) and `zoom` on deck.gl's Web Mercator. */
export function metresPerPixel(latitude, zoom) {
  return (2 * Math.PI * EARTH_RADIUS_M * Math.cos((latitude * Math.PI) / 180)) / (TILE_PX * 2 ** zoom);
}

/** The scale bar for a view: the longest round length (1, 2 or 5 × 10^n m) under SCALE_MAX_PX. */
export function scaleBar(latitude, zoom) {
  const mpp = metresPerPixel(latitude, zoom);
  const most = mpp * SCALE_MAX_PX;
  const power = 10 ** Math.floor(Math.log10(most));
  const metres = [5, 2, 1].map((k) => k * power).find((m) => m <= most) || power;
  return {metres, pixels: metres / mpp, metresPerPixel: mpp};
}

function scaleText(metres) {
  return metres >= 1000 ? t("chrome:scale.km", {n: metres / 1000}) : t("chrome:scale.m", {n: metres});
}

/** What the map's opening view and a search hit are fitted into: the map less the panel. */
export function freePadding() {
  const map = ctx.el("map").getBoundingClientRect();
  const panel = ctx.el("panel").getBoundingClientRect();
  const covers = panel.width > 0 && panel.right < map.width * 0.6;  // a narrow window: the panel floats over
  return {left: (covers ? panel.right - map.left : 0) + MARGIN, right: MARGIN, top: MARGIN, bottom: MARGIN};
}

/** Fit [west, south, east, north] into the part of the map the panel leaves free. */
export function fitView(bounds, {maxZoom, pitch = 0, bearing = 0} = {}) {
  const map = ctx.el("map");
  const width = map.clientWidth || window.innerWidth;
  const height = map.clientHeight || window.innerHeight;
  const padding = freePadding();
  if (width <= padding.left + padding.right + 10 || height <= padding.top + padding.bottom + 10) return null;
  const [west, south, east, north] = bounds;
  const fitted = new WebMercatorViewport({width, height}).fitBounds([[west, south], [east, north]], {padding});
  if (![fitted.longitude, fitted.latitude, fitted.zoom].every(Number.isFinite)) return null;
  // at most maxZoom, the box's middle in the middle of the free part (fitBounds offsets the
  // middle for the zoom it fits, not for the zoom it is capped at)
  const zoom = Math.min(fitted.zoom, maxZoom);
  const viewport = new WebMercatorViewport({width, height, longitude: fitted.longitude, latitude: fitted.latitude, zoom});
  const [x1, y1] = viewport.project([west, south]);
  const [x2, y2] = viewport.project([east, north]);
  const free = [(padding.left + width - padding.right) / 2, (padding.top + height - padding.bottom) / 2];
  const [longitude, latitude] = viewport.unproject([width / 2 + (x1 + x2) / 2 - free[0], height / 2 + (y1 + y2) / 2 - free[1]]);
  return {longitude, latitude, zoom, pitch, bearing};
}

// --- the panel: fold, language -----------------------------------------------------------------

function buildPanelChrome() {
  const toggle = ctx.el("panel-toggle");
  const drawToggle = () => {
    const folded = ctx.el("panel").classList.contains("folded");
    toggle.setAttribute("aria-expanded", String(!folded));
    toggle.dataset.i18nTitle = folded ? "chrome:panel.show" : "chrome:panel.hide";
    toggle.dataset.i18nAriaLabel = toggle.dataset.i18nTitle;
    toggle.title = t(toggle.dataset.i18nTitle);
    toggle.setAttribute("aria-label", toggle.title);
  };
  toggle.addEventListener("click", () => {
    ctx.el("panel").classList.toggle("folded");
    drawToggle();
  });
  drawToggle();
  const select = ctx.el("language");
  select.innerHTML = Object.entries(LANGUAGES).map(([lng, name]) => `<option value="${lng}" lang="${lng}">${esc(name)}</option>`).join("");
  select.value = language();
  select.addEventListener("change", () => setLanguage(select.value));
}

// --- the legend ----------------------------------------------------------------------------------

/** The legend's entries: every shown layer, its colour, and one per value its colour is picked by. */
export function legendEntries() {
  const zoom = ctx.state.view?.zoom ?? 0;
  return ctx.state.config.styles.filter((s) => ctx.shownLayer(s.layer)).map((s) => ({
    layer: s.layer, title: layerTitle(s.layer, s.title), shape: s.shape, color: s.color, minzoom: s.minzoom,
    hidden: zoom < s.minzoom,  // shown, but not at this zoom
    values: s.by ? [...Object.entries(s.colors).map(([value, color]) => ({value, title: valueName(s.by, value), color})),
      {value: null, title: t("chrome:legend.other"), color: s.color}] : [],
  }));
}

function swatch(shape, color) {
  return `<span class="swatch ${esc(shape)}" style="--swatch: ${rgba(color)}"></span>`;
}

/** Draw the legend again (the layers shown, the language or the zoom changed). */
export function drawLegend() {
  const entries = legendEntries();
  chrome.legend = entries;
  chrome.shown = legendKey();
  ctx.el("legend-list").innerHTML = entries.length ? entries.map((e) => `<li data-layer="${esc(e.layer)}" class="${e.hidden ? "out-of-zoom" : ""}"${
    e.hidden ? ` title="${esc(t("chrome:legend.zoom_in", {zoom: e.minzoom}))}"` : ""}>${swatch(e.shape, e.color)}<span class="name">${esc(e.title)}</span>${
    e.values.length ? `<ul>${e.values.map((v) => `<li data-value="${esc(v.value ?? "")}">${swatch(e.shape, v.color)}${esc(v.title)}</li>`).join("")}</ul>` : ""}</li>`).join("")
    : `<li class="empty">${esc(t("chrome:legend.empty"))}</li>`;
}

function legendKey() {
  // what the legend depends on besides the language: the layers shown, and which are out of zoom
  const zoom = ctx.state.view?.zoom ?? 0;
  return ctx.state.config.styles.filter((s) => ctx.shownLayer(s.layer)).map((s) => `${s.layer}${zoom < s.minzoom ? "-" : "+"}`).join(",");
}

// --- scale bar and north arrow ----------------------------------------------------------------------

function drawScale(view) {
  const bar = scaleBar(view.latitude, view.zoom);
  chrome.scale = {...bar, latitude: view.latitude, zoom: view.zoom, text: scaleText(bar.metres)};
  ctx.el("scale-bar").style.width = `${bar.pixels.toFixed(2)}px`;
  ctx.el("scale-label").textContent = chrome.scale.text;
}

function drawNorth(view) {
  // deck.gl's bearing turns the map counter-clockwise: north points that far left of up
  chrome.north = -(view.bearing || 0);
  ctx.el("north-arrow").style.transform = `rotate(${chrome.north}deg)`;
}

let lastView = null;

/** After every frame: the scale, north arrow and legend follow the view; an export is taken. */
export function viewDrawn() {
  const view = ctx.state.view;
  if (view && view !== lastView) {
    if (!lastView || view.latitude !== lastView.latitude || view.zoom !== lastView.zoom) drawScale(view);
    if (!lastView || view.bearing !== lastView.bearing) drawNorth(view);
    lastView = view;
    if (legendKey() !== chrome.shown) drawLegend();
  }
}

function buildControls() {
  ctx.el("north").addEventListener("click", () => {
    if (ctx.state.view.bearing) ctx.setView({...ctx.state.view, bearing: 0});
  });
  ctx.el("export").addEventListener("click", () => {
    exportPng().catch((error) => {
      console.warn("export failed:", error);
      ctx.el("export").title = t("chrome:export.error", {error: error.message});
    });
  });
}

// --- search ---------------------------------------------------------------------------------------

function hitKind(hit) {
  if (hit.kind === "street") return t("chrome:search.street");
  const named = valueName("kind", hit.kind);
  return named !== hit.kind ? named : layerTitle(hit.layer, hit.kind);
}

function drawHits() {
  const s = chrome.search;
  const list = ctx.el("search-hits");
  if (!s.query) { list.innerHTML = ""; list.hidden = true; return; }
  list.hidden = false;
  if (s.error) { list.innerHTML = `<li class="error">${esc(t("chrome:search.error", {error: s.error}))}</li>`; return; }
  if (s.answered !== s.seq) return;  // the answer is coming: the last list stays
  list.innerHTML = s.hits.length ? s.hits.map((hit, i) => `<li><button type="button" data-hit="${i}"${
    s.picked === i ? ` class="picked"` : ""}><span class="label">${esc(hit.label)}</span> <small>${esc(hitKind(hit))}${
    hit.kind !== "street" && hitKind(hit) !== layerTitle(hit.layer) ? ` · ${esc(layerTitle(hit.layer))}` : ""}${
    hit.features > 1 ? ` · ${esc(t("chrome:search.segments", {n: hit.features}))}` : ""}</small></button></li>`).join("")
    : `<li class="empty">${esc(t("chrome:search.none"))}</li>`;
}

function search(query) {
  const s = chrome.search;
  const mine = ++s.seq;
  s.query = query;
  s.error = null;
  if (!query) {
    s.hits = [];
    s.answered = mine;
    s.pending = Promise.resolve();
    drawHits();
    return s.pending;
  }
  s.pending = ctx.json(`search?q=${encodeURIComponent(query)}&limit=${SEARCH_LIMIT}`).then((body) => {
    if (mine !== s.seq) return;
    s.hits = body.hits;
    s.picked = null;
  }).catch((error) => {
    if (mine !== s.seq) return;
    s.hits = [];
    s.error = error.message;
  }).finally(() => {
    if (mine !== s.seq) return;
    s.answered = mine;
    drawHits();
  });
  return s.pending;
}

async function pick(index) {
  // look at the hit (fit its box into the free part of the map) and draw it highlighted
  const s = chrome.search;
  const hit = s.hits[index];
  if (!hit) return;
  s.picked = index;
  drawHits();
  let [west, south, east, north] = hit.bbox;
  if (east - west < POINT_BOX_DEG && north - south < POINT_BOX_DEG) {
    [west, south, east, north] = [hit.lon - POINT_BOX_DEG / 2, hit.lat - POINT_BOX_DEG / 2,
      hit.lon + POINT_BOX_DEG / 2, hit.lat + POINT_BOX_DEG / 2];
  }
  // looked at from straight above, north up (as twinViewer.lookAt does): the box fits exactly
  const next = fitView([west, south, east, north], {maxZoom: HIT_ZOOM});
  const box = {type: "Feature", properties: {}, geometry: {type: "Polygon", coordinates: [[
    [hit.bbox[0], hit.bbox[1]], [hit.bbox[2], hit.bbox[1]], [hit.bbox[2], hit.bbox[3]], [hit.bbox[0], hit.bbox[3]], [hit.bbox[0], hit.bbox[1]]]]}};
  s.highlight = {hit, at: [hit.lon, hit.lat], data: {type: "FeatureCollection", features: hit.id === null ? [box] : []}};
  if (next) ctx.setView(next);
  ctx.render();
  if (hit.id !== null && ctx.readable(hit.layer)) {
    // the feature itself, highlighted (its box until it comes)
    try {
      const feature = await ctx.json(`collections/${encodeURIComponent(hit.layer)}/items/${encodeURIComponent(hit.id)}`);
      if (s.highlight?.hit === hit) s.highlight = {...s.highlight, data: {type: "FeatureCollection", features: [feature]}};
    } catch (error) {
      if (s.highlight?.hit === hit) s.highlight = {...s.highlight, data: {type: "FeatureCollection", features: [box]}};
    }
    ctx.render();
  }
  s.flown = (s.flown || 0) + 1;
}

function buildSearch() {
  if (!ctx.state.config.features.search) return;  // no search endpoint served: no box
  ctx.el("search").hidden = false;
  const input = ctx.el("search-q");
  let timer = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const query = input.value.trim();
    timer = setTimeout(() => { if (query !== chrome.search.query) search(query); }, query ? SEARCH_WAIT_MS : 0);
  });
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Escape") { input.value = ""; clearTimeout(timer); search(""); return; }
    if (event.key !== "Enter") return;
    event.preventDefault();
    clearTimeout(timer);
    const query = input.value.trim();
    if (query !== chrome.search.query || chrome.search.error) await search(query);
    else await chrome.search.pending;
    if (chrome.search.query === query) await pick(0);
  });
  ctx.el("search-hits").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-hit]");
    if (button) pick(Number(button.dataset.hit));
  });
}

/** The search hit's highlight (its feature, or its box, and a ring where it is). */
export function chromeLayers() {
  const h = chrome.search.highlight;
  if (!h) return [];
  return [
    new GeoJsonLayer({id: "search-hit", data: h.data, pickable: false, stroked: true, filled: true,
      getFillColor: [...HIT_COLOR.slice(0, 3), 50], getLineColor: HIT_COLOR, getLineWidth: 4, lineWidthMinPixels: 3,
      getPointRadius: 8, pointRadiusMinPixels: 7}),
    new ScatterplotLayer({id: "search-hit-mark", data: [h.at], getPosition: (c) => c, getRadius: 20,
      radiusMinPixels: 12, stroked: true, filled: false, getLineColor: HIT_COLOR, lineWidthMinPixels: 3, pickable: false}),
  ];
}

// --- time: the as-of moment --------------------------------------------------------------------------

function drawTime() {
  const at = ctx.state.at;
  ctx.el("time-state").textContent = at ? t("chrome:time.past", {time: new Date(at).toLocaleString(language())})
    : t("chrome:time.current");
  ctx.el("time").classList.toggle("past", Boolean(at));
}

/** Read features as of `moment` (a Date, ISO 8601 text, or null: now) and draw the map again. */
export function setMoment(moment) {
  const date = moment ? new Date(moment) : null;
  const at = date && Number.isFinite(date.getTime()) ? date.toISOString() : null;
  if (at === ctx.state.at) return;
  ctx.state.at = at;
  if (!at) ctx.el("time-at").value = "";
  drawTime();
  ctx.render();
}

function buildTime() {
  const input = ctx.el("time-at");
  // the local moment a datetime-local input holds ("2024-05-01T08:30"), parsed as local time
  input.addEventListener("change", () => setMoment(input.value ? new Date(input.value) : null));
  ctx.el("time-now").addEventListener("click", () => setMoment(null));
  drawTime();
}

// --- export --------------------------------------------------------------------------------------

function box(g, x, y, w, h) {
  g.fillStyle = "rgba(255, 255, 255, 0.92)";
  g.strokeStyle = "rgba(0, 0, 0, 0.35)";
  g.lineWidth = 1;
  g.fillRect(x, y, w, h);
  g.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
}

function drawSwatch(g, shape, color, x, y, k) {
  g.fillStyle = rgba([color[0], color[1], color[2], Math.max(color[3] ?? 255, 160)]);
  if (shape === "line") g.fillRect(x, y + 5 * k, 18 * k, 4 * k);
  else if (shape === "point") { g.beginPath(); g.arc(x + 9 * k, y + 7 * k, 5 * k, 0, 2 * Math.PI); g.fill(); }
  else g.fillRect(x + 2 * k, y + 1 * k, 14 * k, 12 * k);
  return {x: Math.round(x + 9 * k), y: Math.round(y + 7 * k)};
}

/** The map as a PNG (a data URL) with its title, time, legend, scale bar, north arrow and credits. */
export function mapImage() {
  const deck = ctx.state.deck;
  deck.redraw("export");  // drawn now: the drawing buffer holds the frame until this task ends
  const source = deck.getCanvas();
  const width = source.width;
  const height = source.height;
  const k = width / (source.clientWidth || width);  // device pixels per CSS pixel
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  g.fillStyle = getComputedStyle(ctx.el("map")).backgroundColor || "#f4f3ef";
  g.fillRect(0, 0, width, height);
  g.drawImage(source, 0, 0);
  const font = (px, weight = "normal") => `${weight} ${px * k}px system-ui, "Noto Sans CJK SC", sans-serif`;
  const layout = {width, height};
  // title and time, top left
  const title = ctx.el("title").textContent;
  const when = [t("chrome:export.made", {time: new Date().toLocaleString(language())}),
    ctx.state.at ? t("chrome:time.past", {time: new Date(ctx.state.at).toLocaleString(language())}) : t("chrome:time.current")];
  g.font = font(16, "bold");
  const titleWidth = Math.max(g.measureText(title).width, ...when.map((w) => { g.font = font(12); return g.measureText(w).width; }));
  box(g, 10 * k, 10 * k, titleWidth + 20 * k, 62 * k);
  g.fillStyle = "#111";
  g.textBaseline = "top";
  g.font = font(16, "bold");
  g.fillText(title, 20 * k, 18 * k);
  g.font = font(12);
  g.fillStyle = "#333";
  when.forEach((w, i) => g.fillText(w, 20 * k, (38 + 16 * i) * k));
  layout.title = [10 * k, 10 * k, titleWidth + 20 * k, 62 * k];
  // legend, bottom right
  const rows = [];
  for (const e of chrome.legend) {
    rows.push({shape: e.shape, color: e.color, text: e.title, layer: e.layer, indent: 0, bold: true});
    for (const v of e.values) rows.push({shape: e.shape, color: v.color, text: v.title, layer: e.layer, value: v.value, indent: 14});
  }
  const rowH = 16 * k;
  g.font = font(12, "bold");
  const legendTitle = t("chrome:legend");
  const textWidth = Math.max(g.measureText(legendTitle).width,
    ...rows.map((r) => { g.font = font(12, r.bold ? "bold" : "normal"); return g.measureText(r.text).width + r.indent * k; }), 0);
  const lw = textWidth + 44 * k;
  const lh = (rows.length + 1) * rowH + 16 * k;
  const lx = width - lw - 10 * k;
  const ly = Math.max(80 * k, height - lh - 28 * k);
  box(g, lx, ly, lw, lh);
  g.fillStyle = "#111";
  g.font = font(12, "bold");
  g.fillText(legendTitle, lx + 10 * k, ly + 8 * k);
  layout.legend = {box: [lx, ly, lw, lh], swatches: []};
  rows.forEach((r, i) => {
    const y = ly + 8 * k + (i + 1) * rowH;
    if (y + rowH > height) return;
    const at = drawSwatch(g, r.shape, r.color, lx + (10 + r.indent) * k, y, k);
    layout.legend.swatches.push({layer: r.layer, value: r.value ?? null, color: r.color, ...at});
    g.fillStyle = "#222";
    g.font = font(12, r.bold ? "bold" : "normal");
    g.fillText(r.text, lx + (34 + r.indent) * k, y + 1 * k);
  });
  // scale bar, bottom left
  const scale = chrome.scale || scaleBar(ctx.state.view.latitude, ctx.state.view.zoom);
  const sx = 14 * k;
  const sy = height - 30 * k;
  box(g, sx - 6 * k, sy - 18 * k, scale.pixels * k + 12 * k, 30 * k);
  g.fillStyle = "#111";
  g.fillRect(sx, sy, scale.pixels * k, 3 * k);
  g.fillRect(sx, sy - 6 * k, 2 * k, 9 * k);
  g.fillRect(sx + scale.pixels * k - 2 * k, sy - 6 * k, 2 * k, 9 * k);
  g.font = font(11);
  g.fillText(scaleText(scale.metres), sx, sy - 16 * k);
  layout.scale = {x: sx, y: sy, pixels: scale.pixels * k, metres: scale.metres};
  // north arrow, top right
  const nx = width - 34 * k;
  const ny = 34 * k;
  g.save();
  g.fillStyle = "rgba(255, 255, 255, 0.92)";
  g.beginPath(); g.arc(nx, ny, 20 * k, 0, 2 * Math.PI); g.fill();
  g.translate(nx, ny);
  g.rotate((chrome.north * Math.PI) / 180);
  g.fillStyle = "#c62828";
  g.beginPath(); g.moveTo(0, -16 * k); g.lineTo(7 * k, 2 * k); g.lineTo(-7 * k, 2 * k); g.closePath(); g.fill();
  g.fillStyle = "#444";
  g.beginPath(); g.moveTo(0, 16 * k); g.lineTo(7 * k, 2 * k); g.lineTo(-7 * k, 2 * k); g.closePath(); g.fill();
  g.restore();
  layout.north = {x: nx, y: ny, rotation: chrome.north};
  // credits, bottom right under the legend
  const credits = ctx.state.config.credits.map((c) => c.attribution).join(" · ");
  g.font = font(10);
  const cw = g.measureText(credits).width;
  g.fillStyle = "rgba(255, 255, 255, 0.8)";
  g.fillRect(width - cw - 14 * k, height - 16 * k, cw + 10 * k, 14 * k);
  g.fillStyle = "#333";
  g.fillText(credits, width - cw - 9 * k, height - 14 * k);
  return {url: canvas.toDataURL("image/png"), layout};
}

/** Save the map as a PNG (a download named after the city and the moment). */
export async function exportPng() {
  const {url, layout} = mapImage();
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  const link = document.createElement("a");
  link.href = url;
  link.download = `citytwin-${stamp}.png`;
  document.body.append(link);
  link.click();
  link.remove();
  chrome.exports += 1;
  chrome.lastExport = layout;
  return layout;
}

// --- set-up -------------------------------------------------------------------------------------

function drawTitle() {
  const title = t("chrome:title", {city: ctx.state.config.city});
  document.title = title;
  ctx.el("title").textContent = title;
}

/** Build the page's chrome; `context` is {state, el, json, render, setView, shownLayer, readable}. */
export function initChrome(context) {
  ctx = context;
  ctx.state.at = null;
  drawTitle();
  buildPanelChrome();
  buildControls();
  buildSearch();
  buildTime();
  onLanguageChange(() => {
    drawTitle();
    ctx.el("language").value = language();
    ctx.el("panel-toggle").title = t(ctx.el("panel-toggle").dataset.i18nTitle);
    drawLegend();
    if (ctx.state.view) drawScale(ctx.state.view);
    drawTime();
    drawHits();
  });
}

/** What the chrome shows, for whoever checks it (a test). */
export function chromeState() {
  const s = chrome.search;
  return {
    legend: chrome.legend.map((e) => ({layer: e.layer, title: e.title, color: e.color, hidden: e.hidden,
      values: e.values.map((v) => ({value: v.value, title: v.title, color: v.color}))})),
    scale: chrome.scale, north: chrome.north, at: ctx?.state.at ?? null,
    search: {query: s.query, seq: s.seq, answered: s.answered, hits: s.hits, error: s.error, picked: s.picked,
      flown: s.flown || 0, highlight: s.highlight ? {layer: s.highlight.hit.layer, id: s.highlight.hit.id,
        features: s.highlight.data.features.length} : null},
    exports: chrome.exports, lastExport: chrome.lastExport, padding: ctx ? freePadding() : null,
  };
}
