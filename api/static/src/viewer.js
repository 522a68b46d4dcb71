// The CityTwin viewer: deck.gl (bundled at set-up from its npm modules by esbuild:
// scripts/build-viewer.mjs), the twin's own tiles and features, and the one-map, routing and
// incident endpoints. Nothing is fetched from outside.
// Layer styles come from twin/deck.py through viewer/config.json, so notebooks draw the same.
// The live twin is pushed to it (live/events): roads coloured by congestion, vehicles moving,
// alerts in a panel of their own.
import {Deck} from "@deck.gl/core";
import {MVTLayer, TileLayer} from "@deck.gl/geo-layers";
import {GeoJsonLayer, ScatterplotLayer, TextLayer} from "@deck.gl/layers";
import {MVTLoader} from "@loaders.gl/mvt";
import {DataFilterExtension} from "@deck.gl/extensions";
import {chromeLayers, chromeState, drawLegend, fitView, initChrome, viewDrawn} from "./chrome.js";
import {onLanguageChange, t, translatePage} from "./i18n.js";
import {clearanceName, incidentName, layerTitle, roleName} from "./names.js";
import {answersState, areaColor, areasAnswer, attributesAnswer, epoch, hereAnswer, impactAnswer, routeAnswer, setupAnswers,
  show} from "./answers.js";
import {ownPick, pickFilter} from "./picking.js";
import {clearSection, sectionClick, sectionLayers, sectionState} from "./section.js";
import {extentOf, groundLayer, MAP_VIEW, tubeProps, vehiclesFirst} from "./underground.js";
import {compareDrawn, compareLayers, compareSettled, compareState, compareView, drawCompare, initCompare, projectB, renderCompare,
  boundsOf, notFound, refreshScenarios, scenarioOf, setCompare, withScenario} from "./compare.js";
import {drawScenarioEdit, hitsAt, initScenarioEdit, mayEditScenarios, scenarioCallerChanged, scenarioClick,
  scenarioEditState, scenarioRevision, setScenarioAction, showScenarioEdit} from "./scenario_edit.js";
import {authHeaders as sessionHeaders, fetchMe, problemDetail, requestToken, revokeToken, savedSession,
  saveSession} from "./session.js";

const SURFACE = new Set(["basemap", "surface"]);
// a building's height as layers/defaults.py building_height_m: its own, else 3 m a storey,
// else 10 m
const height = (properties, key) =>
  Number(properties?.[key]) || 3 * Number(properties?.levels) || 10;
// the layer panel's groups (twin/deck.py's `group`), named by core:group.<group>
const groupName = (group) => t(`core:group.${group}`);
// the tools: each shown when its endpoint is served; named by core:mode.<mode> and
// core:mode.<mode>.hint (or their own `label` and `hint` keys)
const MODES = {
  inspect: {needs: null},
  route: {needs: "route"},
  areas: {needs: "isochrones"},
  incident: {needs: "impact"},
  section: {needs: "section", label: "map:mode.section", hint: "map:mode.section.hint"},
  // offered only to a caller who may make scenarios (scenario_edit.js)
  scenario: {needs: "scenarios", label: "map:mode.scenario", hint: "map:mode.scenario.hint", may: () => mayEditScenarios()},
};

// vector tiles are parsed on the page by loaders.gl's MVTLoader, not in its workers (deck.gl's
// default, MVTWorkerLoader, parses only in a worker): a worker is a script to fetch and start
// per tile loader (3 on opening), which made the first map 1.4 s slower with software WebGL on
// 2 cores (bench/viewer.py), while a tile of a city parses in milliseconds
const TILE_LOADERS = [MVTLoader];
const TILE_LOADING = {worker: false};
const MATERIAL = {ambient: 0.5, diffuse: 0.6, shininess: 16};
// emergency resources: a letter for the kind on the kind's colour, a ring for the status
const LETTERS = {fire_station: "F", hospital: "H", police: "P", shelter: "S", depot: "D", vehicle: "V"};
const STATUS = {available: [0, 150, 60, 255], busy: [220, 0, 0, 255]};
// a feature of the one-map tiles is drawn (and picked) where its filter value is 1: not a
// vehicle drawn by the live layer, nor the surface when the Surface slider is at 0
const SHOWN = new DataFilterExtension({filterSize: 1});

const state = {
  config: null, visible: {}, surface: 1.0, mode: "inspect", points: [],
  overlays: {route: null, areas: null, units: null, closures: null, marks: [], highlight: null},
  cones: null, selected: null, view: null,
  // made again only when the caller changes (deck.gl compares props by identity): the tile
  // loaders' options, carrying the caller's token
  loadOptions: TILE_LOADING,
};
const el = (id) => document.getElementById(id);
// What the viewer has done, for whoever waits on it (a test, a benchmark) instead of sleeping:
// frames drawn; presses and releases on the map (counted as the DOM delivers them, so none goes
// unseen); releases taken as clicks or as drags; clicks handled (picked, asked, answered or
// superseded); answers written to the panel and the click the panel answers; and `changes`,
// every change of layers, view or tiles, which a frame must follow before the map is settled.
// The live twin's counts: streams opened (liveConnects) and the state read on each
// (liveSnapshots); events received from the stream, in all and per type, and applied (drawn on
// the next frame: a speed on a road not yet drawn once the road's geometry is in); alerts
// focused (the view moved there and its impact drawn); acknowledgements answered (acks, and
// refused, ackErrors).
const counts = {
  frames: 0, presses: 0, releases: 0, clicks: 0, drags: 0, cancelled: 0, handled: 0,
  answers: 0, shown: 0, changes: 0,
  liveConnects: 0, liveSnapshots: 0, liveReceived: 0, liveApplied: 0,
  liveSpeeds: 0, liveVehicles: 0, liveAlerts: 0, focused: 0, acks: 0, ackErrors: 0,
  signIns: 0, signInErrors: 0, signOuts: 0, accessApplied: 0, refused: 0,
};
const changed = () => { counts.changes += 1; };
// the frame last drawn: the changes it followed, and whether every layer was loaded around it
let drawn = {changes: -1, loadedBefore: false, loadedAfter: false};
let interaction = {};
let frameStart = -1;
let loadedAtStart = false;
// a press that moved less than this (CSS pixels) before its release is a click, not a drag
const CLICK_SLOP = 5;
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function colorOf(style, props) {
  if (style.by && props) {
    const key = String(props[style.by] ?? "").toLowerCase();
    if (style.colors[key]) return style.colors[key];
  }
  return style.color;
}

function withAlpha(color, factor) {
  return [color[0], color[1], color[2], Math.round((color[3] ?? 255) * factor)];
}

function styleProps(style) {
  const factor = SURFACE.has(style.group) ? state.surface : 1.0;
  return {
    // district areas are the ground: a click on them asks what is here instead
    pickable: !(style.group === "basemap" && style.shape === "area"),
    stroked: true,
    filled: true,
    getFillColor: (f) => withAlpha(colorOf(style, f.properties), factor),
    getLineColor: (f) => withAlpha(colorOf(style, f.properties), style.shape === "area" ? Math.min(1, factor * 1.5) : factor),
    getLineWidth: style.width_m,
    lineWidthMinPixels: style.shape === "area" ? 0.5 : 1,
    getPointRadius: style.radius_m,
    pointRadiusMinPixels: style.layer === "resources" ? 6 : 2,
    extruded: Boolean(style.extrude),
    getElevation: (f) => height(f.properties, style.extrude),
    material: MATERIAL,
    // underground lines: tubes as wide as their diameter (exaggerated as their depth)
    ...(style.depth ? tubeProps(style, state.config.depth_exaggeration) : {}),
    updateTriggers: {getFillColor: [state.surface], getLineColor: [state.surface]},
  };
}

function sinkLines(collection, style) {
  // underground lines are drawn at their depth, exaggerated so a 1.2 m main is visible
  const k = state.config.depth_exaggeration;
  for (const f of collection.features) {
    const z = -(Number(f.properties?.[style.depth]) || 1) * k;
    const g = f.geometry;
    if (!g) continue;
    if (g.type === "LineString") g.coordinates = g.coordinates.map((c) => [c[0], c[1], z]);
    else if (g.type === "MultiLineString") g.coordinates = g.coordinates.map((l) => l.map((c) => [c[0], c[1], z]));
    else if (g.type === "Point") g.coordinates = [g.coordinates[0], g.coordinates[1], z];
  }
  return collection;
}

function featureLayer(style, side = "a") {
  // GeoJSON per tile from the OGC API: full attributes, 3D coordinates, lazy per view; in the
  // state the map's side shows (compare.js)
  const scenario = scenarioOf(side);
  const common = {id: style.layer, visible: shownLayer(style.layer), minZoom: style.minzoom};
  const props = styleProps(style);
  // the token the layer is made for: a tile it asks for after the caller changed (deck.gl
  // replaces the layer on its next frame) goes as the caller it was made for
  const token = auth.token;
  const made = auth.generation;
  return new TileLayer({
    ...common,
    ...props,
    // the caller changed: every tile is asked for again, with the new token
    updateTriggers: {...props.updateTriggers, getTileData: [auth.generation, state.at, scenario, scenarioRevision(scenario)]},  // the as-of moment too
    maxZoom: 18,
    tileSize: 256,
    onTileLoad: changed,  // a tile's data in: the map settles once a frame has drawn it
    onTileError: changed,
    getTileData: async ({bbox, signal}) => {
      if (made !== auth.generation) return null;  // made for another caller: replaced soon
      const box = [bbox.west, bbox.south, bbox.east, bbox.north].map((v) => v.toFixed(6)).join(",");
      const collection = await json(`collections/${style.layer}/items?bbox=${box}&limit=10000${state.at ? `&datetime=${encodeURIComponent(state.at)}` : ""}`, {signal, scenario}, token);
      return style.depth ? sinkLines(collection, style) : collection;
    },
    renderSubLayers: (props) => new GeoJsonLayer({...props, ...styleProps(style), data: props.data}),
  });
}

