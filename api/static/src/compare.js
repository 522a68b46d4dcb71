// Comparing two states of the city on one screen (issue 16; 卷帘 / 多屏比对 in CJJ/T 315-2022):
// state A and state B are each the base city (现状) or a stored scenario (GET scenarios), and
//   - swipe (卷帘): one map; left of a draggable vertical divider the map draws A, right of it B;
//   - side by side (多屏比对): two maps, A left and B right, their views one (pan or zoom
//     either, both move);
//   - the figures table beside them: GET scenarios/compare?a=&b= (twin/scenarios/figures.py),
//     each figure's A, B and difference, the differences highlighted, and the features that
//     differ (a click flies there).
// With no B (the single map) the whole viewer reads state A: its tiles, features and every tool
// go with ?scenario=A (viewer.js apiFetch), so a planner can look at one scenario alone.
//
// How: the main map (viewer.js, its own deck.gl Deck in #map) draws A. B is drawn by a second
// Deck in #compare-map, stacked over #map with the page's background, on the same view state
// (viewer.js setView calls compareView), from the same layer list (viewer.js cityLayers("b"),
// built with B's scenario). Swipe clips #compare-map with CSS clip-path to the right of the
// divider, and lets the pointer through to the main map: moving the divider only moves the clip,
// no tile is asked for again. Side by side narrows #map to the left half and gives #compare-map
// the right half and a controller of its own, whose view changes go to viewer.js setView.
// Both decks count what they draw against viewer.js's one count of changes, so `settled` holds
// only once both have drawn a frame after the last change (compareSettled, compareDrawn).
//
// The comparison is kept in the URL's fragment (#compare=swipe&a=base&b=bridge&x=0.5), so a
// link opens it again.
import {Deck} from "@deck.gl/core";
import {GeoJsonLayer} from "@deck.gl/layers";
import {fitView} from "./chrome.js";
import {has, language, t} from "./i18n.js";
import {layerTitle} from "./names.js";
import {MAP_VIEW} from "./underground.js";

/** The name the figures and compare calls take for the base city (no scenario). */
export const BASE = "base";
/** How the two states are shown: one map (A alone), swipe, side by side. */
export const LAYOUTS = ["off", "swipe", "side"];
const DIVIDER_STEP = 0.02;  // the arrow keys move the divider by this share of the map's width
const DIVIDER_MIN = 0;  // the divider goes from the map's left edge ...
const DIVIDER_MAX = 1;  // ... to its right edge
const FLY_ZOOM = 18;  // a feature is looked at from at most this close
const POINT_BOX_DEG = 0.0015;  // a point is shown with this much around it (degrees)
const FEATURE_COLOR = [230, 0, 140, 255];  // a feature that differs, flown to: on both maps
// a scenario a request was answered "not there" for is listed again at most this often (ms): not
// on every one of its tiles
const RECHECK_MS = 3000;

const ct = (key, values = {}) => t(`map:${key}`, values);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

let ctx = null;  // viewer.js's {state, el, json, render, setView, counts, mainDrawn} (initCompare)
const compare = {
  a: BASE, b: null, layout: "off", divider: 0.5,  // divider: share of the map's width, from its left
  scenarios: [], listed: 0, listError: null, error: null,
  figures: null, figuresOf: null, figuresError: null, figuresSeq: 0, figuresAnswered: 0, onlyDiffering: false,
  deck: null, frames: 0, drawn: {changes: -1, loadedBefore: false, loadedAfter: false}, interaction: {},
  frameStart: -1, loadedAtStart: false, flights: 0, applied: 0,
  asked: null,  // the comparison a link asks for, applied once the scenarios are listed
  highlight: null,  // the feature that differs last flown to (a FeatureCollection), on both maps
  deleted: [],  // the scenarios found deleted (elsewhere) while shown, in the order found
  rechecks: 0, rechecked: new Map(),  // lists asked for by a 404 of a scenario; when, per name
};
const goneListeners = [];  // called with the names of scenarios found deleted (scenario_edit.js)

// --- what the map reads ---------------------------------------------------------------------------

/** Whether the two states are shown (swipe or side by side), not one map. */
export function comparing() {
  return compare.layout !== "off" && compare.b !== null;
}

