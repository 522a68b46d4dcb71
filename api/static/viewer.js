// The CityTwin viewer: deck.gl (pydeck's bundle, served by the API), the twin's own tiles and
// features, and the one-map, routing and incident endpoints. Nothing is fetched from outside.
// Layer styles come from twin/deck.py through viewer/config.json, so notebooks draw the same.
/* global deck */
const {Deck, MVTLayer, TileLayer, GeoJsonLayer, PathLayer} = deck;

const SURFACE = new Set(["basemap", "surface"]);
const GROUPS = {
  basemap: "Basemap", surface: "Buildings", underground: "Underground", grid: "Power grid",
  traffic: "Traffic", emergency: "Emergency", events: "Incidents and closures",
};
const MODES = {
  inspect: {label: "Inspect", needs: null, hint: "Click a feature for its attributes, or the map for what is here."},
  route: {label: "Route", needs: "route", hint: "Click the start, then the destination."},
  areas: {label: "Service areas", needs: "isochrones", hint: "Click a station: 4, 8 and 12 minutes."},
  incident: {label: "Incident", needs: "impact", hint: "Click where it happens: units, assets, closures."},
};

// made once: deck.gl compares props by identity, and a new loadOptions object reloads every tile
const LOAD_OPTIONS = {mvt: {workerUrl: new URL("viewer/mvt-worker.js", document.baseURI).href}};
const MATERIAL = {ambient: 0.5, diffuse: 0.6, shininess: 16};
// emergency resources: a letter for the kind on the kind's colour, a ring for the status
const LETTERS = {fire_station: "F", hospital: "H", police: "P", shelter: "S", depot: "D", vehicle: "V"};
const STATUS = {available: [0, 150, 60, 255], busy: [220, 0, 0, 255]};