function mapLayer(styles, id = "map", side = "a") {
  // every shown tile layer in one one-map vector tile per z/x/y (a layer per collection);
  // each feature is drawn by its layer's style (loaders.gl puts the layer in `layerName`).
  // The resources come in a layer of their own (id "resources"), drawn over the live vehicles
  // with each tile's vehicles drawn first: a station is drawn, and picked, over its vehicles.
  const shown = styles.filter((s) => shownLayer(s.layer));
  const byLayer = Object.fromEntries(shown.map((s) => [s.layer, s]));
  // a tile loaded before a layer was switched off may still be drawn until its successor loads:
  // its features of that layer keep their style, and are filtered out
  const styleOf = Object.fromEntries(styles.map((s) => [s.layer, s]));
  const pick = (f) => byLayer[f.properties.layerName] || styleOf[f.properties.layerName] || styles[0];
  const factor = (s) => (SURFACE.has(s.group) ? state.surface : 1.0);
  // the one-map tileset of the shown layers: tiles only inside its limits (the layers' data,
  // from their minzoom), overzoomed past its maxzoom; the server answers 404 outside them
  const sets = shown.map((s) => state.config.tilesets[s.layer]).filter((t) => t && t.bounds);
  const extent = extentOf(state.config.tilesets, shown.map((s) => s.layer));
  // vehicles are drawn by the live layer (at their live positions) while it is shown
  const moved = vehiclesShown();
  const hidden = (f) => moved && f.properties.layerName === "resources" && f.properties.kind === "vehicle";
  const cleared = state.surface <= 0;  // the surface not drawn at all: the underground in plain view
  return new MVTLayer({
    id,
    loaders: TILE_LOADERS,
    data: withScenario(`map/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=${shown.map((s) => s.layer).join(",")}`, scenarioOf(side)),
    visible: extent !== null,
    extent: extent || [0, 0, 0, 0],
    minZoom: sets.length ? Math.min(...sets.map((t) => t.minzoom)) : 0,
    maxZoom: sets.length ? Math.max(...sets.map((t) => t.maxzoom)) : 15,
    binary: false,
    pickable: true,
    stroked: true,
    filled: true,
    extruded: true,
    getFillColor: (f) => withAlpha(colorOf(pick(f), f.properties), hidden(f) ? 0 : factor(pick(f))),
    getLineColor: (f) => (f.properties.layerName === "resources"
      ? withAlpha(STATUS[f.properties.status] || [90, 90, 90, 255], hidden(f) ? 0 : 1)
      : withAlpha(colorOf(pick(f), f.properties), pick(f).shape === "area" ? Math.min(1, factor(pick(f)) * 1.5) : factor(pick(f)))),
    getLineWidth: (f) => (f.properties.layerName === "resources" ? 3 : pick(f).width_m),
    lineWidthMinPixels: 1,
    pointType: "circle+text",
    getText: (f) => (f.properties.layerName === "resources" && !hidden(f) ? LETTERS[f.properties.kind] || "?" : ""),
    getTextColor: [255, 255, 255, 255],
    getTextSize: 10,
    textFontWeight: "bold",
    getPointRadius: (f) => (hidden(f) ? 0 : f.properties.layerName === "resources" ? 30 : pick(f).radius_m),
    pointRadiusMinPixels: 3,
    pointRadiusMaxPixels: 40,
    getElevation: (f) => (pick(f).extrude ? height(f.properties, pick(f).extrude) : 0),
    material: MATERIAL,
    extensions: [SHOWN],
    getFilterValue: (f) => (hidden(f) || !byLayer[f.properties.layerName] || (cleared && SURFACE.has(pick(f).group)) ? 0 : 1),
    filterRange: [1, 1],
    renderSubLayers: (props) => new GeoJsonLayer({...props, data: id === "resources" ? vehiclesFirst(props.data) : props.data}),
    updateTriggers: {
      getFillColor: [state.surface, moved], getLineColor: [state.surface, moved],
      getText: [moved], getPointRadius: [moved], getFilterValue: [cleared, moved, shown.map((s) => s.layer).join()],
      // the caller changed: every tile again, with its token; the scenario shown edited: again
      getTileData: [auth.generation, scenarioRevision(scenarioOf(side))],
    },
    loadOptions: state.loadOptions,  // parsed on the page, with the caller's token on every tile
    onTileLoad: changed,
    onTileError: (error) => {
      changed();
      tileRefused(error);
      // a scenario's tile not found: the scenario may be deleted (compare.js)
      if (error?.response?.status === 404) notFound(error.url, error.reason);
    },
  });
}

function overlayLayers() {
  const out = [];
  const o = state.overlays;
  if (state.cones && shownLayer("cameras")) {
    out.push(new GeoJsonLayer({id: "camera-cones", data: state.cones, pickable: false, stroked: true,
      filled: true, getFillColor: [90, 40, 140, 60], getLineColor: [90, 40, 140, 200], getLineWidth: 0.5}));
  }
  if (o.areas) {
    // longest time first, the shorter drawn over it; sequential colours (answers.js), darkest
    // the shortest, as the answer's legend
    const n = o.areas.features.length;
    const color = (f) => areaColor(n - 1 - o.areas.features.indexOf(f), n);
    out.push(new GeoJsonLayer({id: "service-areas", data: o.areas, pickable: false, stroked: true, filled: true,
      getFillColor: (f) => [...color(f), 120], getLineColor: (f) => [...color(f), 255], getLineWidth: 3,
      lineWidthMinPixels: 2}));
  }
  if (o.closures) {
    out.push(new GeoJsonLayer({id: "suggested-closures", data: o.closures, getLineColor: [255, 120, 0, 230],
      getLineWidth: 8, lineWidthMinPixels: 3}));
  }
  for (const [id, data, color] of [["route", o.route, [0, 90, 255, 230]], ["units", o.units, [220, 0, 90, 220]]]) {
    if (data) {
      out.push(new GeoJsonLayer({id, data, pickable: false, getLineColor: color, getLineWidth: 6,
        lineWidthMinPixels: 3}));
    }
  }
  const focus = live.focus;
  if (focus && focus.data) {
    // the focused alert: its impact (or its asset), and a ring where it is
    out.push(new GeoJsonLayer({id: "alert-impact", data: focus.data, pickable: false, stroked: true,
      filled: true, getFillColor: [190, 0, 190, 60], getLineColor: [190, 0, 190, 230], getLineWidth: 4,
      lineWidthMinPixels: 3, getPointRadius: 8, pointRadiusMinPixels: 6}));
  }
  if (focus && focus.at) {
    out.push(new ScatterplotLayer({id: "alert-mark", data: [focus.at], getPosition: (c) => c,
      getRadius: 25, radiusMinPixels: 10, stroked: true, filled: false, getLineColor: [190, 0, 190, 255],
      lineWidthMinPixels: 3, pickable: false}));
  }
  if (o.marks.length) {
    out.push(new GeoJsonLayer({id: "marks", data: {type: "FeatureCollection", features: o.marks.map((c) => (
      {type: "Feature", geometry: {type: "Point", coordinates: c}, properties: {}}))},
      getFillColor: [0, 0, 0, 255], getPointRadius: 6, pointRadiusMinPixels: 5}));
  }
  if (o.highlight) {
    // the answer's item hovered or clicked (a route's step, a valve, a unit's route, a road)
    out.push(new GeoJsonLayer({id: "answer-highlight", data: o.highlight, pickable: false, stroked: true,
      filled: true, getLineColor: [0, 200, 255, 255], getFillColor: [0, 200, 255, 255], getLineWidth: 10,
      lineWidthMinPixels: 6, getPointRadius: 6, pointRadiusMinPixels: 9, parameters: {depthCompare: "always"}}));
  }
  return out;
}

function cityLayers(side) {
  // every layer of the map, read in the state of its side: "a" the main map, "b" the compared
  // one (compare.js), which draws no answer of the tools (they answer for A)
  const tiles = state.config.styles.filter((s) => s.source === "tiles" && s.layer !== "resources");
  const resources = state.config.styles.filter((s) => s.source === "tiles" && s.layer === "resources");
  // a layer the caller may not read is no layer at all (deck.gl loads a hidden tile layer's tiles)
  const features = state.config.styles.filter((s) => s.source === "features" && readable(s.layer)
    && (side === "a" || shownLayer(s.layer)));  // the compared map loads no hidden layer's tiles
  // the underground first, then the ground over it as opaque as the Surface slider (while a
  // basemap layer is shown), then the surface: lowering the slider uncovers the pipes
  // (underground.js)
  const below = features.filter((s) => s.depth).map((s) => featureLayer(s, side));
  const above = features.filter((s) => !s.depth).map((s) => featureLayer(s, side));
  const basemap = state.config.styles.filter((s) => s.group === "basemap" && shownLayer(s.layer)).map((s) => s.layer);
  const all = state.config.styles.map((s) => s.layer);
  const ground = basemap.length ? groundLayer(extentOf(state.config.tilesets, all), state.surface) : null;
  const answers = side === "a" ? [...sectionLayers(), ...overlayLayers()] : [];
  return [...below, ...(ground ? [ground] : []), mapLayer(tiles, "map", side), ...above, ...liveLayers(),
    mapLayer(resources, "resources", side), ...answers, ...chromeLayers(), ...compareLayers()];
}