/** The scenario a side of the map reads ("a", "b"): its name, or null for the base city. */
export function scenarioOf(side) {
  const name = side === "b" ? (comparing() ? compare.b : null) : compare.a;
  return name && name !== BASE ? name : null;
}

/** `url` with `scenario=<name>` added to its query (as it is with no name: the base city). */
export function withScenario(url, scenario) {
  if (!scenario) return url;
  return `${url}${url.includes("?") ? "&" : "?"}scenario=${encodeURIComponent(scenario)}`;
}

// --- the second map (state B) -------------------------------------------------------------------------

function layersLoaded(deck) {
  return deck.props.layers.filter((l) => l.props.visible).every((l) => l.isLoaded);
}

function makeDeck() {
  const deck = new Deck({
    parent: ctx.el("compare-map"),
    viewState: ctx.state.view,
    views: MAP_VIEW,
    controller: false,  // swipe: the pointer goes through to the main map; side by side: its own
    layers: [],
    layerFilter: ({isPicking}) => !isPicking,  // nothing on it is picked (clicks answer for A)
    onViewStateChange: ({viewState}) => {
      const {width, height, ...view} = viewState;  // the main map's own size stays its own
      ctx.setView(view);
    },
    onInteractionStateChange: (value) => { compare.interaction = value; },
    onBeforeRender: () => {
      compare.frameStart = ctx.counts.changes;
      compare.loadedAtStart = layersLoaded(deck);
    },
    onAfterRender: () => {
      compare.frames += 1;
      const same = compare.frameStart === ctx.counts.changes;
      compare.drawn = {changes: compare.frameStart, loadedBefore: same && compare.loadedAtStart,
        loadedAfter: same && layersLoaded(deck)};
      // a change B saw (one of its tiles) is one the main map has not drawn after: it draws again
      kick(ctx.state.deck, () => ctx.mainDrawn().changes);
    },
    onError: (error) => console.error(error),
  });
  return deck;
}

const kicked = new WeakSet();  // the decks asked to draw on the next animation frame

function kick(deck, drawnChanges) {
  // draw `deck` once more, on the next animation frame, if it has not drawn since the last change
  // and nothing else will make it draw
  if (!deck || kicked.has(deck)) return;
  kicked.add(deck);
  requestAnimationFrame(() => {
    kicked.delete(deck);
    if (!deck.isInitialized || drawnChanges() === ctx.counts.changes) return;
    if (!deck.needsRedraw({clearRedrawFlags: false})) deck.redraw("compare: the other map changed");
  });
}

/** After every frame of the main map: the second map draws again if it has not since the last change. */
export function compareDrawn() {
  if (compare.deck) kick(compare.deck, () => compare.drawn.changes);
}

function placeDivider() {
  const map = ctx.el("map");
  const x = Math.round(compare.divider * map.clientWidth);
  const swipe = compare.layout === "swipe" && comparing();
  ctx.el("compare-map").style.clipPath = swipe ? `inset(0 0 0 ${x}px)` : "";
  const divider = ctx.el("compare-divider");
  divider.hidden = !swipe;
  divider.style.left = `${x}px`;
  divider.setAttribute("aria-valuenow", String(Math.round(compare.divider * 100)));
}

function layout() {
  // the page's arrangement for the comparison in force; the second map made or ended with it
  const on = comparing();
  document.body.classList.toggle("compare-swipe", on && compare.layout === "swipe");
  document.body.classList.toggle("compare-side", on && compare.layout === "side");
  ctx.el("compare-map").hidden = !on;
  ctx.el("compare-figures").hidden = !on;
  if (on && !compare.deck) compare.deck = makeDeck();
  if (!on && compare.deck) {
    compare.deck.finalize();
    compare.deck = null;
    compare.drawn = {changes: -1, loadedBefore: false, loadedAfter: false};
    compare.interaction = {};
  }
  if (compare.deck) {
    compare.deck.setProps({controller: compare.layout === "side" ? {doubleClickZoom: false} : false,
      viewState: ctx.state.view});
  }
  placeDivider();
}

/** Draw state B's layers (`build("b")`, viewer.js cityLayers) on the second map, when shown. */
export function renderCompare(build) {
  if (compare.deck) compare.deck.setProps({layers: build("b")});
}

/** The view changed (viewer.js setView): the second map follows. */
export function compareView(view) {
  if (compare.deck) compare.deck.setProps({viewState: view});
}

