// Making and editing a what-if scenario from the map (issue 16: scenarios "created ... from the
// viewer"). The tool "Edit scenario" (情景编辑) is offered to a caller who may make scenarios
// (auth/me: `scenarios` with "edit": planners, traffic engineers, commanders, administrators).
// A scenario is made (POST scenarios {name, title}) or one of the caller's picked; the map then
// shows it (state A: compare.js setCompare, every layer and tool read with ?scenario=NAME), and a
// click on the map edits it:
//   - close a road: the road under the click (onemap/around in the scenario) closed by a closure
//     feature {kind: "works", road_ids: [id]} at the click (PUT scenarios/{name}/edits/closures/{id});
//   - retire a feature: the building or resource under the click, retired in the scenario
//     (DELETE scenarios/{name}/edits/{layer}/{id}); the base keeps it;
//   - add a fire station at the click (PUT scenarios/{name}/edits/resources/{id}).
// The scenario's edits are listed (GET scenarios/{name}/edits), each with an undo (POST
// scenarios/{name}/undo/{layer}/{id}). Every write sends If-Match with the ETag ("r<revision>")
// last seen; a 412 (someone else changed the scenario) is said, and the scenario read again.
// A scenario's tiles keep their URL through its edits: the map's tile layers are made again with
// the revision in their updateTriggers (scenarioRevision, viewer.js), so every tile is read again
// (the server answers them "no-cache": revalidated by their ETag, which moves with the revision).
import {ownPick} from "./picking.js";
import {t} from "./i18n.js";
import {layerTitle} from "./names.js";
import {BASE, onScenarioGone, refreshScenarios, scenarioOf, setCompare} from "./compare.js";

/** The tool's actions on a click: close a road, retire a feature, add a fire station. */
export const ACTIONS = ["close", "retire", "station"];
/** The layers a click may retire, top first. */
const RETIRABLE = ["resources", "buildings"];
const ROAD_RADIUS_M = 15;  // a click this near a road closes it
const FEATURE_RADIUS_M = 5;  // a click on (or this near) a building or resource names it
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;  // a scenario's name (layers/scenarios.py)

const et = (key, values = {}) => t(`map:${key}`, values);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const segment = (id) => String(id).split("/").map(encodeURIComponent).join("/");

let ctx = null;  // viewer.js's {state, el, fetch, render, me, hitLayers, allowed}
const edit = {
  scenarios: [], current: null, etag: null, revision: {}, edits: [], action: "close",
  message: null, error: false, busy: 0, done: 0, listed: 0, loaded: 0, conflicts: 0,
  deleted: [],  // the scenarios found deleted elsewhere (compare.js onScenarioGone)
};

/** Whether the caller may make (and edit) scenarios: auth/me's `scenarios` says "edit". */
export function mayEditScenarios() {
  const perms = ctx?.me()?.layers?.scenarios;
  return Array.isArray(perms) && perms.includes("edit");
}

/** A scenario's revision last seen here (0 when none is known): tile layers are remade when it moves. */
export function scenarioRevision(name) {
  return name ? edit.revision[name] ?? 0 : 0;
}

function say(message, error = false) {
  edit.message = message;
  edit.error = error;
  drawState();
}

async function call(url, {method = "GET", body = null, ifMatch = false} = {}) {
  // a request to the scenarios' API as the caller, in the base (no ?scenario=); returns
  // {ok, status, body, etag}; a network failure is a status 0
  const headers = {};
  if (body !== null) headers["content-type"] = "application/json";
  if (ifMatch && edit.etag) headers["If-Match"] = edit.etag;
  try {
    const response = await ctx.fetch(url, {method, headers, scenario: null,
      ...(body !== null ? {body: JSON.stringify(body)} : {})});
    let answer = null;
    try { answer = await response.json(); } catch { answer = null; }
    return {ok: response.ok, status: response.status, body: answer, etag: response.headers.get("ETag")};
  } catch (error) {
    return {ok: false, status: 0, body: {detail: error.message}, etag: null};
  }
}

function refusal(answer) {
  // what a refused request says, in the page's language where it has words for it
  const detail = answer.body?.detail || answer.body?.title || String(answer.status);
  if (answer.status === 401) return et("scenario_edit.refused.signin", {detail});
  if (answer.status === 403) return et("scenario_edit.refused.forbidden", {detail});
  return et("scenario_edit.refused.other", {status: answer.status, detail});
}