function render() {
  changed();
  state.deck.setProps({layers: cityLayers("a")});
  renderCompare(cityLayers);  // the compared state, when shown
}

function layersLoaded() {
  return state.deck.props.layers.filter((l) => l.props.visible).every((l) => l.isLoaded);
}

function settled() {
  // every visible layer loaded, a whole frame drawn with them after the last change (of layers,
  // view or tiles), nothing waiting to be drawn, and no drag, zoom or view transition under way
  const deckgl = state.deck;
  if (!deckgl || !deckgl.isInitialized) return false;
  if (auth.pending || !auth.me) return false;  // the caller is being read: layers to come
  const moving = ["isDragging", "isPanning", "isRotating", "isZooming", "inTransition"]
    .some((k) => interaction[k]);
  return drawn.changes === counts.changes && drawn.loadedBefore && drawn.loadedAfter
    && layersLoaded() && !moving && !deckgl.needsRedraw({clearRedrawFlags: false})
    && !deckgl.layerManager?.needsUpdate() && compareSettled();
}

function status() {
  // what `settled` waits for, for a failure message
  const deckgl = state.deck;
  const ready = Boolean(deckgl && deckgl.isInitialized);
  return {
    ...counts, drawn, interaction, settled: settled(),
    loading: ready ? deckgl.props.layers.filter((l) => l.props.visible && !l.isLoaded).map((l) => l.id) : null,
    needsRedraw: ready ? deckgl.needsRedraw({clearRedrawFlags: false}) : null,
    needsUpdate: ready ? deckgl.layerManager?.needsUpdate() ?? null : null,
    compare: compareState(),
  };
}

function setView(view) {
  // the view is controlled here (deck.gl's `viewState`), so a view asked for is always applied
  state.view = view;
  changed();
  state.deck.setProps({viewState: view});
  compareView(view);  // the compared map, on the same view
}

function lookAt(view) {
  // jump (no transition) to a view; `settled` holds again once its tiles are drawn
  const next = {longitude: state.view.longitude, latitude: state.view.latitude, zoom: state.view.zoom,
    pitch: 0, bearing: 0, ...view};
  const same = Object.keys(next).every((k) => next[k] === state.view[k]);
  if (!same) setView(next);  // already there: nothing to draw
}

function attributes(object, layer, fromTiles) {
  const props = object.properties || object;
  // a vector tile's feature id is the row's version, and the tile reader writes it over `id`
  const hidden = new Set(fromTiles ? ["id", "layerName"] : ["layerName"]);
  return attributesAnswer(props, layer, hidden, state.config.styles);  // in plain words
}

async function json(url, options, token = auth.token) {
  const response = await apiFetch(url, options, token);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

async function whatIsHere(lon, lat, tell) {
  const body = await json(`onemap/around?lon=${lon}&lat=${lat}&radius_m=30&limit=3${state.at ? `&at=${encodeURIComponent(state.at)}` : ""}`);
  const write = () => hereAnswer(body, 30, state.config.styles);
  tell(write(), write);
}

function layerOf(hit) {
  return hit.layer.id === "map" ? hit.object.properties.layerName : hit.layer.id;
}

function answer(mine, write) {
  // a slow answer to an earlier click must not overwrite a newer one
  if (mine !== counts.clicks) return;
  write(el("result"));
  counts.answers += 1;
  counts.shown = mine;
}

async function onClick(info, mine) {
  // An answer is shown, and its overlays drawn, only if it answers the newest click and the
  // panel was not cleared meanwhile (a slow answer to an earlier click must not overwrite a
  // newer one). The click is acknowledged at once ("working"), so nobody clicks again.
  const since = epoch();
  const fresh = () => mine === counts.clicks && since === epoch();
  // `redo` writes the answer again (in another language, when the reader switches)
  const tell = (reply, redo = null) => { if (fresh()) answer(mine, (result) => show(result, reply, redo)); };
  const say = (html) => tell({html, items: []});
  const [lon, lat] = info.coordinate.map((v) => Number(v.toFixed(6)));
  const o = state.overlays;
  if (state.mode !== "section") el("result").innerHTML = `<p class="answer-note">${esc(t("answers:working"))}</p>`;
  try {
    if (state.mode === "inspect") {
      // what stands here, top first; district areas are the ground, not a feature (the one
      // pick that draws every layer: picking.js)
      const hits = ownPick(() => state.deck.pickMultipleObjects({x: info.x, y: info.y, radius: 3, depth: 8}));
      const styleOf = (hit) => state.config.styles.find((x) => x.layer === layerOf(hit));
      // under an opaque ground (the Surface slider full, a basemap layer shown) the underground
      // is not seen, so not clicked: the ground layer is not pickable, the pick goes through it
      const buried = state.surface >= 0.99 && state.config.styles.some((x) => x.group === "basemap" && shownLayer(x.layer));
      const hit = hits.find((h) => styleOf(h) && state.visible[layerOf(h)]
        && !(styleOf(h).group === "basemap" && styleOf(h).shape === "area")
        && !(buried && styleOf(h).group === "underground"));
      if (hit) {
        const layer = layerOf(hit);
        const style = styleOf(hit);
        const write = () => ({html: attributes(hit.object, layer, style.source === "tiles"), items: []});
        tell(write(), write);
        if (style.source === "tiles" && state.config.features.onemap) {
          // the store's ids of what stands here, from the one-map endpoint
          const body = await json(`onemap/around?lon=${lon}&lat=${lat}&radius_m=5&layers=${layer}&limit=5`);
          const ids = (body.layers[layer]?.features || []).map((f) => esc(f.properties.id));
          if (fresh()) answer(mine, (result) => result.insertAdjacentHTML("beforeend", `<p class="ids">${ids.join("<br>")}</p>`));
        }
      } else if (state.config.features.onemap) {
        await whatIsHere(lon, lat, tell);
      }
    } else if (state.mode === "route") {
      o.marks = state.points.length >= 2 ? [] : o.marks;
      state.points = state.points.length >= 2 ? [] : state.points;
      state.points.push([lon, lat]);
      o.marks = [...state.points];
      if (state.points.length === 2) {
        const [a, b] = state.points;
        const feature = await json(`routing/route?from=${a.join(",")}&to=${b.join(",")}&profile=emergency`);
        if (fresh()) {
          o.route = feature.geometry ? {type: "FeatureCollection", features: [feature]} : null;
          // the totals and the steps, each its part of the route
          tell(routeAnswer(feature), () => routeAnswer(feature));
        }
      } else {
        say(`<p>${esc(t("answers:route.next"))}</p>`);
      }
    } else if (state.mode === "areas") {
      const areas = await json(`routing/isochrones?facilities=${lon},${lat}&breaks=4,8,12`);
      if (fresh()) {
        // drawn longest first (the shorter over it); the legend shortest first
        areas.features.sort((x, y) => y.properties.minutes - x.properties.minutes);
        o.areas = areas;
        o.marks = [[lon, lat]];
        const write = () => areasAnswer({type: "FeatureCollection", features: [...areas.features].reverse()});
        tell(write(), write);
      }
    } else if (state.mode === "incident") {
      const kind = el("incident-kind").value;
      o.marks = [[lon, lat]];  // where it happens, at once
      render();
      const body = await json("incidents/impact", {method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify({geometry: {type: "Point", coordinates: [lon, lat]}, kind, limit: 200})});
      // the valves and where, the units and their ETA, the roads to close (names read as needed)
      const reply = await impactAnswer(body, kind, {json, styles: state.config.styles});
      if (fresh()) {
        o.units = body.units;
        o.closures = body.closures.geometry ? {type: "FeatureCollection", features: [{type: "Feature", geometry: body.closures.geometry, properties: {}}]} : null;
        tell(reply, () => impactAnswer(body, kind, {json, styles: state.config.styles}));
      }
    } else if (state.mode === "section") {
      await sectionClick(info, [lon, lat], say, {json, render, styles: state.config.styles,
        maxLengthM: state.config.limits?.section_m ?? Infinity});
    } else if (state.mode === "scenario") {
      await scenarioClick(info, [lon, lat], say);
    }
  } catch (error) {
    say(`<p class="error">${esc(t("answers:error", {message: error.message}))}</p>`);
  }
  render();
}

function listenForClicks(target) {
  // Clicks are told from drags here, from the pointer's own press and release, not by deck.gl's
  // tap recogniser: that one drops a click whose release it handles more than 250 ms after the
  // press by the clock, and deck.gl picks synchronously in its press handler, which with
  // software WebGL on a busy machine takes that long alone; it also holds every click 300 ms to
  // rule out a double-click. Here a release within CLICK_SLOP pixels of its press is a click,
  // however long it was held or the page was busy. Every click on the map is a tool's input,
  // so a double-click is two clicks (the controller's double-click zoom is off).
  // The panel's answers: hover and click on their items, and Clear (answers.js).
  setupAnswers(el("result"), target, {
    onHighlight: (collection) => {
      if (!collection && !state.overlays.highlight) return;
      state.overlays.highlight = collection;
      render();
    },
    onFly: (view) => lookAt(view),
    onClear: () => {
      Object.assign(state.overlays, {route: null, areas: null, units: null, closures: null, marks: [], highlight: null});
      state.points = [];
      clearSection();  // the section line and its crossings too
      render();
    },
  });
  let press = null;
  const at = (event) => {
    const box = target.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  };
  target.addEventListener("pointerdown", (event) => {
    // a second finger while one is down: a pinch, not a click. A new primary pointer is a new
    // press: the earlier one's release never came (a touch or pen gets a new id each time, so
    // a press left over made every later tap a "second finger", dropped)
    if (press && event.pointerId !== press.id && !event.isPrimary) { press.multi = true; return; }
    if (press && event.pointerId !== press.id) counts.cancelled += 1;
    if (!event.isPrimary || event.button !== 0) return;
    counts.presses += 1;
    press = {id: event.pointerId, at: at(event), multi: false};
  });
  // released anywhere: a release off the map (over the panel) ends the press without a click
  window.addEventListener("pointerup", (event) => {
    if (!press || event.pointerId !== press.id) return;
    const [x0, y0] = press.at;
    const [x, y] = at(event);
    const multi = press.multi;
    press = null;
    counts.releases += 1;
    if (!target.contains(event.target)) { counts.cancelled += 1; return; }
    if (multi || Math.hypot(x - x0, y - y0) > CLICK_SLOP) { counts.drags += 1; return; }
    const mine = ++counts.clicks;
    const viewport = state.deck.isInitialized ? state.deck.getViewports({x, y})[0] : null;
    const coordinate = viewport ? viewport.unproject([x, y]) : null;
    const done = () => { counts.handled += 1; };
    if (!coordinate) { done(); return; }
    onClick({x, y, coordinate}, mine).finally(done);
  });
  window.addEventListener("pointercancel", (event) => {
    if (press && event.pointerId === press.id) { press = null; counts.cancelled += 1; }
  });
}

function drawLayerList() {
  // the layers the caller may read, by group (drawn again when the caller changes)
  const groups = {};
  for (const style of state.config.styles) if (readable(style.layer)) (groups[style.group] ||= []).push(style);
  el("layer-groups").innerHTML = Object.entries(groups).map(([group, styles]) => `<fieldset><legend>${esc(groupName(group))}</legend>${
    styles.map((s) => `<label><input type="checkbox" data-layer="${s.layer}" ${state.visible[s.layer] ? "checked" : ""}> ${esc(layerTitle(s.layer, s.title))}</label>`).join("")}</fieldset>`).join("");
  drawLegend();  // the legend lists what is shown
}

// ---------------------------------------------------------------------------------------------
// Signing in, against the twin's own issuer (POST auth/token, the OAuth 2.0 password grant).
// The token is kept in sessionStorage (it survives a reload, not a closed tab) and sent on
// every request: fetch's Authorization header, the tile loaders' fetch options, and the
// access_token parameter of the push stream. auth/me says per layer what the caller may do:
// the panel lists, and the map asks for, only what it may read. Signing in or out rebuilds
// the layers; a 401 from any request shows the sign-in form with the API's reason.

const st = (key, values = {}) => t(`signin:${key}`, values);

const auth = {
  token: null, user: null, roles: [],  // the session (token) kept in sessionStorage
  me: null,  // what auth/me last said: {user, roles, clearance, clearanceName, layers}
  generation: 0,  // bumped whenever the caller changes: every tile is loaded again
  error: null,  // the last refusal or sign-in failure, shown in the panel
  session: null,  // {token, user, roles, expires_at}
  ending: null,  // a token refused, whose session is ending
  shown: {},  // the layers the caller could read last time (one that becomes readable starts as styled)
  pending: null,  // the latest change of caller under way
  applying: 0,  // the latest access refresh (an older one that answers late is dropped)
  checking: null,  // a session check under way
};

function loadSession() {
  const saved = savedSession();
  if (saved) useSession(saved);
}

function useSession(session) {
  // the session every request goes with from now on (null: anonymous), kept for a reload
  auth.session = session || null;
  auth.token = session?.token ?? null;
  auth.user = session?.user ?? null;
  auth.roles = session?.roles ?? [];
  saveSession(auth.session);
}

function authHeaders(token = auth.token) {
  return sessionHeaders(token);
}

function readable(layer) {
  return Boolean(auth.me?.layers?.[layer]?.includes("read"));
}

function shownLayer(layer) {
  return Boolean(state.visible[layer]) && readable(layer);
}

async function apiFetch(url, options = {}, token = auth.token) {
  // fetch with the caller's token; a 401 shows the sign-in form (the caller sees why). Read in
  // the state the map shows (compare.js), unless `options.scenario` names another (null: the base)
  const {scenario = scenarioOf("a"), ...rest} = options;
  const response = await fetch(withScenario(url, scenario), {...rest, headers: {...(rest.headers || {}), ...authHeaders(token)}});
  if (response.status === 401) refused(token, await problemDetail(response.clone()));
  if (response.status === 404) notFound(withScenario(url, scenario), response.clone());  // a scenario deleted? (compare.js)
  return response;
}

function refused(token, detail) {
  // a 401: a token that no longer holds (expired, revoked) ends the session; without one,
  // the form asks to sign in
  if (token !== auth.token) return;  // the caller has changed since the request was made
  counts.refused += 1;
  if (token) {
    if (auth.ending === token) return;  // already ending
    auth.ending = token;
    auth.error = st("expired", {detail});
    applyAccess(null);
  } else {
    auth.error = st("refused", {detail});
    drawSignIn();
  }
}

function tileRefused(error) {
  // loaders.gl says "Failed to fetch resource (401) ...": the same as a fetch's 401
  const text = String(error?.message ?? error ?? "");
  if (!/\(401\)/.test(text)) return;
  const detail = /"detail"\s*:\s*"([^"]*)"/.exec(text)?.[1] || text;
  refused(auth.token, detail);
}