/** Whether the second map (when shown) has every layer loaded and drawn since the last change. */
export function compareSettled() {
  const deck = compare.deck;
  if (!deck) return true;
  if (!deck.isInitialized) return false;
  const moving = ["isDragging", "isPanning", "isRotating", "isZooming", "inTransition"]
    .some((k) => compare.interaction[k]);
  return compare.drawn.changes === ctx.counts.changes && compare.drawn.loadedBefore && compare.drawn.loadedAfter
    && layersLoaded(deck) && !moving && !deck.needsRedraw({clearRedrawFlags: false})
    && !deck.layerManager?.needsUpdate();
}

// --- choosing the states ---------------------------------------------------------------------------

function stateName(name) {
  if (!name || name === BASE) return ct("compare.base");
  const found = compare.scenarios.find((s) => s.name === name);
  const title = found?.title || name;
  return found && found.status && found.status !== "active"
    ? ct("compare.with_status", {title, status: ct(`compare.status.${found.status}`)}) : title;
}

function options(selected, withNone) {
  const names = [BASE, ...compare.scenarios.map((s) => s.name)];
  if (selected && !names.includes(selected)) names.push(selected);  // asked for, not (yet) listed
  const none = withNone ? [`<option value=""${selected ? "" : " selected"}>${esc(ct("compare.none"))}</option>`] : [];
  return [...none, ...names.map((n) => `<option value="${esc(n)}"${n === selected ? " selected" : ""}>${esc(stateName(n))}</option>`)].join("");
}

/** The feature that differs last flown to, outlined over everything (on each map: viewer.js cityLayers). */
export function compareLayers() {
  if (!compare.highlight || !comparing()) return [];
  return [new GeoJsonLayer({id: "compare-feature", data: compare.highlight, pickable: false, stroked: true,
    filled: true, getFillColor: [...FEATURE_COLOR.slice(0, 3), 60], getLineColor: FEATURE_COLOR, lineWidthUnits: "pixels", getLineWidth: 3,
    lineWidthMinPixels: 3, getPointRadius: 8, pointRadiusMinPixels: 8, parameters: {depthCompare: "always"}})];
}

/** Draw the panel's part again (the states listed, the language changed). */
export function drawCompare() {
  if (!ctx || !ctx.state.config.features.compare) return;
  ctx.el("compare-a").innerHTML = options(compare.a, false);
  ctx.el("compare-b").innerHTML = options(compare.b, true);
  for (const button of ctx.el("compare-layouts").querySelectorAll("button")) {
    button.classList.toggle("on", button.dataset.layout === (compare.b === null ? "off" : compare.layout));
    button.disabled = button.dataset.layout !== "off" && compare.b === null;
  }
  const problem = compare.error || compare.listError;
  ctx.el("compare-state").innerHTML = problem ? `<span class="error">${esc(problem)}</span>`
    : esc(comparing() ? ct("compare.comparing", {a: stateName(compare.a), b: stateName(compare.b)})
      : ct("compare.showing", {a: stateName(compare.a)}));
  ctx.el("compare-divider").title = ct("compare.divider");
  ctx.el("compare-divider").setAttribute("aria-label", ct("compare.divider"));
  drawFigures();
}

function set(next, {keepHash = false} = {}) {
  // change the comparison: states, layout, divider; the map and the figures follow
  const before = {a: compare.a, b: compare.b, layout: compare.layout, on: comparing()};
  Object.assign(compare, next);
  if (!LAYOUTS.includes(compare.layout)) compare.layout = "off";
  compare.a = compare.a || BASE;
  compare.divider = Math.min(DIVIDER_MAX, Math.max(DIVIDER_MIN, Number(compare.divider) || 0));
  const states = before.a !== compare.a || before.b !== compare.b || before.on !== comparing();
  layout();
  if (states || before.layout !== compare.layout) ctx.render();  // every layer, in its side's state
  if (states) {
    compare.highlight = null;
    readFigures();  // (swipe or side by side: the same figures)
  }
  if (!keepHash) writeHash();
  drawCompare();
  compare.applied += 1;
}