function noteRevision(answer) {
  // the scenario's new ETag ("r<revision>") from an answer
  const match = /"r(\d+)"/.exec(answer.etag || "");
  if (!match || !edit.current) return;
  edit.etag = answer.etag;
  edit.revision[edit.current] = Number(match[1]);
}

// --- the caller's scenarios ----------------------------------------------------------------------

async function listMine() {
  if (!mayEditScenarios()) { edit.scenarios = []; drawPanel(); return; }
  const answer = await call("scenarios");
  if (answer.ok) {
    const me = ctx.me();
    const admin = (me?.layers?.scenarios || []).includes("admin");
    const list = answer.body?.scenarios || [];
    edit.scenarios = list.filter((s) => s && s.name && (admin || s.author === me?.user));
  } else {
    say(refusal(answer), true);
  }
  edit.listed += 1;
  drawPanel();
}

async function choose(name) {
  // edit `name` (null: none): the map shows it as state A, its edits are listed
  edit.current = name || null;
  edit.edits = [];
  edit.etag = null;
  edit.message = null;
  if (name) {
    setCompare({a: name});
    await loadEdits();
  } else if (scenarioOf("a")) {
    setCompare({a: BASE});
  }
  drawPanel();
}

async function loadEdits() {
  // the scenario's ETag and its current edits, read again
  const name = edit.current;
  if (!name) return;
  const [scenario, edits] = await Promise.all([call(`scenarios/${encodeURIComponent(name)}`),
    call(`scenarios/${encodeURIComponent(name)}/edits`)]);
  if (name !== edit.current) return;
  if (!scenario.ok || !edits.ok) { say(refusal(scenario.ok ? edits : scenario), true); return; }
  edit.etag = scenario.etag;
  edit.revision[name] = Number(scenario.body?.revision ?? 0);
  edit.edits = edits.body?.edits || [];
  edit.loaded += 1;
  drawEdits();
}

async function make(name, title) {
  if (!NAME.test(name)) { say(et("scenario_edit.bad_name", {name}), true); return; }
  edit.busy += 1;
  try {
    const answer = await call("scenarios", {method: "POST", body: {name, title}});
    if (!answer.ok) { say(refusal(answer), true); return; }
    edit.scenarios = [...edit.scenarios.filter((s) => s.name !== name), answer.body];
    refreshScenarios();  // the compare tool lists it too
    ctx.el("scenario-name").value = "";
    ctx.el("scenario-title").value = "";
    await choose(name);
    say(et("scenario_edit.made", {title: title || name}));
  } finally {
    edit.busy -= 1;
  }
}

// --- edits ------------------------------------------------------------------------------------------

async function write(url, method, body, done) {
  // one conditional write of the scenario (If-Match: the ETag last seen); the map drawn again
  // in the scenario's new revision. A 412: someone else changed it: said, and read again.
  edit.busy += 1;
  try {
    const answer = await call(url, {method, body, ifMatch: true});
    if (answer.status === 412) {
      edit.conflicts += 1;
      await loadEdits();
      say(et("scenario_edit.changed_elsewhere"), true);
    } else if (!answer.ok) {
      say(refusal(answer), true);
      return;
    } else {
      noteRevision(answer);
      await loadEdits();
      say(done);
      edit.done += 1;
    }
    ctx.render();  // the tiles again, in the new revision
  } finally {
    edit.busy -= 1;
  }
}

async function nearest(layer, lon, lat, radius) {
  // the id of the feature of `layer` nearest the click, as the scenario has it (or null)
  const answer = await call(`onemap/around?lon=${lon}&lat=${lat}&radius_m=${radius}&layers=${layer}&limit=1`
    + `&scenario=${encodeURIComponent(edit.current)}`);
  if (!answer.ok) throw new Error(refusal(answer));
  return answer.body?.layers?.[layer]?.features?.[0]?.properties?.id ?? null;
}

function newId(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
}

/**
 * A click on the map with the tool: the action chosen applied at `[lon, lat]` (`info` is the
 * click's pixel {x, y}, for the pick). `tell(html)` writes the answer in the panel.
 */