function checkSession() {
  // is the token still good? (after a stream closed on an error, which says no status)
  if (!auth.token || auth.checking) return;
  const token = auth.token;
  auth.checking = fetchMe("", token)
    .then(async (response) => { if (response.status === 401) refused(token, await problemDetail(response)); })
    .catch(() => {})
    .finally(() => { auth.checking = null; });
}

// auth/me asked on opening, beside viewer/config.json (one round trip fewer before the map):
// {token, response}, taken by the first whoAmI for the same token
let openingMe = null;

async function whoAmI(session) {
  // auth/me for a session; a token it refuses ends the session, and it is asked anonymously
  const token = session?.token ?? null;
  const early = openingMe && openingMe.token === token ? openingMe.response : null;
  openingMe = null;
  let response = (early && await early) || await fetchMe("", token);  // (a failed early one: again)
  if (response.status === 401 && session) {
    auth.error = st("expired", {detail: await problemDetail(response)});
    session = null;
    response = await fetchMe("", null);
  }
  if (response.status === 401) {
    // no anonymous access on this server: nothing to read until one signs in
    auth.error = st("no_anonymous", {detail: await problemDetail(response)});
    return {session, me: {user: null, roles: [], clearance: null, clearanceName: null, layers: {}}};
  }
  if (!response.ok) throw new Error(await problemDetail(response));
  return {session, me: await response.json()};
}

function applyAccess(session = auth.session, {configRead = false} = {}) {
  // Change the caller to `session` (null: anonymous): read what it may do and where its layers
  // are, then switch at once: the token, the panel's layers, the map and the stream. Until
  // then every request goes as before, so no layer is asked for without the token it needs.
  // `configRead`: state.config was just read as this caller (on opening, anonymously), so the
  // extents are not read again. Resolves once the latest change asked for is applied.
  const run = changeCaller(session, ++auth.applying, configRead);
  auth.pending = run;
  return run;
}

async function changeCaller(session, mine, configRead = false) {
  let me;
  let tilesets = null;
  let credits = null;
  // (a failed read is a warning below, never a rejection left unhandled)
  const readConfig = (token) => fetch("viewer/config.json", {headers: authHeaders(token)})
    .catch((error) => ({ok: false, status: 0, statusText: String(error), json: () => Promise.reject(error)}));
  try {
    // who the caller is and what it sees, asked together (one round trip, not two)
    const asked = session?.token ?? null;
    let config = configRead && !asked ? null : readConfig(asked);
    ({session, me} = await whoAmI(session));
    const token = session?.token ?? null;
    if (config && token !== asked) config = configRead && !token ? null : readConfig(token);  // refused
    const response = config && await config;
    if (response?.ok) ({tilesets, credits} = await response.json());
    else if (response) console.warn("the layers' extents were not read again:", await problemDetail(response));
  } catch (error) {
    if (mine !== auth.applying) return auth.pending;
    auth.error = error.message;
    ({session, me} = {session: null, me: {user: null, roles: [], layers: {}}});
  }
  if (mine !== auth.applying) return auth.pending;  // a newer change has overtaken this one
  useSession(session);
  auth.ending = null;
  auth.pending = null;
  if (tilesets) state.config.tilesets = tilesets;  // a hidden layer has no bounds
  if (credits) { state.config.credits = credits; drawCredits(); }  // of what the caller sees
  auth.me = me;
  auth.generation += 1;
  state.loadOptions = {...TILE_LOADING, fetch: {headers: authHeaders()}};
  for (const style of state.config.styles) {
    // a layer the caller may no longer read is off; one it may read again starts as styled
    if (!readable(style.layer)) state.visible[style.layer] = false;
    else if (!(style.layer in auth.shown)) state.visible[style.layer] = style.visible;
  }
  auth.shown = Object.fromEntries(state.config.styles.filter((s) => readable(s.layer)).map((s) => [s.layer, true]));
  state.cones = null;
  drawLayerList();
  drawSignIn();
  if (MODES[state.mode].may && !MODES[state.mode].may()) {  // a tool the new caller may not use
    state.mode = "inspect";
    showScenarioEdit(false);
  }
  drawPanelText();  // the tools this caller may use
  scenarioCallerChanged();
  refreshScenarios();  // the scenarios this caller may read, for the compare tool
  render();
  if (state.config.features.cameras && readable("cameras")) {
    const generation = auth.generation;
    json("cameras/coverage").then((body) => {
      if (generation === auth.generation) { state.cones = body.cones; render(); }
    }).catch((error) => console.warn("camera coverage not read:", error));
  }
  reconnectLive();
  counts.accessApplied += 1;
}

