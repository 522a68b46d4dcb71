// The answers a commander acts on, in the panel under the tools (#result): a route's
// turn-by-turn steps (api/routing.py: each step's manoeuvre, street, distance and duration),
// service areas with their legend, an incident's impact (the valves to close and where, the
// units with their ETA, the roads to close), and what is here. Every entry of a list is an
// item: hovering it highlights its part of the map, clicking it also moves the view there. A
// Clear button removes every overlay and the answer. Strings: locales/<lng>/answers.json.
import {WebMercatorViewport} from "@deck.gl/core";
import {has, onLanguageChange, t} from "./i18n.js";
import {fieldName, incidentName, layerTitle, valueName} from "./names.js";

const at = (key, values = {}) => t(`answers:${key}`, values);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const EARTH_M = 6371008.8;  // mean Earth radius (IUGG), for lengths along a lon/lat line
const FLY_ZOOM = 18;  // the closest a clicked item is looked at from
const FLY_PADDING = 60;  // CSS pixels around a clicked item's extent

// Service areas: ColorBrewer YlOrRd (9 classes), sequential; the shortest time is the darkest.
const YLORRD = [[128, 0, 38], [189, 0, 38], [227, 26, 28], [252, 78, 42], [253, 141, 60],
  [254, 178, 76], [254, 217, 118], [255, 237, 160], [255, 255, 204]];

/** The colour [r, g, b] of the `index`-th of `n` service areas (shortest first). */
export function areaColor(index, n) {
  // spread over the palette, from its second class (dark red) to its seventh (light orange):
  // 3 bands are #bd0026, #fd8d3c, #fed976, far apart in lightness
  const first = 1;
  const last = 6;
  const i = n <= 1 ? first : Math.round(first + (index * (last - first)) / (n - 1));
  return YLORRD[Math.min(last, Math.max(first, i))];
}

// what the panel's answer holds: its items (each a geometry to highlight and fly to), the one
// highlighted (hovered, else the one clicked), and counts for whoever waits on them (a test)
const panel = {
  items: [], hovered: null, pinned: null, epoch: 0,
  highlights: 0, flights: 0, clears: 0, kind: null,
  redo: null,  // writes the answer shown again (in the page's language now)
};
let hooks = {onHighlight: () => {}, onFly: () => {}, onClear: () => {}};

// --- words ---------------------------------------------------------------------------------

/** `count` features of a layer, in words ("2 roads"). */
function counted(layer, count, styles) {
  return has(`answers:count.${layer}_other`) ? at(`count.${layer}`, {count})
    : `${count} ${titleOf(layer, styles)}`;
}

const titleOf = (layer, styles = []) => layerTitle(layer, styles.find((s) => s.layer === layer)?.title);
const kindName = (kind) => valueName("kind", kind ?? "").replace(/_/g, " ");
const minutes = (s) => (s / 60).toFixed(1);
const distance = (m) => (m >= 1000 ? at("km", {km: (m / 1000).toFixed(2)}) : at("m", {m: Math.round(m)}));
const lonlat = (lon, lat) => `${Number(lon).toFixed(5)}, ${Number(lat).toFixed(5)}`;

// --- geometry --------------------------------------------------------------------------------

/** The distance (m) between two lon/lat points [lon, lat] (EPSG:4326), equirectangular. */
export function metres(a, b) {
  // equirectangular distance (m) between two lon/lat points: exact enough over a street
  const k = Math.PI / 180;
  const dx = (b[0] - a[0]) * k * Math.cos(((a[1] + b[1]) / 2) * k) * EARTH_M;
  const dy = (b[1] - a[1]) * k * EARTH_M;
  return Math.hypot(dx, dy);
}

function slice(coords, along, from, to) {
  // the part of a line (cumulative lengths `along`) between two distances along it
  const point = (d) => {
    let i = 1;
    while (i < coords.length - 1 && along[i] < d) i += 1;
    const span = along[i] - along[i - 1];
    const f = span > 0 ? Math.min(1, Math.max(0, (d - along[i - 1]) / span)) : 0;
    return [coords[i - 1][0] + f * (coords[i][0] - coords[i - 1][0]), coords[i - 1][1] + f * (coords[i][1] - coords[i - 1][1])];
  };
  const inside = coords.filter((c, i) => along[i] > from && along[i] < to);
  return [point(from), ...inside, point(to)];
}