export async function scenarioClick(info, [lon, lat], tell) {
  const name = edit.current;
  if (!name) { tell(`<p>${esc(et("scenario_edit.pick_first"))}</p>`); return; }
  const base = `scenarios/${encodeURIComponent(name)}/edits`;
  if (edit.action === "close") {
    const road = await nearest("roads", lon, lat, ROAD_RADIUS_M);
    if (road === null) { tell(`<p>${esc(et("scenario_edit.no_road"))}</p>`); return; }
    const id = newId("works");
    await write(`${base}/closures/${segment(id)}`, "PUT", {type: "Feature", id,
      geometry: {type: "Point", coordinates: [lon, lat]}, properties: {kind: "works", road_ids: [String(road)]}},
    et("scenario_edit.closed", {road}));
  } else if (edit.action === "retire") {
    const hit = ctx.hitLayers(info).find((layer) => RETIRABLE.includes(layer));
    const found = hit ? await nearest(hit, lon, lat, FEATURE_RADIUS_M) : null;
    if (found === null) { tell(`<p>${esc(et("scenario_edit.nothing"))}</p>`); return; }
    await write(`${base}/${hit}/${segment(found)}`, "DELETE", null,
      et("scenario_edit.retired", {layer: layerTitle(hit), id: found}));
  } else if (edit.action === "station") {
    const id = newId("station");
    const title = ctx.el("scenario-station-name").value.trim() || et("scenario_edit.station_default");
    await write(`${base}/resources/${segment(id)}`, "PUT", {type: "Feature", id,
      geometry: {type: "Point", coordinates: [lon, lat]},
      properties: {kind: "fire_station", name: title, status: "available"}},
    et("scenario_edit.added", {name: title}));
  }
  tell(`<p>${esc(edit.message || "")}</p>`);
}

async function undo(index) {
  const row = edit.edits[index];
  if (!row || !edit.current) return;
  await write(`scenarios/${encodeURIComponent(edit.current)}/undo/${encodeURIComponent(row.layer)}/${segment(row.feature_id)}`,
    "POST", null, et("scenario_edit.undone", {layer: layerTitle(row.layer), id: row.feature_id}));
}

// --- the panel's part ----------------------------------------------------------------------------------

function drawState() {
  if (!ctx) return;
  const box = ctx.el("scenario-edit-state");
  box.className = edit.error ? "error" : "";
  box.textContent = edit.message || (edit.current ? et("scenario_edit.editing", {name: edit.current}) : et("scenario_edit.none"));
}

function drawEdits() {
  const list = ctx.el("scenario-edits");
  list.innerHTML = edit.edits.map((row, i) => `<li data-layer="${esc(row.layer)}" data-id="${esc(row.feature_id)}" data-op="${esc(row.op)}">`
    + `<span class="op op-${esc(row.op)}">${esc(et(`compare.op.${row.op}`))}</span> ${esc(layerTitle(row.layer))} <small>${esc(row.feature_id)}</small>`
    + ` <button type="button" data-undo="${i}">${esc(et("scenario_edit.undo"))}</button></li>`).join("");
  ctx.el("scenario-edits-title").textContent = edit.current ? et("scenario_edit.edits", {count: edit.edits.length}) : "";
  drawState();
}

function drawPanel() {
  if (!ctx) return;
  const pick = ctx.el("scenario-pick");
  const names = edit.scenarios.map((s) => s.name);
  if (edit.current && !names.includes(edit.current)) names.push(edit.current);
  const title = (n) => edit.scenarios.find((s) => s.name === n)?.title || n;
  pick.innerHTML = `<option value="">${esc(et("scenario_edit.new"))}</option>`
    + names.map((n) => `<option value="${esc(n)}"${n === edit.current ? " selected" : ""}>${esc(title(n))}</option>`).join("");
  ctx.el("scenario-new").hidden = Boolean(edit.current);
  ctx.el("scenario-station").hidden = edit.action !== "station";
  for (const input of ctx.el("scenario-actions").querySelectorAll("input")) input.checked = input.value === edit.action;
  drawEdits();
}

function gone(name) {
  // `name` was deleted elsewhere (compare.js found it no longer listed, and shows the base
  // instead): no longer offered, nor edited if it was, and said
  if (!edit.deleted.includes(name)) edit.deleted.push(name);
  edit.scenarios = edit.scenarios.filter((s) => s.name !== name);
  delete edit.revision[name];
  if (edit.current === name) {
    edit.current = null;
    edit.edits = [];
    edit.etag = null;
    edit.message = et("scenario_edit.deleted", {name});
    edit.error = true;
  }
  drawPanel();
}