async function listScenarios() {
  // (a caller who may not read scenarios is not asked about them: none is listed; one not
  // known yet is listed once it is: viewer.js calls refreshScenarios when the caller changes).
  // Returns whether the stored scenarios were read (the list is the store's).
  const may = ctx.mayRead ? ctx.mayRead() : true;
  if (may === null) return false;
  let read = false;
  if (!may) {
    compare.scenarios = [];
    compare.listError = null;
  } else {
    try {
      const body = await ctx.json("scenarios", {scenario: null});
      const list = Array.isArray(body) ? body : body.scenarios || body.items || [];
      compare.scenarios = list.filter((s) => s && s.name);
      compare.listError = null;
      read = true;
    } catch (error) {
      compare.listError = ct("compare.list_error", {message: error.message});
    }
  }
  compare.listed += 1;
  // the comparison a link asks for, once it is known which states there are: a state that is
  // no stored scenario is said, and the base (A) or no comparison (B) is shown instead (no
  // layer asks for a scenario that is not there)
  const asked = compare.asked;
  compare.asked = null;
  if (asked) {
    const known = new Set([BASE, ...compare.scenarios.map((s) => s.name)]);
    const unknown = [asked.a, asked.b].filter((n) => n && !known.has(n));
    set({...asked, a: known.has(asked.a) ? asked.a : BASE, b: asked.b && known.has(asked.b) ? asked.b : null},
      {keepHash: !unknown.length});
    compare.error = unknown.length ? ct("compare.unknown", {names: unknown.join(", ")}) : null;
  }
  drawCompare();
  return read;
}

// --- a scenario deleted elsewhere ----------------------------------------------------------------------
// A scenario shown (A or B, or edited: scenario_edit.js) may be deleted by someone else while the
// page is open: every request for it then answers 404, its problem naming the parameter that
// named the scenario ("scenario", or the compare call's "a" or "b"). Such an answer lists the
// scenarios again (once per RECHECK_MS per name, not on every tile); one no longer listed is
// dropped as a link's unknown state is (A: the base, B: no comparison), said, and asked for no more.

function namedIn(url, problem) {
  // the scenario a 404's problem says is not there: the request's query parameter the problem
  // names, or the scenario of a scenarios/{name}/... path
  if (!problem || typeof problem !== "object" || !["scenario", "a", "b"].includes(problem.parameter)) return null;
  let parsed;
  try { parsed = new URL(url, window.location.href); } catch { return null; }
  const named = parsed.searchParams.get(problem.parameter);
  if (named) return named;
  const path = /\/scenarios\/([^/]+)(?:\/|$)/.exec(parsed.pathname);
  if (problem.parameter !== "scenario" || !path) return null;
  const name = decodeURIComponent(path[1]);
  return name === "compare" ? null : name;
}

/**
 * A request was answered 404 (viewer.js apiFetch, a tile of the map): `url` what it asked for,
 * `answer` its body (a Response to read, its text, or its JSON). If the answer says a scenario
 * the request named is not there, the scenarios are listed again (at most once per RECHECK_MS
 * per name); one no longer listed is dropped (scenarioGone). Any other 404 is left alone.
 */
export async function notFound(url, answer) {
  if (!ctx || !ctx.state.config.features.compare) return;
  let problem = answer;
  try {
    if (answer && typeof answer.text === "function") problem = await answer.text();
    if (typeof problem === "string") problem = JSON.parse(problem);
  } catch {
    return;  // no problem+json: not a scenario's
  }
  const name = namedIn(String(url ?? ""), problem);
  if (!name || name === BASE) return;
  const now = performance.now();
  if (now - (compare.rechecked.get(name) ?? -Infinity) < RECHECK_MS) return;
  compare.rechecked.set(name, now);
  compare.rechecks += 1;
  if (!await listScenarios()) return;  // not listed (refused, failed): nothing is known
  if (!compare.scenarios.some((s) => s.name === name)) scenarioGone(name);
}

function scenarioGone(name) {
  // `name` is deleted: A showing it shows the base, B showing it no comparison (as a link's
  // unknown state), said in the panel; whoever else shows it is told (scenario_edit.js)
  if (!compare.deleted.includes(name)) compare.deleted.push(name);
  const shown = compare.a === name || compare.b === name;
  if (shown) {
    set({a: compare.a === name ? BASE : compare.a, b: compare.b === name ? null : compare.b});
    compare.error = ct("compare.deleted", {names: name});
  }
  for (const listener of goneListeners) listener(name);
  drawCompare();
}