async function signIn(username, password) {
  let session;
  try {
    session = await requestToken("", username, password);
  } catch (error) {
    auth.error = st("failed", {detail: error.message});
    counts.signInErrors += 1;
    drawSignIn();
    return;
  }
  auth.error = null;
  await applyAccess(session);
  counts.signIns += 1;
}

async function signOut() {
  // anonymous from now on; then the token is revoked at the issuer (best effort)
  const token = auth.token;
  auth.error = null;
  await applyAccess(null);
  await revokeToken("", token);
  counts.signOuts += 1;
}

function buildSignIn() {
  el("title").insertAdjacentHTML("afterend", `<form id="signin" class="signin" autocomplete="on">
<div id="signin-who" class="signin-who"></div>
<div id="signin-fields" class="signin-fields">
<label><span data-i18n="signin:user">${esc(st("user"))}</span> <input name="username" id="signin-user" autocomplete="username" required></label>
<label><span data-i18n="signin:password">${esc(st("password"))}</span> <input name="password" id="signin-password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="signin-submit" data-i18n="signin:signin">${esc(st("signin"))}</button></div>
<button type="button" id="signout" data-i18n="signin:signout" hidden>${esc(st("signout"))}</button>
<p id="signin-error" class="error" role="alert" hidden></p></form>`);
  el("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const button = el("signin-submit");
    button.disabled = true;
    try {
      await signIn(form.username.value.trim(), form.password.value);
    } catch (error) {
      auth.error = st("failed", {detail: error.message});
      counts.signInErrors += 1;
      drawSignIn();
    } finally {
      button.disabled = false;
    }
  });
  el("signout").addEventListener("click", () => { signOut(); });
  drawSignIn();
}

function drawSignIn() {
  const me = auth.me;
  const signedIn = Boolean(auth.token && me?.user);
  const roles = (me?.roles?.length ? me.roles : auth.roles || []).map(roleName).join(", ");
  el("signin-who").innerHTML = signedIn
    ? `<strong>${esc(st("signed_in", {user: me.user}))}</strong><br>${esc(st("role", {roles}))}${me.clearanceName ? ` · ${esc(st("clearance", {clearance: clearanceName(me.clearanceName)}))}` : ""}`
    : `${esc(st("anonymous"))}${me?.user ? ` · ${esc(st("role", {roles}))}` : ""}`;
  el("signin-fields").hidden = signedIn;
  el("signout").hidden = !signedIn;
  el("signin").classList.toggle("signed-in", signedIn);
  el("signin").classList.toggle("needed", Boolean(auth.error) && !signedIn);
  el("signin-error").hidden = !auth.error;
  el("signin-error").textContent = auth.error || "";
  if (signedIn) el("signin-password").value = "";
}

function authState() {
  // who the page calls as, for whoever checks it (a test)
  return {user: auth.me?.user ?? null, roles: auth.me?.roles ?? [], signedIn: Boolean(auth.token && auth.me?.user),
    readable: state.config ? state.config.styles.map((s) => s.layer).filter(readable) : [],
    generation: auth.generation, error: auth.error};
}

function buildPanel() {
  el("layers").innerHTML = `<div id="layer-groups"></div>`;
  drawLayerList();
  el("layers").addEventListener("change", (event) => {
    const layer = event.target.dataset.layer;
    if (layer) { state.visible[layer] = event.target.checked; render(); drawLegend(); }
  });
  el("surface").addEventListener("input", (event) => {
    state.surface = Number(event.target.value) / 100;
    render();
  });
  drawPanelText();
  el("modes").addEventListener("click", (event) => {
    const mode = event.target.dataset.mode;
    if (!mode) return;
    state.mode = mode;
    state.points = [];
    for (const b of el("modes").children) b.classList.toggle("on", b.dataset.mode === mode);
    el("hint").textContent = t(MODES[mode].hint || `core:mode.${mode}.hint`);
    el("incident-options").hidden = mode !== "incident";
    showScenarioEdit(mode === "scenario");
  });
}

function drawPanelText() {
  // what the panel writes itself (its HTML is translated by data-i18n): the tools, the hint,
  // the incident kinds; drawn again when the language changes
  const modes = Object.entries(MODES).filter(([, m]) => (!m.needs || state.config.features[m.needs]) && (!m.may || m.may()));
  el("modes").innerHTML = modes.map(([key, m]) => `<button type="button" data-mode="${key}" class="${key === state.mode ? "on" : ""}">${esc(t(m.label || `core:mode.${key}`))}</button>`).join("");
  const kind = el("incident-kind").value;
  el("incident-kind").innerHTML = state.config.incident_kinds.map((k) => `<option value="${esc(k)}">${esc(incidentName(k))}</option>`).join("");
  if (kind) el("incident-kind").value = kind;
  el("hint").textContent = t(MODES[state.mode].hint || `core:mode.${state.mode}.hint`);
}

// ---------------------------------------------------------------------------------------------
// The live twin. The page follows the push stream (Server-Sent Events at live/events, which the
// browser reconnects by itself); on every connection it reads the state that holds (congested
// roads, vehicles' positions, open alerts) and applies the stream's events on top, so a
// reconnection misses nothing that still holds. Events are applied to `live` at once and drawn
// together on the next animation frame (a busy stream never draws more than once a frame).

// Every label the live parts show: locales/*/live.json.
const lt = (key, values = {}) => t(`live:${key}`, values);

// Congestion (live speed / free-flow speed) levels, highest first, and their colours.
const CONGESTION = [
  {level: "free", min: 0.8, color: [26, 150, 65, 255]},
  {level: "slow", min: 0.5, color: [245, 160, 0, 255]},
  {level: "congested", min: -Infinity, color: [215, 25, 28, 255]},
];
const NO_SPEED = {level: "none", color: [150, 150, 150, 255]};
const LIVE_TYPES = ["speed", "vehicle", "alert"];  // what the page draws (no raw observations)
const FOCUS_ZOOM = 17;  // an alert is looked at from at least this close
const MOVE_MS = 800;  // a vehicle glides to its new position over this long
const RETRY_MS = [3000, 60000];  // a stream the browser gave up on is opened again: backoff
const STALE_CHECK_MS = 5000;  // how often live values are checked for staleness
const ROADS_PER_REQUEST = 100;  // road geometries asked for in one request (URL length)
const ROAD_BATCH_MS = 50;  // how long new roads are gathered before their geometry is asked for
const PAGE = 10000;  // the OGC API's largest page
const reducedMotion = window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;

const live = {
  status: "offline", source: null, retryMs: RETRY_MS[0], clockOffsetMs: 0,
  show: {traffic: true, vehicles: true},
  seq: 0,  // events applied so far: what a snapshot is compared with
  roads: new Map(),  // road id -> {id, feature, congestion, speed_kmh, free_flow_kmh, observed_at, stale, seq}
  roadData: {type: "FeatureCollection", features: []}, speedVersion: 0,
  roadBatch: null,
  vehicles: new Map(),  // resource id -> {id, name, kind, status, stored, position, drawn, live, observed_at, seq}
  vehicleData: [], vehicleVersion: 0, animating: false,
  alerts: new Map(), alertsChanged: true, errors: {},
  focus: null,  // {id, kind: impact | asset | point, at, data}
  ready: 0, snapshots: 0, frame: 0, storedVehicles: false, started: false, retryTimer: 0,
};

const serverNow = () => Date.now() + live.clockOffsetMs;
const timeOf = (iso) => (iso ? Date.parse(iso) : NaN);

function levelOf(road) {
  if (!road || road.stale || road.congestion === null || road.congestion === undefined) return NO_SPEED;
  return CONGESTION.find((c) => road.congestion >= c.min);
}

function vehiclesShown() {
  return live.show.vehicles && live.vehicles.size > 0;
}