/** Draw the tool's part again (the language changed). */
export function drawScenarioEdit() {
  if (ctx && ctx.el("scenario-edit")) drawPanel();
}

/** Show or hide the tool's part of the panel (shown while the tool is in use). */
export function showScenarioEdit(shown) {
  if (ctx && ctx.el("scenario-edit")) ctx.el("scenario-edit").hidden = !shown;
}

/** The caller changed: the caller's scenarios listed again (none when it may not make them). */
export function scenarioCallerChanged() {
  if (!ctx || !ctx.el("scenario-edit")) return;
  if (!mayEditScenarios() && edit.current) choose(null);
  listMine();
}

function buildPage() {
  ctx.el("incident-options").insertAdjacentHTML("afterend", `<fieldset id="scenario-edit" hidden>
<legend data-i18n="map:scenario_edit">${esc(et("scenario_edit"))}</legend>
<label><span data-i18n="map:scenario_edit.scenario">${esc(et("scenario_edit.scenario"))}</span> <select id="scenario-pick"></select></label>
<div id="scenario-new"><label><span data-i18n="map:scenario_edit.name">${esc(et("scenario_edit.name"))}</span> <input id="scenario-name" maxlength="63"></label>
<label><span data-i18n="map:scenario_edit.title">${esc(et("scenario_edit.title"))}</span> <input id="scenario-title" maxlength="200"></label>
<button type="button" id="scenario-make" data-i18n="map:scenario_edit.make">${esc(et("scenario_edit.make"))}</button></div>
<div id="scenario-actions" role="radiogroup">${ACTIONS.map((a) => `<label><input type="radio" name="scenario-action" value="${a}"${a === edit.action ? " checked" : ""}> <span data-i18n="map:scenario_edit.action.${a}">${esc(et(`scenario_edit.action.${a}`))}</span></label>`).join("")}</div>
<label id="scenario-station" hidden><span data-i18n="map:scenario_edit.station_name">${esc(et("scenario_edit.station_name"))}</span> <input id="scenario-station-name" maxlength="200"></label>
<div id="scenario-edit-state" aria-live="polite"></div>
<h3 id="scenario-edits-title"></h3><ol id="scenario-edits"></ol></fieldset>`);
  ctx.el("scenario-pick").addEventListener("change", (event) => { choose(event.target.value || null); });
  ctx.el("scenario-make").addEventListener("click", () => {
    make(ctx.el("scenario-name").value.trim(), ctx.el("scenario-title").value.trim());
  });
  ctx.el("scenario-actions").addEventListener("change", (event) => {
    if (ACTIONS.includes(event.target.value)) { edit.action = event.target.value; drawPanel(); }
  });
  ctx.el("scenario-edits").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-undo]");
    if (button) undo(Number(button.dataset.undo));
  });
}

/**
 * Set up the tool's part of the panel (hidden until the tool is chosen). `context` is
 * viewer.js's {state, el, fetch (apiFetch: the caller's token, `scenario` option), render,
 * me (auth/me's last answer), hitLayers (the layers under a click's pixel, top first)}.
 * Nothing is set up when the API serves no scenarios (viewer/config.json features.scenarios).
 */
export function initScenarioEdit(context) {
  ctx = context;
  if (!ctx.state.config.features.scenarios || !ctx.state.config.features.compare) return;
  buildPage();
  onScenarioGone(gone);
  drawPanel();
}

/** What the tool is doing, for whoever checks it (a test). */
export function scenarioEditState() {
  return {current: edit.current, etag: edit.etag, revision: scenarioRevision(edit.current), action: edit.action,
    scenarios: edit.scenarios.map((s) => s.name), edits: edit.edits.map((r) => ({layer: r.layer, id: r.feature_id, op: r.op})),
    message: edit.message, error: edit.error, busy: edit.busy, done: edit.done, listed: edit.listed,
    loaded: edit.loaded, conflicts: edit.conflicts, may: mayEditScenarios(), deleted: [...edit.deleted]};
}

/** Choose the action a click takes ("close", "retire", "station"), as the panel does. */
export function setScenarioAction(action) {
  if (ACTIONS.includes(action)) { edit.action = action; drawPanel(); }
}

/** Pick the layers under the pixel of a click (viewer.js's deck), top first. */
export function hitsAt(deck, info, layerOf) {
  return ownPick(() => deck.pickMultipleObjects({x: info.x, y: info.y, radius: 3, depth: 8})).map(layerOf);
}