/** Call `listener(name)` when a scenario is found deleted elsewhere (scenario_edit.js). */
export function onScenarioGone(listener) {
  goneListeners.push(listener);
}

// --- the URL's fragment --------------------------------------------------------------------------------

function readHash() {
  // #compare=<layout>&a=<state>&b=<state>&x=<divider share>; anything else in it is left alone
  // (a layout it does not know is the single map; a divider off the map is put at its edge)
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  if (!params.has("compare") && !params.has("a")) return null;
  const next = {a: params.get("a") || BASE, b: params.get("b") || null,
    layout: LAYOUTS.includes(params.get("compare")) ? params.get("compare") : "off"};
  const x = Number(params.get("x"));
  if (params.get("x") && Number.isFinite(x)) next.divider = x;
  return next;
}

function writeHash() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  for (const key of ["compare", "a", "b", "x"]) params.delete(key);
  if (compare.a !== BASE || compare.b !== null) {
    params.set("compare", compare.layout);
    params.set("a", compare.a);
    if (compare.b !== null) params.set("b", compare.b);
    params.set("x", compare.divider.toFixed(3));
  }
  const text = params.toString();
  const url = `${window.location.pathname}${window.location.search}${text ? `#${text}` : ""}`;
  if (url !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
    window.history.replaceState(window.history.state, "", url);
  }
}

// --- the figures --------------------------------------------------------------------------------------

async function readFigures() {
  const mine = ++compare.figuresSeq;
  if (!comparing()) {
    compare.figures = null;
    compare.figuresOf = null;
    compare.figuresError = null;
    compare.figuresAnswered = mine;
    drawFigures();
    return;
  }
  const of = {a: compare.a, b: compare.b};
  compare.figuresError = null;
  drawFigures();
  try {
    const body = await ctx.json(`scenarios/compare?a=${encodeURIComponent(of.a)}&b=${encodeURIComponent(of.b)}`,
      {scenario: null});
    if (mine !== compare.figuresSeq) return;
    compare.figures = body;
    compare.figuresOf = of;
  } catch (error) {
    if (mine !== compare.figuresSeq) return;
    compare.figures = null;
    compare.figuresOf = of;
    compare.figuresError = error.message;
  }
  compare.figuresAnswered = mine;
  drawFigures();
}

function label(row) {
  // the label in the page's language (Chinese first when it has none in it)
  const l = row.label;
  if (!l || typeof l !== "object") return String(l ?? row.key ?? "");
  return language().startsWith("zh") ? l.zh || l.en || row.key : l.en || l.zh || row.key;
}

function otherLabel(row) {
  const l = row.label;
  if (!l || typeof l !== "object") return "";
  return language().startsWith("zh") ? l.en || "" : l.zh || "";
}

function unitName(unit) {
  // a figure's unit in the page's language (map:compare.unit.<unit>), else as it is
  const key = `map:compare.unit.${unit}`;
  return has(key) ? t(key) : String(unit);
}

function number(value, signed = false) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  const text = value.toLocaleString(language(), {maximumFractionDigits: Math.abs(value) >= 100 ? 0 : 2});
  return signed && value > 0 ? `+${text}` : text;
}

function differs(row) {
  const d = row.difference;
  if (typeof d === "number") return d !== 0;
  if (d !== null && d !== undefined && d !== "") return true;
  return JSON.stringify(row.a ?? null) !== JSON.stringify(row.b ?? null);
}

/** The figures' rows of a compare call's answer (twin/scenarios/figures.py Comparison.to_json). */
export function figureRows(body) {
  const rows = body?.figures ?? body?.rows;
  return Array.isArray(rows) ? rows : [];
}

// the compare call's kinds of difference of a feature, and the edit each is
const CHANGES = {added: "add", changed: "change", retired: "retire"};

/**
 * The features that differ between A and B as the compare call lists them ({layer: {added,
 * changed, retired: [id ...]}}), in one list: {layer, id, op ("add", "change", "retire")}.
 */