/** Each step's part of a route (GeoJSON geometries, in step order). */
export function stepGeometries(feature) {
  const coords = feature.geometry?.coordinates || [];
  const steps = feature.properties?.steps || [];
  if (coords.length < 2) return steps.map(() => null);
  const along = [0];
  for (let i = 1; i < coords.length; i += 1) along.push(along[i - 1] + metres(coords[i - 1], coords[i]));
  const length = along[along.length - 1];
  // the steps' distances are the road network's metric lengths: scaled to the line's
  const scale = feature.properties.distance_m > 0 ? length / feature.properties.distance_m : 1;
  let start = 0;
  return steps.map((step) => {
    const end = Math.min(length, start + step.distance_m * scale);
    const geometry = end - start > 0.01 ? {type: "LineString", coordinates: slice(coords, along, start, end)}
      : {type: "Point", coordinates: start >= length ? coords[coords.length - 1] : slice(coords, along, start, start)[0]};
    start = end;
    return geometry;
  });
}

function nearestOn(point, geometry) {
  // the distance (m) from a point to a line or lines
  const lines = geometry?.type === "LineString" ? [geometry.coordinates]
    : geometry?.type === "MultiLineString" ? geometry.coordinates : [];
  let best = Infinity;
  const k = Math.PI / 180;
  const cos = Math.cos(point[1] * k);
  const xy = (c) => [c[0] * k * cos * EARTH_M, c[1] * k * EARTH_M];
  const [px, py] = xy(point);
  for (const line of lines) {
    for (let i = 1; i < line.length; i += 1) {
      const [ax, ay] = xy(line[i - 1]);
      const [bx, by] = xy(line[i]);
      const dx = bx - ax;
      const dy = by - ay;
      const f = dx || dy ? Math.min(1, Math.max(0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy))) : 0;
      best = Math.min(best, Math.hypot(px - ax - f * dx, py - ay - f * dy));
    }
  }
  return best;
}