function liveLayers() {
  const out = [];
  if (live.show.traffic && live.roadData.features.length) {
    out.push(new GeoJsonLayer({
      id: "live-traffic", data: live.roadData, pickable: true, stroked: true, filled: false,
      getLineColor: (f) => levelOf(live.roads.get(f.id)).color,
      getLineWidth: 8, lineWidthMinPixels: 4, lineCapRounded: true,
      // the colours follow the events; the geometry is built again only when a road is added
      updateTriggers: {getLineColor: live.speedVersion},
    }));
  }
  if (vehiclesShown()) {
    // the resources layer's colour of vehicles (twin/deck.py); faded where none is live
    const style = state.config.styles.find((s) => s.layer === "resources");
    const vehicleColor = style ? colorOf(style, {kind: "vehicle"}) : [240, 120, 0, 255];
    const triggers = {getPosition: live.vehicleVersion, getFillColor: live.vehicleVersion,
      getLineColor: live.vehicleVersion};
    out.push(new ScatterplotLayer({
      id: "live-vehicles", data: live.vehicleData, pickable: true, stroked: true, filled: true,
      getPosition: (v) => v.drawn, getRadius: 14, radiusMinPixels: 7, radiusMaxPixels: 30,
      getFillColor: (v) => withAlpha(vehicleColor, v.live ? 1 : 0.5),
      getLineColor: (v) => STATUS[v.status] || [90, 90, 90, 255], lineWidthMinPixels: 2,
      updateTriggers: triggers,
    }));
    out.push(new TextLayer({
      id: "live-vehicles-letter", data: live.vehicleData, pickable: false,
      getPosition: (v) => v.drawn, getText: () => LETTERS.vehicle, getSize: 11,
      getColor: [255, 255, 255, 255], fontWeight: "bold", updateTriggers: {getPosition: live.vehicleVersion},
    }));
  }
  return out;
}

function liveTooltip(object, layer) {
  if (layer.id === "live-traffic") {
    const road = live.roads.get(object.id) || {};
    const name = object.properties?.name || object.properties?.class || object.id;
    if (levelOf(road) === NO_SPEED) return {text: lt("road_tooltip_none", {name})};
    return {text: lt("road_tooltip", {name, speed: road.speed_kmh.toFixed(0),
      free: road.free_flow_kmh.toFixed(0), congestion: road.congestion.toFixed(2)})};
  }
  if (layer.id === "live-vehicles") {
    const when = object.live ? lt("vehicle_live", {time: new Date(object.observed_at).toLocaleTimeString()})
      : lt("vehicle_stored");
    return {text: lt("vehicle_tooltip", {name: object.name || object.id, status: object.status || "", when})};
  }
  return null;
}

// --- drawing what changed ------------------------------------------------------------------

function scheduleDraw() {
  if (live.frame) return;
  live.frame = requestAnimationFrame(() => {
    live.frame = 0;
    const applied = live.ready;
    const snapshots = live.snapshots;
    live.ready = 0;
    live.snapshots = 0;
    if (live.alertsChanged) drawAlerts();
    render();
    counts.liveApplied += applied;
    counts.liveSnapshots += snapshots;
  });
}

function received(kind, handler, text) {
  counts.liveReceived += 1;
  let done;
  try {
    done = Promise.resolve(handler(JSON.parse(text)));
  } catch (error) {
    done = Promise.reject(error);
  }
  done.catch((error) => console.warn(`live ${kind} event not applied:`, error, text))
    .finally(() => { live.ready += 1; scheduleDraw(); });
}

// --- roads: congestion ---------------------------------------------------------------------

function roadRecord(id) {
  let road = live.roads.get(id);
  if (!road) {
    road = {id, feature: null, congestion: null, speed_kmh: null, free_flow_kmh: null,
      observed_at: -Infinity, stale: false, seq: -1, missing: false};
    live.roads.set(id, road);
  }
  return road;
}

function setSpeed(road, values, seq) {
  road.speed_kmh = values.speed_kmh ?? null;
  road.free_flow_kmh = values.free_flow_kmh ?? road.free_flow_kmh;
  road.congestion = values.congestion ?? null;
  road.observed_at = timeOf(values.observed_at);
  road.stale = road.congestion !== null && isStale(road.observed_at);
  road.seq = seq;
  live.speedVersion += 1;
}

function clearSpeed(road) {
  // no live speed any more (expired while the page was not told): grey
  road.speed_kmh = null;
  road.congestion = null;
  road.stale = false;
  road.observed_at = -Infinity;
  live.speedVersion += 1;
}

function isStale(observedAt) {
  return observedAt + state.config.live.stale_s * 1000 <= serverNow();
}

function addRoadFeatures(features) {
  let added = false;
  for (const feature of features) {
    const road = roadRecord(String(feature.id));
    if (road.feature) continue;
    road.feature = {type: "Feature", id: road.id, geometry: feature.geometry,
      properties: {name: feature.properties?.name, class: feature.properties?.class}};
    added = true;
  }
  if (added) {
    // a new data object: deck.gl builds the lines again (only when a road is added)
    live.roadData = {type: "FeatureCollection", features: [...live.roads.values()]
      .filter((r) => r.feature).map((r) => r.feature)};
  }
}

function roadGeometry(id) {
  // the geometries of roads not drawn yet, asked for together (a stream delivers each event
  // in a task of its own: those of the next few milliseconds go in one request)
  if (!live.roadBatch) {
    const batch = {ids: new Set()};
    live.roadBatch = batch;
    batch.promise = new Promise((resolve) => { setTimeout(resolve, ROAD_BATCH_MS); }).then(async () => {
      live.roadBatch = null;
      const ids = [...batch.ids];
      const chunks = [];
      for (let i = 0; i < ids.length; i += ROADS_PER_REQUEST) chunks.push(ids.slice(i, i + ROADS_PER_REQUEST));
      await Promise.all(chunks.map(async (chunk) => {
        const listed = chunk.map((i) => `'${i.replace(/'/g, "''")}'`).join(",");
        const features = await allItems("roads", `filter=${encodeURIComponent(`id IN (${listed})`)}`);
        addRoadFeatures(features);
      }));
      for (const i of ids) {
        const road = live.roads.get(i);
        if (road && !road.feature) road.missing = true;  // no current road: not asked again
      }
    });
  }
  live.roadBatch.ids.add(id);
  return live.roadBatch.promise;
}

function onSpeed(event) {
  counts.liveSpeeds += 1;
  const road = roadRecord(String(event.road));
  const at = timeOf(event.observed_at);
  // a road's live speed only moves forward (an expiry carries the time of what expired)
  if (at < road.observed_at) return null;
  setSpeed(road, event, ++live.seq);
  return road.feature || road.missing ? null : roadGeometry(road.id);
}

async function congestionSnapshot(since) {
  const layer = state.config.live.congestion;
  if (!layer || !readable(layer)) return;
  const features = await allItems(layer);
  addRoadFeatures(features);
  const present = new Set();
  for (const feature of features) {
    const road = roadRecord(String(feature.id));
    present.add(road.id);
    if (road.seq > since) continue;  // an event since the snapshot was asked for is newer
    setSpeed(road, feature.properties, road.seq);
  }
  for (const road of live.roads.values()) {
    // gone from the layer (expired) while the stream was down, and no event since
    if (!present.has(road.id) && road.seq <= since && road.congestion !== null) clearSpeed(road);
  }
}

// --- vehicles --------------------------------------------------------------------------------

function vehicleRecord(id, props = {}, stored = null) {
  let vehicle = live.vehicles.get(id);
  if (!vehicle) {
    vehicle = {id, name: props.name || id, kind: props.kind || "vehicle", status: props.status,
      stored, position: stored, drawn: stored, from: stored, start: null, live: false,
      observed_at: -Infinity, seq: -1};
    live.vehicles.set(id, vehicle);
    live.vehicleData = [...live.vehicles.values()].filter((v) => v.position);
  }
  return vehicle;
}

function moveVehicle(vehicle, position, isLive, at, seq) {
  const first = !vehicle.position;
  vehicle.position = position;
  vehicle.live = isLive;
  vehicle.observed_at = at;
  vehicle.seq = seq;
  if (first) {
    vehicle.drawn = position;
    live.vehicleData = [...live.vehicles.values()].filter((v) => v.position);
  } else if (reducedMotion) {
    vehicle.drawn = position;
  } else {
    vehicle.from = vehicle.drawn;
    vehicle.start = performance.now();
    animateVehicles();
  }
  live.vehicleVersion += 1;
}

function animateVehicles() {
  // each moved vehicle glides from where it is drawn to its position (ease in and out)
  if (live.animating) return;
  live.animating = true;
  const step = (now) => {
    let moving = false;
    for (const v of live.vehicles.values()) {
      if (v.start === null) continue;
      const k = Math.min(1, Math.max(0, (now - v.start) / MOVE_MS));
      const e = k < 0.5 ? 2 * k * k : 1 - ((-2 * k + 2) ** 2) / 2;
      v.drawn = [v.from[0] + (v.position[0] - v.from[0]) * e, v.from[1] + (v.position[1] - v.from[1]) * e];
      if (k < 1) moving = true;
      else { v.start = null; v.drawn = v.position; }
    }
    live.vehicleVersion += 1;
    render();
    if (moving) requestAnimationFrame(step);
    else live.animating = false;
  };
  requestAnimationFrame(step);
}

function onVehicle(event) {
  counts.liveVehicles += 1;
  const vehicle = vehicleRecord(String(event.resource));
  const at = timeOf(event.observed_at);
  if (at < vehicle.observed_at) return;  // an older position than the one drawn
  if (event.expired) {
    // back to its stored position (the one the event gives, else the one the page has)
    const stored = event.lon === null || event.lon === undefined ? vehicle.stored : [event.lon, event.lat];
    if (stored) moveVehicle(vehicle, stored, false, at, ++live.seq);
    return;
  }
  moveVehicle(vehicle, [event.lon, event.lat], true, at, ++live.seq);
}