export function differingFeatures(body) {
  const found = body?.features ?? [];
  if (found && !Array.isArray(found) && typeof found === "object" && !Array.isArray(found.features)) {
    return Object.entries(found).flatMap(([layer, changes]) => Object.entries(CHANGES).flatMap(([change, op]) =>
      (Array.isArray(changes?.[change]) ? changes[change] : []).map((id) => ({layer, id: String(id), op, geometry: null, bbox: null}))));
  }
  const list = Array.isArray(found) ? found : found.features;
  return list.map((f) => {
    const p = f?.properties && f.type === "Feature" ? {...f.properties, ...f} : f || {};
    return {layer: p.layer ?? null, id: p.feature_id ?? p.id ?? null, op: p.op ?? p.change ?? null,
      side: p.side ?? null, geometry: p.geometry ?? null, bbox: p.bbox ?? null};
  }).filter((f) => f.layer !== null && f.id !== null);
}

function drawFigures() {
  const box = ctx.el("compare-figures-body");
  if (!comparing()) { box.innerHTML = ""; return; }
  ctx.el("compare-figures-title").textContent = ct("compare.figures_of", {a: stateName(compare.a), b: stateName(compare.b)});
  const answered = compare.figuresAnswered === compare.figuresSeq;
  if (!answered) { box.innerHTML = `<p class="compare-note">${esc(ct("compare.loading"))}</p>`; return; }
  if (compare.figuresError) {
    box.innerHTML = `<p class="error">${esc(ct("compare.error", {message: compare.figuresError}))}</p>`;
    return;
  }
  const body = compare.figures || {};
  const rows = figureRows(body);
  const shown = compare.onlyDiffering ? rows.filter(differs) : rows;
  const districts = rows.some((r) => r.district !== null && r.district !== undefined && r.district !== "");
  const head = `<tr><th>${esc(ct("compare.col.figure"))}</th>${districts ? `<th>${esc(ct("compare.col.district"))}</th>` : ""}`
    + `<th class="n">A</th><th class="n">B</th><th class="n">${esc(ct("compare.col.difference"))}</th></tr>`;
  const data = (v) => esc(JSON.stringify(v ?? null));
  const lines = shown.map((r) => {
    const unit = r.unit ? ` <small>${esc(unitName(r.unit))}</small>` : "";
    const district = r.district === null || r.district === undefined || r.district === "" ? ct("compare.whole_city") : r.district;
    return `<tr class="${differs(r) ? "differs" : "same"}" data-key="${esc(r.key)}" data-district="${data(r.district)}"`
      + ` data-a="${data(r.a)}" data-b="${data(r.b)}" data-difference="${data(r.difference)}">`
      + `<th scope="row" title="${esc(otherLabel(r))}"><span class="label">${esc(label(r))}</span>${unit}</th>`
      + `${districts ? `<td>${esc(district)}</td>` : ""}<td class="n">${esc(number(r.a))}</td>`
      + `<td class="n">${esc(number(r.b))}</td><td class="n difference">${esc(number(r.difference, true))}</td></tr>`;
  });
  const features = differingFeatures(body);
  const op = (o) => (o ? ct(`compare.op.${o}`) : "");
  const listed = features.map((f, i) => `<li><button type="button" data-feature="${i}" title="${esc(ct("compare.fly"))}">`
    + `<span class="op op-${esc(f.op)}">${esc(op(f.op))}</span> ${esc(layerTitle(f.layer))} <small>${esc(f.id)}</small></button></li>`);
  const settings = Object.entries(body.settings || {}).map(([key, v]) => `<li><strong>${esc(key)}</strong>: `
    + `A ${esc(JSON.stringify(v?.a ?? null))} → B ${esc(JSON.stringify(v?.b ?? null))}</li>`);
  const notes = ["a", "b"].flatMap((side) => (body[side]?.notes || []).map((n) => `<li>${side.toUpperCase()}: ${esc(n)}</li>`));
  box.innerHTML = `<label class="compare-only"><input type="checkbox" id="compare-only"${compare.onlyDiffering ? " checked" : ""}> ${esc(ct("compare.only_differing"))}</label>`
    + (rows.length ? `<table class="compare-table"><thead>${head}</thead><tbody>${lines.join("")}</tbody></table>`
      : `<p class="compare-note">${esc(ct("compare.no_figures"))}</p>`)
    + `<h3>${esc(ct("compare.features", {count: features.length}))}</h3>`
    + (features.length ? `<ol class="compare-features">${listed.join("")}</ol>` : `<p class="compare-note">${esc(ct("compare.features_none"))}</p>`)
    + (settings.length ? `<h3>${esc(ct("compare.settings"))}</h3><ul class="compare-settings">${settings.join("")}</ul>` : "")
    + (notes.length ? `<h3>${esc(ct("compare.notes"))}</h3><ul class="compare-notes">${notes.join("")}</ul>` : "");
}