function bounds(geometry) {
  const xs = [];
  const ys = [];
  const walk = (c) => {
    if (typeof c[0] === "number") { xs.push(c[0]); ys.push(c[1]); } else c.forEach(walk);
  };
  if (geometry?.coordinates) walk(geometry.coordinates);
  else if (geometry?.geometries) geometry.geometries.forEach((g) => g && bounds(g) && walk(g.coordinates));
  if (!xs.length) return null;
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

function viewOf(geometry, map) {
  // the view that shows a geometry whole in the map, no closer than FLY_ZOOM
  const box = bounds(geometry);
  if (!box) return null;
  const width = map?.clientWidth || window.innerWidth;
  const height = map?.clientHeight || window.innerHeight;
  if (box[0] === box[2] && box[1] === box[3] || width <= 2 * FLY_PADDING || height <= 2 * FLY_PADDING) {
    return {longitude: (box[0] + box[2]) / 2, latitude: (box[1] + box[3]) / 2, zoom: FLY_ZOOM};
  }
  const fitted = new WebMercatorViewport({width, height}).fitBounds(
    [[box[0], box[1]], [box[2], box[3]]], {padding: FLY_PADDING, maxZoom: FLY_ZOOM});
  return {longitude: fitted.longitude, latitude: fitted.latitude, zoom: Math.min(FLY_ZOOM, fitted.zoom)};
}

// --- the answers -----------------------------------------------------------------------------

function list(kind, entries) {
  // a list of items: entries [{html, geometry}], numbered from the panel's items so far
  return (items) => `<ol class="answer-items ${kind}">${entries.map((e) => {
    items.push({kind, geometry: e.geometry, label: e.label});
    return `<li data-item="${items.length - 1}" tabindex="0">${e.html}</li>`;
  }).join("")}</ol>`;
}

/** A route's answer: its totals and turn-by-turn steps, each step its part of the route. */
export function routeAnswer(feature) {
  const p = feature.properties;
  if (!p.reachable) return {html: `<h3>${esc(at("route.title"))}</h3><p>${esc(at("route.none"))}</p>`, items: [], kind: "route"};
  const parts = stepGeometries(feature);
  const steps = p.steps || [];
  const items = [];
  const entries = steps.map((s, i) => {
    const street = s.name || at("route.unnamed");
    const id = String(s.maneuver).replace(/[ -]/g, "_");
    const key = has(`answers:step.${id}`) ? `step.${id}` : "step.other";
    const what = at(key, {street, maneuver: s.maneuver});
    const how = s.maneuver === "arrive" ? "" : ` <span class="answer-figure">${esc(at("step.figure", {distance: distance(s.distance_m), time: at("s", {s: Math.round(s.duration_s)})}))}</span>`;
    return {html: `<span class="answer-what">${esc(what)}</span>${how}`, geometry: parts[i], label: street};
  });
  const html = `<h3>${esc(at("route.title"))}</h3><p>${esc(at("route.summary", {min: minutes(p.duration_s),
    km: (p.distance_m / 1000).toFixed(2)}))}</p><h4>${esc(at("route.steps", {count: steps.length}))}</h4>${list("steps", entries)(items)}`;
  return {html, items, kind: "route"};
}

/** Service areas' answer: a legend, one band per break, in the colours drawn. */
export function areasAnswer(collection) {
  const n = collection.features.length;
  const bands = collection.features.map((f, i) => {
    const color = areaColor(i, n);
    return `<li class="answer-band" data-minutes="${esc(f.properties.minutes)}"><span class="answer-swatch" data-color="${color.join(",")}" style="background: rgb(${color.join(",")})"></span>${
      esc(at("areas.band", {min: f.properties.minutes, km: (f.properties.reached_length_m / 1000).toFixed(1)}))}</li>`;
  }).join("");
  return {html: `<h3>${esc(at("areas.title"))}</h3><p class="answer-note">${esc(at("areas.legend"))}</p><ul class="answer-legend">${bands}</ul>`,
    items: [], kind: "areas"};
}

/** What lies within `radius` m of a place, in words (the one-map answer). */
export function hereAnswer(body, radius, styles) {
  const found = Object.entries(body.layers).filter(([, fc]) => fc.numberMatched > 0);
  const rows = found.map(([layer, fc]) => {
    const first = fc.features[0]?.properties || {};
    const attribute = ["kind", "class", "network", "use"].find((a) => first[a]);
    const label = first.name || (attribute ? valueName(attribute, first[attribute]) : "");
    return `<tr><th>${esc(counted(layer, fc.numberMatched, styles))}</th><td>${esc(label)}</td></tr>`;
  }).join("");
  return {html: `<h3>${esc(at("here.title", {radius}))}</h3><table class="attributes">${rows || `<tr><td>${esc(at("here.nothing"))}</td></tr>`}</table>`,
    items: [], kind: "here"};
}

/** A feature's attributes, with its layer's and fields' names in plain words. */
export function attributesAnswer(props, layer, hidden, styles) {
  const rows = Object.entries(props)
    .filter(([k, v]) => v !== null && v !== undefined && !k.startsWith("_") && !hidden.has(k) && typeof v !== "object")
    .map(([k, v]) => `<tr><th>${esc(fieldName(k))}</th><td>${esc(typeof v === "string" ? valueName(k, v) : v)}</td></tr>`).join("");
  return `<h3>${esc(titleOf(layer, styles))}</h3><table class="attributes">${rows}</table>`;
}

async function roadsNamed(ids, known, json) {
  // the roads of these ids: the ones the answer holds, the rest read from the store
  const missing = ids.filter((id) => !known.has(id));
  const read = await Promise.all(missing.map((id) => json(`collections/roads/items/${encodeURIComponent(id)}`)
    .catch(() => ({type: "Feature", id, geometry: null, properties: {id}}))));
  for (const f of read) known.set(String(f.id ?? f.properties?.id), f);
  return ids.map((id) => known.get(id));
}

async function streetOf(device, roads, json) {
  // the street a device lies under: the nearest road the answer holds, else the store's
  let best = null;
  for (const road of roads.values()) {
    if (!road.properties?.name) continue;
    const d = nearestOn([device.lon, device.lat], road.geometry);
    if (d < 40 && (!best || d < best.d)) best = {d, name: road.properties.name};
  }
  if (best) return best.name;
  try {
    const body = await json(`onemap/around?lon=${device.lon}&lat=${device.lat}&radius_m=100&layers=roads&limit=5`);
    const named = (body.layers.roads?.features || []).filter((f) => f.properties.name)
      .sort((a, b) => a.properties.distance_m - b.properties.distance_m);
    return named[0]?.properties.name || null;
  } catch {
    return null;
  }
}

function unitsText(summary, units, kind) {
  // which units are sent: the kind's unit type, or why there is none
  const name = incidentName(kind);
  if ("unit_kind" in summary) {  // the API says which unit type the kind sends (null: none)
    if (summary.unit_kind === null) return at(units.length ? "impact.no_unit_kind_any" : "impact.no_unit_kind_none", {kind: name});
    return units.length ? "" : at("impact.no_unit_of_kind", {unit: kindName(summary.unit_kind)});
  }
  return units.length ? "" : at("impact.no_unit");
}

/** An incident's impact: the valves to close and where, units with ETA, roads to close. */
export async function impactAnswer(body, kind, {json, styles}) {
  const s = body.summary;
  const roads = new Map((body.assets.roads?.features || []).map((f) => [String(f.id ?? f.properties.id), f]));
  const closureRoads = await roadsNamed(body.closures.road_ids.map(String), roads, json);
  const devices = body.utility?.operate || [];
  const streets = await Promise.all(devices.map((d) => streetOf(d, roads, json)));
  const items = [];
  const parts = [`<h3>${esc(at("impact.title", {kind: incidentName(kind)}))}</h3>`];
  const assets = Object.entries(s.assets).filter(([, n]) => n).map(([layer, n]) => counted(layer, n, styles));
  parts.push(`<p>${esc(at("impact.within", {radius: s.radius_m, assets: assets.join(", ") || at("here.nothing")}))}</p>`);
  if (s.buildings) parts.push(`<p>${esc(at("impact.buildings", {count: s.buildings.count, population: s.buildings.population}))}</p>`);
  if (body.utility) {
    const u = s.utility;
    const network = valueName("network", u.network);
    parts.push(`<h4>${esc(at("impact.operate", {count: devices.length, network}))}</h4>`);
    parts.push(list("operate", devices.map((d, i) => ({
      html: `<span class="answer-what">${esc(kindName(d.kind))} <code>${esc(d.id)}</code></span><br><span class="answer-figure">${
        esc(streets[i] ? at("impact.under", {street: streets[i]}) : "")} ${esc(lonlat(d.lon, d.lat))}</span>`,
      geometry: {type: "Point", coordinates: [d.lon, d.lat]}, label: d.id,
    })))(items));
    if (body.utility.unable?.length) parts.push(`<p class="error">${esc(at("impact.unable", {ids: body.utility.unable.map((d) => d.id).join(", ")}))}</p>`);
    parts.push(`<p>${esc(at("impact.supply", {buildings: u.buildings, population: u.population}))}</p>`);
  }
  const units = body.units.features;
  parts.push(`<h4>${esc(at("impact.units", {count: units.length}))}</h4>`);
  const why = unitsText(s, units, kind);
  if (why) parts.push(`<p class="answer-note">${esc(why)}</p>`);
  parts.push(list("units", units.map((f) => ({
    html: `<span class="answer-what">${esc(f.properties.name || f.properties.unit)} (${esc(kindName(f.properties.kind))})</span> <span class="answer-figure">${
      esc(at("impact.eta", {min: minutes(f.properties.total_s)}))}</span>`,
    geometry: f.geometry, label: f.properties.unit,
  })))(items));
  // roads to close, one entry per street (its sections together)
  const streets2 = new Map();
  for (const road of closureRoads) {
    const name = road?.properties?.name || at("route.unnamed");
    const entry = streets2.get(name) || {name, ids: [], lines: []};
    entry.ids.push(road?.id ?? road?.properties?.id);
    const g = road?.geometry;
    if (g?.type === "LineString") entry.lines.push(g.coordinates);
    else if (g?.type === "MultiLineString") entry.lines.push(...g.coordinates);
    streets2.set(name, entry);
  }
  parts.push(`<h4>${esc(at("impact.closures", {count: closureRoads.length}))}</h4>`);
  parts.push(list("closures", [...streets2.values()].map((e) => ({
    html: `<span class="answer-what">${esc(e.name)}</span> <span class="answer-figure">${esc(at("impact.sections", {count: e.ids.length}))}</span>`,
    geometry: e.lines.length ? {type: "MultiLineString", coordinates: e.lines} : null, label: e.name,
  })))(items));
  return {html: parts.join(""), items, kind: "impact"};
}

// --- the panel's behaviour -------------------------------------------------------------------

function highlight() {
  const index = panel.hovered ?? panel.pinned;
  const item = index === null ? null : panel.items[index];
  for (const li of document.querySelectorAll("#result li[data-item]")) {
    li.classList.toggle("answer-on", Number(li.dataset.item) === index);
  }
  panel.highlights += 1;
  hooks.onHighlight(item?.geometry ? {type: "FeatureCollection",
    features: [{type: "Feature", geometry: item.geometry, properties: {kind: item.kind}}]} : null);
}

/**
 * Write an answer into the panel (`result`), its items ready to hover and click. `redo`, when
 * given, writes it again (an answer or a promise of one): the panel calls it when the reader
 * switches language, so the answer shown is in the page's language.
 */
export function show(result, answer, redo = null) {
  result.innerHTML = answer.html;
  panel.redo = redo;
  panel.items = answer.items || [];
  panel.kind = answer.kind || null;
  panel.hovered = null;
  panel.pinned = null;
  hooks.onHighlight(null);
}

/** Forget the panel's items (the answer written without them). */
export function forget() {
  panel.redo = null;
  panel.items = [];
  panel.kind = null;
  panel.hovered = null;
  panel.pinned = null;
  hooks.onHighlight(null);
}

/** The answer's epoch: bumped by Clear, so an answer asked for before it is not shown. */
export const epoch = () => panel.epoch;

/** What the panel holds, for whoever checks it (a test). */
export function answersState() {
  return {items: panel.items.map((i) => ({kind: i.kind, label: i.label, type: i.geometry?.type ?? null})),
    kind: panel.kind, hovered: panel.hovered, pinned: panel.pinned, highlights: panel.highlights,
    flights: panel.flights, clears: panel.clears, epoch: panel.epoch};
}

function clear(result) {
  panel.epoch += 1;
  show(result, {html: "", items: []});
  hooks.onClear();
  panel.clears += 1;
}

const STYLE = `
#answer-tools { display: flex; justify-content: flex-end; margin: 4px 0; }
#result ol.answer-items { margin: 4px 0; padding-left: 1.6em; }
#result ol.answer-items li { cursor: pointer; padding: 2px 4px; border-radius: 3px; }
#result ol.answer-items li:hover, #result ol.answer-items li.answer-on { background: rgba(0, 200, 255, 0.25); }
#result .answer-figure { color: #555; font-size: 0.9em; }
#result .answer-note { color: #555; font-size: 0.9em; }
#result ul.answer-legend { list-style: none; margin: 4px 0; padding: 0; }
#result ul.answer-legend li { display: flex; align-items: center; gap: 6px; }
#result .answer-swatch { display: inline-block; width: 18px; height: 12px; border: 1px solid #444; }
#result h4 { margin: 8px 0 2px; }
#result code { font-size: 0.85em; }
`;

/** Set the panel up once: its style, the Clear button, hover and click on its items. */
export function setupAnswers(result, map, {onHighlight, onFly, onClear}) {
  hooks = {onHighlight, onFly, onClear};
  const style = document.createElement("style");
  style.id = "answers-style";
  style.textContent = STYLE;
  document.head.append(style);
  result.insertAdjacentHTML("beforebegin", `<div id="answer-tools"><button type="button" id="answer-clear">${esc(at("clear"))}</button></div>`);
  const button = document.getElementById("answer-clear");
  button.addEventListener("click", () => clear(result));
  onLanguageChange(async () => {
    button.textContent = at("clear");
    const {redo, epoch: since} = panel;
    if (!redo) return;
    let again;
    try {
      again = await redo();  // the same answer, in the new language
    } catch (error) {
      console.warn("the answer was not written again:", error);  // the old one stays
      return;
    }
    if (panel.redo === redo && panel.epoch === since) show(result, again, redo);
  });
  const itemOf = (event) => event.target.closest?.("li[data-item]");
  result.addEventListener("mouseover", (event) => {
    const li = itemOf(event);
    const index = li ? Number(li.dataset.item) : null;
    if (index !== panel.hovered) { panel.hovered = index; highlight(); }
  });
  result.addEventListener("mouseleave", () => {
    if (panel.hovered !== null) { panel.hovered = null; highlight(); }
  });
  const go = (li) => {
    const index = Number(li.dataset.item);
    panel.pinned = index;
    highlight();
    const view = viewOf(panel.items[index]?.geometry, map);
    if (view) onFly(view);
    panel.flights += 1;
  };
  result.addEventListener("click", (event) => { const li = itemOf(event); if (li) go(li); });
  result.addEventListener("keydown", (event) => {
    const li = itemOf(event);
    if (li && event.key === "Enter") go(li);
  });
}