async function storedVehicles() {
  // the vehicles of the resources layer where they are stored (once: they are drawn here)
  if (live.storedVehicles || !state.config.tilesets.resources || !readable("resources")) return;
  const features = await allItems("resources", `filter=${encodeURIComponent("kind = 'vehicle'")}`);
  live.storedVehicles = true;
  for (const f of features) {
    if (f.geometry?.type !== "Point") continue;
    const stored = f.geometry.coordinates.slice(0, 2);
    const vehicle = vehicleRecord(String(f.id), f.properties, stored);
    Object.assign(vehicle, {stored, name: f.properties.name || vehicle.id, status: f.properties.status});
    if (!vehicle.position) moveVehicle(vehicle, stored, false, -Infinity, vehicle.seq);
  }
  live.vehicleVersion += 1;
}

async function vehicleSnapshot(since) {
  const response = await apiFetch("live/latest?layer=resources");
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  const date = Date.parse(response.headers.get("date"));
  if (Number.isFinite(date)) live.clockOffsetMs = date - Date.now();  // the server's clock
  for (const row of body.observations) {
    const vehicle = live.vehicles.get(String(row.feature_id));
    const point = row.result;
    if (!vehicle || vehicle.seq > since || point?.type !== "Point") continue;
    const at = timeOf(row.phenomenon_time);
    if (at < vehicle.observed_at || isStale(at)) continue;
    moveVehicle(vehicle, point.coordinates.slice(0, 2), true, at, vehicle.seq);
  }
}

function checkStale() {
  // what nothing has refreshed for the stale time goes grey (roads) or home (vehicles), also
  // while the stream is down; the server says so too when it expires them
  let roads = false;
  for (const road of live.roads.values()) {
    if (!road.stale && road.congestion !== null && isStale(road.observed_at)) {
      road.stale = true;
      roads = true;
    }
  }
  if (roads) live.speedVersion += 1;
  let vehicles = false;
  for (const v of live.vehicles.values()) {
    if (v.live && isStale(v.observed_at) && v.stored) {
      moveVehicle(v, v.stored, false, v.observed_at, v.seq);
      vehicles = true;
    }
  }
  if (roads || vehicles) scheduleDraw();
}

// --- alerts ----------------------------------------------------------------------------------

function onAlert(event) {
  counts.liveAlerts += 1;
  setAlert(event, ++live.seq);
}

function setAlert(alert, seq) {
  const id = Number(alert.id);
  if (alert.state === "resolved") {
    live.alerts.delete(id);
    if (live.focus?.id === id) live.focus = null;
  } else {
    live.alerts.set(id, {...alert, id, seq});
  }
  live.alertsChanged = true;
}

async function alertSnapshot(since) {
  const body = await json("live/alerts?state=open&limit=1000");
  const open = new Set();
  for (const alert of body.alerts) {
    open.add(Number(alert.id));
    const known = live.alerts.get(Number(alert.id));
    if (!known || known.seq <= since) setAlert(alert, known ? known.seq : -1);
  }
  for (const [id, alert] of live.alerts) {
    if (!open.has(id) && alert.seq <= since) setAlert({...alert, state: "resolved"}, alert.seq);
  }
}

function impactText(impact) {
  if (!impact) return "";
  if (impact.error) return lt("impact_error", {error: impact.error});
  const s = impact.summary || {};
  switch (impact.kind) {
    case "closures":
      return lt("impact_closures", {roads: impact.road_ids?.length ?? 0, metres: impact.close_m,
        closed: impact.already_closed?.length ?? 0});
    case "isolation":
    case "outage":
      return lt(`impact_${impact.kind}`, {operate: (impact.operate || []).join(", ") || "—",
        buildings: s.buildings ?? 0, population: s.population ?? 0});
    case "camera_coverage":
      return lt("impact_camera_coverage", {metres: impact.lost_length_m ?? 0});
    default:
      return "";
  }
}

function drawAlerts() {
  live.alertsChanged = false;
  const alerts = [...live.alerts.values()].sort((a, b) => (b.raised_at || "").localeCompare(a.raised_at || "") || b.id - a.id);
  el("alerts-count").textContent = String(alerts.length);
  el("alerts").classList.toggle("has-alerts", alerts.length > 0);
  el("alerts-list").innerHTML = alerts.length ? alerts.map((a) => {
    const raised = a.raised_at ? new Date(a.raised_at) : null;
    const acked = a.state === "acknowledged";
    const error = live.errors[a.id];
    return `<li class="alert severity-${esc(a.severity)} state-${esc(a.state)}${live.focus?.id === a.id ? " focused" : ""}" data-alert="${a.id}" tabindex="0">
<div class="alert-head"><span class="severity">${esc(lt(`severity_${a.severity}`))}</span>
<time datetime="${esc(a.raised_at)}" title="${esc(a.raised_at)}">${raised ? esc(raised.toLocaleTimeString()) : ""}</time></div>
<div class="alert-message">${esc(a.message)}</div>
<div class="alert-asset">${a.layer ? esc(lt("asset", {layer: a.layer, id: a.feature_id})) : esc(a.datastream_name || "")}</div>
${live.focus?.id === a.id && impactText(a.impact) ? `<div class="alert-impact">${esc(impactText(a.impact))}</div>` : ""}
<div class="alert-actions">${acked ? `<span class="acknowledged">${esc(lt("acknowledged_by", {by: a.acknowledged_by}))}</span>`
    : `<button type="button" data-acknowledge="${a.id}">${esc(lt("acknowledge"))}</button>`}${error ? ` <span class="error">${esc(error)}</span>` : ""}</div></li>`;
  }).join("") : "";
  const open = el("alerts").classList.contains("open");
  el("alerts-toggle").title = lt(!alerts.length ? "alerts_none" : open ? "alerts_hide" : "alerts_show");
}

function middleOf(geometry) {
  // the middle of a GeoJSON geometry's extent, or null
  const box = boundsOf(geometry);
  return box && [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2];
}

async function focusAlert(id) {
  // look at the alert and draw its impact: its geometry if it has one, else its asset
  const alert = live.alerts.get(id);
  if (!alert) return;
  const at = alert.lon === null || alert.lon === undefined ? middleOf(alert.impact?.geometry) : [alert.lon, alert.lat];
  live.focus = {id, kind: null, at, data: null};
  live.alertsChanged = true;
  if (at) lookAt({longitude: at[0], latitude: at[1], zoom: Math.max(state.view.zoom, FOCUS_ZOOM)});
  let kind = "point";
  let features = [];
  try {
    if (alert.impact?.geometry) {
      kind = "impact";
      features = [{type: "Feature", geometry: alert.impact.geometry, properties: {}}];
    } else if (alert.layer && alert.feature_id !== null && state.config.tilesets[alert.layer] && readable(alert.layer)) {
      const feature = await json(`collections/${alert.layer}/items/${encodeURIComponent(alert.feature_id)}`);
      kind = "asset";
      features = [feature];
    }
  } catch (error) {
    console.warn(`the asset of alert ${id} could not be read:`, error);
  }
  if (live.focus?.id !== id) return;  // another alert was clicked meanwhile
  live.focus = {id, kind, at, data: {type: "FeatureCollection", features}};
  drawAlerts();
  render();
  counts.focused += 1;
}

async function acknowledgeAlert(id, button) {
  button.disabled = true;
  const by = el("alerts-operator").value.trim() || lt("operator_default");
  try {
    const body = await json(`live/alerts/${id}/acknowledge`, {method: "POST", scenario: null,  // live, not a scenario's
      headers: {"content-type": "application/json"}, body: JSON.stringify({by})});
    delete live.errors[id];
    setAlert(body, ++live.seq);
    counts.acks += 1;
  } catch (error) {
    live.errors[id] = error.message;
    live.alertsChanged = true;
    counts.ackErrors += 1;
  }
  drawAlerts();
}

// --- the stream --------------------------------------------------------------------------------

function setLiveStatus(status) {
  live.status = status;
  const badge = el("live-status");
  badge.className = `live-status ${status}`;
  badge.textContent = lt(`status_${status}`);
  badge.title = lt("status_title", {status: lt(`status_${status}`)});
}

async function allItems(collection, query = "") {
  // every feature of a collection (that the query selects), page by page
  const features = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await json(`collections/${collection}/items?limit=${PAGE}&offset=${offset}${query ? `&${query}` : ""}`);
    features.push(...page.features);
    if (!page.features.length || features.length >= page.numberMatched) return features;
  }
}

async function snapshot() {
  // the state that holds now; an event that arrives meanwhile is newer and wins
  const since = live.seq;
  const parts = await Promise.allSettled([
    congestionSnapshot(since), alertSnapshot(since),
    storedVehicles().then(() => vehicleSnapshot(since)),
  ]);
  for (const part of parts) if (part.status === "rejected") console.warn("live state not read:", part.reason);
  live.snapshots += 1;  // counted once drawn
  scheduleDraw();
}

function connectLive() {
  // the live feeds are classified (general): a caller who may not read them gets no stream
  if (!readable("observations")) {
    setLiveStatus("offline");
    return;
  }
  // EventSource sends no headers: the token goes as the access_token parameter (RFC 6750 §2.3)
  const token = auth.token ? `&access_token=${encodeURIComponent(auth.token)}` : "";
  const source = new EventSource(`live/events?types=${LIVE_TYPES.join(",")}${token}`);
  live.source = source;
  setLiveStatus("reconnecting");
  source.addEventListener("open", () => {
    if (live.source !== source) return;
    counts.liveConnects += 1;
    live.retryMs = RETRY_MS[0];
    setLiveStatus("connected");
    snapshot();
  });
  source.addEventListener("error", () => {
    if (live.source !== source) return;  // closed for a new caller
    if (source.readyState === EventSource.CLOSED) {
      // the browser gave up (the server answered with an error, perhaps a 401 for a token
      // that expired: the session is checked): open it again later
      setLiveStatus("offline");
      live.source = null;
      checkSession();
      live.retryTimer = setTimeout(connectLive, live.retryMs);
      live.retryMs = Math.min(live.retryMs * 2, RETRY_MS[1]);
    } else {
      setLiveStatus("reconnecting");  // the browser reconnects by itself
    }
  });
  const handlers = {speed: onSpeed, vehicle: onVehicle, alert: onAlert};
  for (const kind of LIVE_TYPES) {
    source.addEventListener(kind, (message) => {
      if (live.source === source) received(kind, handlers[kind], message.data);
    });
  }
}