// a GeoJSON geometry's extent [west, south, east, north], or null
export function boundsOf(geometry) {
  const xs = [];
  const ys = [];
  const walk = (c) => {
    if (typeof c[0] === "number") { xs.push(c[0]); ys.push(c[1]); } else c.forEach(walk);
  };
  if (geometry?.coordinates) walk(geometry.coordinates);
  else if (geometry?.geometries) geometry.geometries.forEach((g) => g.coordinates && walk(g.coordinates));
  if (!xs.length) return null;
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

async function flyTo(index) {
  // look at a feature that differs, highlighted: its geometry from the compare call, else read
  // from the state that has it (B first: an added or changed one; then A: a retired one)
  const feature = differingFeatures(compare.figures)[index];
  if (!feature) return;
  let geometry = feature.geometry;
  if (!geometry) {
    for (const side of feature.op === "retire" ? ["a", "b"] : ["b", "a"]) {
      try {
        const found = await ctx.json(`collections/${encodeURIComponent(feature.layer)}/items/${encodeURIComponent(feature.id)}`,
          {scenario: scenarioOf(side)});
        geometry = found.geometry;
        break;
      } catch (error) {
        console.warn(`${feature.layer} ${feature.id} is not in state ${side.toUpperCase()}:`, error.message);
      }
    }
  }
  let bounds = feature.bbox || boundsOf(geometry);
  if (!bounds) return;
  let [west, south, east, north] = bounds;
  if (east - west < POINT_BOX_DEG && north - south < POINT_BOX_DEG) {
    const [x, y] = [(west + east) / 2, (south + north) / 2];
    [west, south, east, north] = [x - POINT_BOX_DEG / 2, y - POINT_BOX_DEG / 2, x + POINT_BOX_DEG / 2, y + POINT_BOX_DEG / 2];
  }
  bounds = [west, south, east, north];
  const view = fitView(bounds, {maxZoom: FLY_ZOOM});
  compare.highlight = geometry ? {type: "FeatureCollection", features: [{type: "Feature", geometry, properties: {}}]} : null;
  if (view) ctx.setView(view);
  ctx.render();
  compare.flights += 1;
}

// --- the page's part -----------------------------------------------------------------------------------

function dragDivider(divider) {
  let dragging = null;
  divider.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    dragging = event.pointerId;
    divider.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  divider.addEventListener("pointermove", (event) => {
    if (dragging !== event.pointerId) return;
    const box = ctx.el("map").getBoundingClientRect();
    compare.divider = Math.min(DIVIDER_MAX, Math.max(DIVIDER_MIN, (event.clientX - box.left) / box.width));
    placeDivider();  // the clip moves; nothing is read or drawn again
  });
  const end = (event) => {
    if (dragging !== event.pointerId) return;
    dragging = null;
    writeHash();
  };
  divider.addEventListener("pointerup", end);
  divider.addEventListener("pointercancel", end);
  divider.addEventListener("keydown", (event) => {
    const step = {ArrowLeft: -DIVIDER_STEP, ArrowRight: DIVIDER_STEP}[event.key];
    if (!step) return;
    event.preventDefault();
    compare.divider = Math.min(DIVIDER_MAX, Math.max(DIVIDER_MIN, compare.divider + step));
    placeDivider();
    writeHash();
  });
}

function buildPage() {
  ctx.el("map").insertAdjacentHTML("afterend", `<div id="compare-map" hidden></div>
<div id="compare-divider" role="separator" aria-orientation="vertical" aria-valuemin="0" aria-valuemax="100" tabindex="0" hidden><span></span></div>
<aside id="compare-figures" hidden><h2 id="compare-figures-title"></h2><div id="compare-figures-body"></div></aside>`);
  ctx.el("time").insertAdjacentHTML("beforebegin", `<fieldset id="compare" data-i18n-title="map:compare.title" title="${esc(ct("compare.title"))}">
<legend data-i18n="map:compare">${esc(ct("compare"))}</legend>
<label><span data-i18n="map:compare.a">${esc(ct("compare.a"))}</span> <select id="compare-a"></select></label>
<label><span data-i18n="map:compare.b">${esc(ct("compare.b"))}</span> <select id="compare-b"></select></label>
<div id="compare-layouts" role="group">${LAYOUTS.map((l) => `<button type="button" data-layout="${l}" data-i18n="map:compare.layout.${l}">${esc(ct(`compare.layout.${l}`))}</button>`).join("")}
<button type="button" id="compare-swap" data-i18n-title="map:compare.swap" title="${esc(ct("compare.swap"))}">⇄</button></div>
<div id="compare-state" aria-live="polite"></div></fieldset>`);
  ctx.el("compare-a").addEventListener("change", (event) => { compare.error = null; set({a: event.target.value}); });
  ctx.el("compare-b").addEventListener("change", (event) => {
    // choosing B compares at once: by swipe unless side by side was chosen before
    const b = event.target.value || null;
    compare.error = null;
    set({b, layout: b && compare.layout === "off" ? "swipe" : compare.layout});
  });
  ctx.el("compare-layouts").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.id === "compare-swap") {
      if (compare.b !== null) set({a: compare.b, b: compare.a});
    } else if (button.dataset.layout) {
      set({layout: button.dataset.layout});
    }
  });
  ctx.el("compare-figures-body").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-feature]");
    if (button) flyTo(Number(button.dataset.feature));
  });
  ctx.el("compare-figures-body").addEventListener("change", (event) => {
    if (event.target.id === "compare-only") { compare.onlyDiffering = event.target.checked; drawFigures(); }
  });
  dragDivider(ctx.el("compare-divider"));
  window.addEventListener("resize", placeDivider);
  window.addEventListener("hashchange", () => {
    compare.asked = readHash() || {a: BASE, b: null, layout: "off"};
    listScenarios();
  });
}