const state = {
  config: null, visible: {}, surface: 1.0, mode: "inspect", points: [],
  overlays: {route: null, areas: null, units: null, closures: null, marks: []},
  cones: null, selected: null, view: null,
};
const el = (id) => document.getElementById(id);
// What the viewer has done, for whoever waits on it (a test, a benchmark) instead of sleeping:
// frames drawn; presses and releases on the map (counted as the DOM delivers them, so none goes
// unseen); releases taken as clicks or as drags; clicks handled (picked, asked, answered or
// superseded); answers written to the panel and the click the panel answers; and `changes`,
// every change of layers, view or tiles, which a frame must follow before the map is settled.
const counts = {
  frames: 0, presses: 0, releases: 0, clicks: 0, drags: 0, cancelled: 0, handled: 0,
  answers: 0, shown: 0, changes: 0,
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
    getElevation: (f) => Number(f.properties?.[style.extrude]) || 10,
    material: MATERIAL,
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

function featureLayer(style) {
  // GeoJSON per tile from the OGC API: full attributes, 3D coordinates, lazy per view
  const common = {id: style.layer, visible: Boolean(state.visible[style.layer]), minZoom: style.minzoom};
  return new TileLayer({
    ...common,
    ...styleProps(style),
    maxZoom: 18,
    tileSize: 256,
    onTileLoad: changed,  // a tile's data in: the map settles once a frame has drawn it
    onTileError: changed,
    getTileData: async ({bbox, signal}) => {
      const box = [bbox.west, bbox.south, bbox.east, bbox.north].map((v) => v.toFixed(6)).join(",");
      const response = await fetch(`collections/${style.layer}/items?bbox=${box}&limit=10000`, {signal});
      const collection = await response.json();
      return style.depth ? sinkLines(collection, style) : collection;
    },
    renderSubLayers: (props) => new GeoJsonLayer({...props, ...styleProps(style), data: props.data}),
  });
}

function mapLayer(styles) {
  // every shown tile layer in one one-map vector tile per z/x/y (a layer per collection);
  // each feature is drawn by its layer's style (loaders.gl puts the layer in `layerName`)
  const shown = styles.filter((s) => state.visible[s.layer]);
  const byLayer = Object.fromEntries(shown.map((s) => [s.layer, s]));
  const pick = (f) => byLayer[f.properties.layerName] || shown[0];
  const factor = (s) => (SURFACE.has(s.group) ? state.surface : 1.0);
  // the one-map tileset of the shown layers: tiles only inside its limits (the layers' data,
  // from their minzoom), overzoomed past its maxzoom; the server answers 404 outside them
  const sets = shown.map((s) => state.config.tilesets[s.layer]).filter((t) => t && t.bounds);
  const extent = sets.length ? [
    Math.min(...sets.map((t) => t.bounds[0])), Math.min(...sets.map((t) => t.bounds[1])),
    Math.max(...sets.map((t) => t.bounds[2])), Math.max(...sets.map((t) => t.bounds[3])),
  ] : null;
  return new MVTLayer({
    id: "map",
    data: `map/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=${shown.map((s) => s.layer).join(",")}`,
    visible: extent !== null,
    extent: extent || [0, 0, 0, 0],
    minZoom: sets.length ? Math.min(...sets.map((t) => t.minzoom)) : 0,
    maxZoom: sets.length ? Math.max(...sets.map((t) => t.maxzoom)) : 15,
    binary: false,
    pickable: true,
    stroked: true,
    filled: true,
    extruded: true,
    getFillColor: (f) => withAlpha(colorOf(pick(f), f.properties), factor(pick(f))),
    getLineColor: (f) => (f.properties.layerName === "resources"
      ? STATUS[f.properties.status] || [90, 90, 90, 255]
      : withAlpha(colorOf(pick(f), f.properties), pick(f).shape === "area" ? Math.min(1, factor(pick(f)) * 1.5) : factor(pick(f)))),
    getLineWidth: (f) => (f.properties.layerName === "resources" ? 3 : pick(f).width_m),
    lineWidthMinPixels: 1,
    pointType: "circle+text",
    getText: (f) => (f.properties.layerName === "resources" ? LETTERS[f.properties.kind] || "?" : ""),
    getTextColor: [255, 255, 255, 255],
    getTextSize: 10,
    textFontWeight: "bold",
    getPointRadius: (f) => (f.properties.layerName === "resources" ? 30 : pick(f).radius_m),
    pointRadiusMinPixels: 3,
    pointRadiusMaxPixels: 40,
    getElevation: (f) => (pick(f).extrude ? Number(f.properties[pick(f).extrude]) || 10 : 0),
    material: MATERIAL,
    updateTriggers: {getFillColor: [state.surface], getLineColor: [state.surface]},
    loadOptions: LOAD_OPTIONS,  // loaders.gl's MVT worker, served by the twin (not a CDN)
    onTileLoad: changed,
    onTileError: changed,
  });
}

function overlayLayers() {
  const out = [];
  const o = state.overlays;
  if (state.cones && state.visible.cameras) {
    out.push(new GeoJsonLayer({id: "camera-cones", data: state.cones, pickable: false, stroked: true,
      filled: true, getFillColor: [90, 40, 140, 60], getLineColor: [90, 40, 140, 200], getLineWidth: 0.5}));
  }
  if (o.areas) {
    out.push(new GeoJsonLayer({id: "service-areas", data: o.areas, pickable: false, stroked: true, filled: true,
      getFillColor: (f) => [[0, 150, 80, 70], [240, 180, 0, 60], [220, 60, 40, 50]][Math.min(2, o.areas.features.indexOf(f))],
      getLineColor: [40, 40, 40, 160], getLineWidth: 2}));
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
  if (o.marks.length) {
    out.push(new GeoJsonLayer({id: "marks", data: {type: "FeatureCollection", features: o.marks.map((c) => (
      {type: "Feature", geometry: {type: "Point", coordinates: c}, properties: {}}))},
      getFillColor: [0, 0, 0, 255], getPointRadius: 6, pointRadiusMinPixels: 5}));
  }
  return out;
}

function render() {
  const tiles = state.config.styles.filter((s) => s.source === "tiles");
  const features = state.config.styles.filter((s) => s.source === "features").map(featureLayer);
  changed();
  state.deck.setProps({layers: [mapLayer(tiles), ...features, ...overlayLayers()]});
}

function layersLoaded() {
  return state.deck.props.layers.filter((l) => l.props.visible).every((l) => l.isLoaded);
}

function settled() {
  // every visible layer loaded, a whole frame drawn with them after the last change (of layers,
  // view or tiles), nothing waiting to be drawn, and no drag, zoom or view transition under way
  const deckgl = state.deck;
  if (!deckgl || !deckgl.isInitialized) return false;
  const moving = ["isDragging", "isPanning", "isRotating", "isZooming", "inTransition"]
    .some((k) => interaction[k]);
  return drawn.changes === counts.changes && drawn.loadedBefore && drawn.loadedAfter
    && layersLoaded() && !moving && !deckgl.needsRedraw({clearRedrawFlags: false})
    && !deckgl.layerManager?.needsUpdate();
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
  };
}

function setView(view) {
  // the view is controlled here (deck.gl's `viewState`), so a view asked for is always applied
  state.view = view;
  changed();
  state.deck.setProps({viewState: view});
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
  const rows = Object.entries(props)
    .filter(([k, v]) => v !== null && v !== undefined && !k.startsWith("_") && !hidden.has(k) && typeof v !== "object")
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("");
  return `<h3>${esc(layer)}</h3><table class="attributes">${rows}</table>`;
}

async function json(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

async function whatIsHere(lon, lat, say) {
  const body = await json(`onemap/around?lon=${lon}&lat=${lat}&radius_m=30&limit=3`);
  const found = Object.entries(body.layers).filter(([, fc]) => fc.numberMatched > 0);
  const rows = found.map(([layer, fc]) => {
    const first = fc.features[0]?.properties || {};
    const label = first.name || first.kind || first.class || first.network || first.use || first.id || "";
    return `<tr><th>${esc(layer)}</th><td>${fc.numberMatched}</td><td>${esc(label)}</td></tr>`;
  }).join("");
  say(`<h3>Within 30 m</h3><table class="attributes">${rows || "<tr><td>nothing</td></tr>"}</table>`);
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
  const say = (html) => answer(mine, (result) => { result.innerHTML = html; });
  const [lon, lat] = info.coordinate.map((v) => Number(v.toFixed(6)));
  const o = state.overlays;
  try {
    if (state.mode === "inspect") {
      // what stands here, top first; district areas are the ground, not a feature
      const hits = state.deck.pickMultipleObjects({x: info.x, y: info.y, radius: 3, depth: 8});
      const styleOf = (hit) => state.config.styles.find((x) => x.layer === layerOf(hit));
      const hit = hits.find((h) => styleOf(h) && state.visible[layerOf(h)]
        && !(styleOf(h).group === "basemap" && styleOf(h).shape === "area"));
      if (hit) {
        const layer = layerOf(hit);
        const style = styleOf(hit);
        say(attributes(hit.object, layer, style.source === "tiles"));
        if (style.source === "tiles" && state.config.features.onemap) {
          // the store's ids of what stands here, from the one-map endpoint
          const body = await json(`onemap/around?lon=${lon}&lat=${lat}&radius_m=5&layers=${layer}&limit=5`);
          const ids = (body.layers[layer]?.features || []).map((f) => esc(f.properties.id));
          answer(mine, (result) => result.insertAdjacentHTML("beforeend", `<p class="ids">${ids.join("<br>")}</p>`));
        }
      } else if (state.config.features.onemap) {
        await whatIsHere(lon, lat, say);
      }
    } else if (state.mode === "route") {
      o.marks = state.points.length >= 2 ? [] : o.marks;
      state.points = state.points.length >= 2 ? [] : state.points;
      state.points.push([lon, lat]);
      o.marks = [...state.points];
      if (state.points.length === 2) {
        const [a, b] = state.points;
        const feature = await json(`routing/route?from=${a.join(",")}&to=${b.join(",")}&profile=emergency`);
        o.route = feature.geometry ? {type: "FeatureCollection", features: [feature]} : null;
        const p = feature.properties;
        say(p.reachable ? `<h3>Route</h3><p>${(p.duration_s / 60).toFixed(1)} min, ${(p.distance_m / 1000).toFixed(2)} km (emergency)</p>`
          : "<h3>Route</h3><p>No route between these points.</p>");
      } else {
        say("<p>Now click the destination.</p>");
      }
    } else if (state.mode === "areas") {
      o.areas = await json(`routing/isochrones?facilities=${lon},${lat}&breaks=4,8,12`);
      o.areas.features.sort((x, y) => x.properties.minutes - y.properties.minutes);
      say(`<h3>Service areas</h3><p>${o.areas.features.map((f) => `${f.properties.minutes} min: ${(f.properties.reached_length_m / 1000).toFixed(1)} km of road`).join("<br>")}</p>`);
    } else if (state.mode === "incident") {
      const kind = el("incident-kind").value;
      const body = await json("incidents/impact", {method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify({geometry: {type: "Point", coordinates: [lon, lat]}, kind, limit: 20})});
      o.units = body.units;
      o.marks = [[lon, lat]];
      o.closures = body.closures.geometry ? {type: "FeatureCollection", features: [{type: "Feature", geometry: body.closures.geometry, properties: {}}]} : null;
      const s = body.summary;
      const units = s.units.map((u) => `${esc(u.name || u.id)} (${esc(u.kind)}): ${(u.total_s / 60).toFixed(1)} min`).join("<br>");
      const assets = Object.entries(s.assets).filter(([, n]) => n).map(([k, n]) => `${esc(k)} ${n}`).join(", ");
      const utility = s.utility ? `<p>Utility: close ${s.utility.operate}, ${s.utility.buildings} buildings (${s.utility.population} people) lose supply.</p>` : "";
      say(`<h3>${esc(kind)}</h3><p>Within ${s.radius_m} m: ${assets || "nothing"}.</p>${utility}<p>${units || "No unit reaches it."}</p><p>${s.closures} roads to close.</p>`);
    }
  } catch (error) {
    say(`<p class="error">${esc(error.message)}</p>`);
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
  let press = null;
  const at = (event) => {
    const box = target.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  };
  target.addEventListener("pointerdown", (event) => {
    // a second finger while one is down: a pinch, not a click
    if (press && event.pointerId !== press.id) { press.multi = true; return; }
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

function buildPanel() {
  const groups = {};
  for (const style of state.config.styles) (groups[style.group] ||= []).push(style);
  const html = Object.entries(groups).map(([group, styles]) => `<fieldset><legend>${esc(GROUPS[group] || group)}</legend>${
    styles.map((s) => `<label><input type="checkbox" data-layer="${s.layer}" ${state.visible[s.layer] ? "checked" : ""}> ${esc(s.title)}</label>`).join("")}</fieldset>`).join("");
  el("layers").innerHTML = html;
  el("layers").addEventListener("change", (event) => {
    const layer = event.target.dataset.layer;
    if (layer) { state.visible[layer] = event.target.checked; render(); }
  });
  el("surface").addEventListener("input", (event) => {
    state.surface = Number(event.target.value) / 100;
    render();
  });
  const modes = Object.entries(MODES).filter(([, m]) => !m.needs || state.config.features[m.needs]);
  el("modes").innerHTML = modes.map(([key, m]) => `<button data-mode="${key}" class="${key === state.mode ? "on" : ""}">${m.label}</button>`).join("");
  el("modes").addEventListener("click", (event) => {
    const mode = event.target.dataset.mode;
    if (!mode) return;
    state.mode = mode;
    state.points = [];
    for (const b of el("modes").children) b.classList.toggle("on", b.dataset.mode === mode);
    el("hint").textContent = MODES[mode].hint;
    el("incident-options").hidden = mode !== "incident";
  });
  el("incident-kind").innerHTML = state.config.incident_kinds.map((k) => `<option>${esc(k)}</option>`).join("");
  el("hint").textContent = MODES[state.mode].hint;
}

async function start() {
  state.config = await json("viewer/config.json");
  document.title = state.config.title;
  el("title").textContent = state.config.title;
  for (const style of state.config.styles) state.visible[style.layer] = style.visible;
  buildPanel();
  state.view = {...state.config.view};
  let firstDraw;
  const firstFrame = new Promise((resolve) => { firstDraw = resolve; });
  state.deck = new Deck({
    parent: el("map"),
    viewState: state.view,
    controller: {doubleClickZoom: false},  // a double-click is two clicks of the tool in use
    layers: [],
    getTooltip: ({object, layer}) => object && layer && {text: `${object.properties?.layerName || layer.id}: ${object.properties?.name || object.properties?.kind || object.properties?.class || object.properties?.id || ""}`},
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
      firstDraw();
    },
    onError: (error) => console.error(error),
  });
  listenForClicks(el("map"));
  render();
  if (state.config.features.cameras) {
    json("cameras/coverage").then((body) => { state.cones = body.cones; render(); }).catch(() => {});
  }
  await firstFrame;
  return state;
}

window.twinViewer = {
  state,
  ready: start(),
  project: (lon, lat) => state.deck.getViewports()[0].project([lon, lat]),
  lookAt,
  settled,
  status,
  events: () => ({...counts}),
};