function reconnectLive() {
  // the caller changed: what it may see is read again, and the stream opened with its token
  if (!live.started) return;
  if (live.source) live.source.close();
  live.source = null;
  clearTimeout(live.retryTimer);
  live.retryMs = RETRY_MS[0];
  live.alerts.clear();
  live.alertsChanged = true;
  live.focus = null;
  live.vehicles.clear();
  live.vehicleData = [];
  live.vehicleVersion += 1;
  live.storedVehicles = false;
  drawAlerts();
  connectLive();
}

function buildLivePanel() {
  el("title").insertAdjacentHTML("afterend", `<div id="live-status" class="live-status offline"></div>`);
  setLiveStatus("offline");
  const legend = [...CONGESTION, NO_SPEED].map((c) => `<li><span class="swatch" style="background: rgb(${c.color.slice(0, 3).join(",")})"></span><span data-i18n="live:level_${c.level}">${esc(lt(`level_${c.level}`))}</span></li>`).join("");
  el("layers").insertAdjacentHTML("afterbegin", `<fieldset id="live-layers"><legend data-i18n="live:live">${esc(lt("live"))}</legend>
<label><input type="checkbox" data-live="traffic" checked> <span data-i18n="live:traffic">${esc(lt("traffic"))}</span></label>
<ul class="congestion-legend" data-i18n-title="live:congestion_title" title="${esc(lt("congestion_title"))}">${legend}</ul>
<label><input type="checkbox" data-live="vehicles" checked> <span data-i18n="live:vehicles">${esc(lt("vehicles"))}</span></label></fieldset>`);
  el("live-layers").addEventListener("change", (event) => {
    const which = event.target.dataset.live;
    if (which) { live.show[which] = event.target.checked; render(); }
  });
  document.body.insertAdjacentHTML("beforeend", `<aside id="alerts" class="open">
<button type="button" id="alerts-toggle" aria-expanded="true" title="${esc(lt("alerts_hide"))}"><span data-i18n="live:alerts">${esc(lt("alerts"))}</span> <span id="alerts-count">0</span></button>
<div id="alerts-body"><label class="operator"><span data-i18n="live:operator">${esc(lt("operator"))}</span> <input id="alerts-operator" value="${esc(lt("operator_default"))}"></label>
<ol id="alerts-list"></ol></div></aside>`);
  el("alerts-toggle").addEventListener("click", () => {
    const open = el("alerts").classList.toggle("open");
    el("alerts-toggle").setAttribute("aria-expanded", String(open));
    drawAlerts();
  });
  el("alerts-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-acknowledge]");
    if (button) { acknowledgeAlert(Number(button.dataset.acknowledge), button); return; }
    const row = event.target.closest("li[data-alert]");
    if (row) focusAlert(Number(row.dataset.alert));
  });
  el("alerts-list").addEventListener("keydown", (event) => {
    const row = event.target.closest("li[data-alert]");
    if (row && event.key === "Enter" && event.target === row) focusAlert(Number(row.dataset.alert));
  });
  drawAlerts();
}

function startLive() {
  if (!state.config.features.live) return;  // no push stream served: the badge says offline
  live.started = true;
  connectLive();
  setInterval(checkStale, STALE_CHECK_MS);
}

function liveState() {
  // the live state as the page holds it, for whoever checks it (a test)
  const roads = {};
  for (const r of live.roads.values()) {
    roads[r.id] = {congestion: r.congestion, speed_kmh: r.speed_kmh, level: levelOf(r).level,
      color: levelOf(r).color, drawn: Boolean(r.feature) && live.show.traffic, stale: r.stale};
  }
  const vehicles = {};
  for (const v of live.vehicles.values()) {
    vehicles[v.id] = {position: v.position, drawn: v.drawn, live: v.live, stored: v.stored};
  }
  const alerts = [...live.alerts.values()].map((a) => ({id: a.id, state: a.state, severity: a.severity,
    acknowledged_by: a.acknowledged_by, lon: a.lon, lat: a.lat}));
  const focus = live.focus && {id: live.focus.id, kind: live.focus.kind, at: live.focus.at,
    features: live.focus.data ? live.focus.data.features.length : 0};
  return {status: live.status, roads, vehicles, alerts, focus};
}

function drawCredits() {
  // exactly the sources of what is loaded and readable (layers/sources.py), as text
  el("attribution").innerHTML = state.config.credits.map((c) => {
    const notes = [c.licence && `Licence: ${c.licence}`, `Sources: ${c.sources.join(", ")}`, ...c.descriptions];
    return `<span title="${esc(notes.filter(Boolean).join(". "))}">${esc(c.attribution)}</span>`;
  }).join(" · ");
}

function openingView(view) {
  // the data's extent (viewer/config.json) fitted to the part of this window the panel leaves
  // free (chrome.js fitView); the server's fit otherwise
  const {bounds, max_zoom: maxZoom, pitch, bearing} = view;
  const fitted = bounds ? fitView(bounds, {maxZoom, pitch, bearing}) : null;
  return fitted || {longitude: view.longitude, latitude: view.latitude, zoom: view.zoom, pitch, bearing};
}

async function start() {
  // read as anonymous (a saved token is checked by applyAccess, which reads the extents again);
  // auth/me asked at once beside it, and the map (its WebGL device, made asynchronously) made
  // meanwhile: the three overlap instead of following each other
  openingMe = {token: savedSession()?.token ?? null};
  openingMe.response = fetchMe("", openingMe.token).catch(() => null);
  const reading = fetch("viewer/config.json");
  state.view = {longitude: 0, latitude: 0, zoom: 1, pitch: 0, bearing: 0};
  let firstDraw;
  const firstFrame = new Promise((resolve) => { firstDraw = resolve; });
  state.deck = new Deck({
    parent: el("map"),
    viewState: state.view,  // set once the config says where the data is
    views: MAP_VIEW,  // one that sees below the ground (underground.js)
    controller: {doubleClickZoom: false},  // a double-click is two clicks of the tool in use
    layers: [],
    // hover shows the live roads' and vehicles' state only: nothing follows the pointer over
    // districts or the map (a click answers in the panel); picks draw what they are for
    getTooltip: ({object, layer}) => (object && layer ? liveTooltip(object, layer) : null),
    layerFilter: pickFilter,
    onViewStateChange: ({viewState}) => setView(viewState),
    onInteractionStateChange: (value) => { interaction = value; },
    onBeforeRender: () => {
      frameStart = counts.changes;
      loadedAtStart = layersLoaded();
    },
    onAfterRender: () => {
      counts.frames += 1;
      const same = frameStart === counts.changes;
      drawn = {changes: frameStart, loadedBefore: same && loadedAtStart, loadedAfter: same && layersLoaded()};
      if (state.config) viewDrawn();  // the scale bar, north arrow and legend follow the view
      compareDrawn();  // the compared map draws after a change too
      firstDraw();
    },
    onError: (error) => console.error(error),
  });
  const config = await reading;
  if (!config.ok) throw new Error(await problemDetail(config));
  state.config = await config.json();
  for (const style of state.config.styles) state.visible[style.layer] = style.visible;
  // the title, fold and language switch, legend, scale, north arrow, search, time and export
  initChrome({state, el, json, render, setView, shownLayer, readable});
  // A and B, swipe or side by side, and the figures of both
  initCompare({state, el, json, render, setView, counts, mainDrawn: () => drawn,
    mayRead: () => (auth.me ? readable("scenarios") : null)});  // null: the caller not known yet
  // making and editing a scenario on the map
  initScenarioEdit({state, el, render, fetch: apiFetch, me: () => auth.me,
    hitLayers: (info) => hitsAt(state.deck, info, layerOf)});
  loadSession();
  buildPanel();
  buildLivePanel();
  buildSignIn();
  drawCredits();
  translatePage();  // the page's own HTML (data-i18n) in the reader's language
  onLanguageChange(() => {
    // what the page wrote itself, in the new language (data-i18n text is translated already)
    drawPanelText();
    drawLayerList();
    drawSignIn();
    setLiveStatus(live.status);
    drawAlerts();
    drawCompare();
    drawScenarioEdit();
  });
  setView(openingView(state.config.view));
  listenForClicks(el("map"));
  // who calls, and what it may read: the panel, the map, the cones
  await applyAccess(auth.session, {configRead: true});
  await firstFrame;
  startLive();  // once the city is drawn: the stream holds one of the page's connections
  return state;
}

window.twinViewer = {
  state,
  answers: answersState,
  ready: start(),
  project: (lon, lat) => state.deck.getViewports()[0].project([lon, lat]),
  lookAt,
  settled,
  status,
  events: () => ({...counts}),
  live: liveState,
  auth: authState,
  chrome: chromeState,
  section: sectionState,
  compare: compareState,
  setCompare,
  projectB,
  scenarioEdit: scenarioEditState,
  setScenarioAction,
};