/**
 * Set up the comparison: its part of the panel, the second map's place, the fragment's
 * comparison (applied once the scenarios are listed). `context` is viewer.js's {state, el,
 * json, render, setView, counts (its count of changes), mainDrawn (the main map's last frame)}.
 * Nothing is shown when the API serves no compare call (viewer/config.json features.compare).
 */
export function initCompare(context) {
  ctx = context;
  if (!ctx.state.config.features.compare) return;
  buildPage();
  compare.asked = readHash();
  drawCompare();
  listScenarios();
}

/** What the comparison is, for whoever checks it (a test), and a way to set it. */
export function compareState() {
  const deck = compare.deck;
  return {
    a: compare.a, b: compare.b, layout: compare.layout, divider: compare.divider, comparing: comparing(),
    scenarios: compare.scenarios.map((s) => s.name), listed: compare.listed, error: compare.error || compare.listError,
    figures: compare.figuresAnswered === compare.figuresSeq ? compare.figures : null,
    figuresOf: compare.figuresOf, figuresError: compare.figuresError,
    figuresAnswered: compare.figuresAnswered === compare.figuresSeq && compare.figuresOf !== null,
    frames: compare.frames, drawn: compare.drawn, settled: compareSettled(), flights: compare.flights,
    applied: compare.applied, view: deck?.isInitialized ? deck.getViewports()[0] && {
      longitude: deck.getViewports()[0].longitude, latitude: deck.getViewports()[0].latitude,
      zoom: deck.getViewports()[0].zoom, width: deck.getViewports()[0].width} : null,
    loading: deck?.isInitialized ? deck.props.layers.filter((l) => l.props.visible && !l.isLoaded).map((l) => l.id) : null,
    layers: deck ? deck.props.layers.map((l) => l.id) : null,
    deleted: [...compare.deleted], rechecks: compare.rechecks,
  };
}

/** List the stored scenarios again (one was made: scenario_edit.js). */
export function refreshScenarios() {
  if (ctx && ctx.state.config.features.compare) listScenarios();
}

/** Set the comparison ({a, b, layout, divider}), as the panel does. */
export function setCompare(next) {
  compare.error = null;
  set(next);
}

/** Project (lon, lat[, z]) on the second map's view: pixels from its top left. */
export function projectB(coordinate) {
  return compare.deck?.isInitialized ? compare.deck.getViewports()[0].project(coordinate) : null;
}
