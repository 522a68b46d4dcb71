// The Section tool: the classic pipeline section (profile) of a utility GIS. The user draws a
// line on the map (two or more clicks; a double-click on the last point, or Finish, ends it);
// POST utilities/section answers with the ground along it (from the DEM) and every pipe and
// buried cable crossing it (api/utilities.py); the panel draws them as SVG: the ground profile,
// each crossing as a circle at its depth, coloured by network (twin/deck.py NETWORK_COLORS, the
// APWA code), labelled with its id, diameter and depth, and lists them in a table. On the map:
// the line and where each pipe crosses it.
import {PathLayer, ScatterplotLayer} from "@deck.gl/layers";
import {t} from "./i18n.js";
import {metres} from "./answers.js";
import {valueName} from "./names.js";

const mt = (key, values = {}) => t(`map:${key}`, values);
// a click this close (CSS px) to the last point ends the line (the second click of a double-click)
const DOUBLE_PX = 6;
// the drawing, in SVG units (the panel is 280 px wide): size and margins
const W = 270;
const H = 300;
const M = {left: 34, right: 8, top: 140, bottom: 24};
const GREY = [120, 120, 120, 255];

const section = {
  points: [], pixels: [], finished: false, result: null, error: null, running: false,
  runs: 0, answers: 0, errors: 0, deps: null, listening: false,
};

const escape = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const rgb = (c) => `rgb(${c.slice(0, 3).join(",")})`;
const fixed = (v, digits) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v).toFixed(digits));

function colorOf(network) {
  const pipes = section.deps?.styles?.find((s) => s.layer === "pipelines");
  return pipes?.colors?.[String(network ?? "").toLowerCase()] || pipes?.color || GREY;
}

// a network's name as the legend says it (core:value.network.<network>)
const networkName = (network) => valueName("network", network ?? "");

/** The tool's state, for whoever checks it (a test). */
export function sectionState() {
  return {
    points: section.points.length, finished: section.finished, running: section.running,
    runs: section.runs, answers: section.answers, errors: section.errors, error: section.error,
    length_m: section.result?.length_m ?? null,
    crossings: section.result ? section.result.crossings.map((c) => c.id) : null,
  };
}

/** Forget the line drawn and its section (the panel's Clear, a new line). */
export function clearSection() {
  section.points = [];
  section.pixels = [];
  section.finished = false;
  section.result = null;
  section.error = null;
}

function progressHtml() {
  const n = section.points.length;
  return `<h3>${escape(mt("section.title"))}</h3>
<p>${escape(mt(n < 2 ? "section.more" : "section.points", {count: n}))}</p>
<p class="section-buttons"><button type="button" data-section="finish"${n < 2 ? " disabled" : ""}>${escape(mt("section.finish"))}</button>
<button type="button" data-section="clear">${escape(mt("section.clear"))}</button></p>`;
}

function label(c) {
  const parts = [c.id];
  if (fixed(c.diameter_mm, 0) !== null) parts.push(mt("section.diameter", {mm: fixed(c.diameter_mm, 0)}));
  if (fixed(c.depth_m, 2) !== null) parts.push(mt("section.depth", {m: fixed(c.depth_m, 2)}));
  return parts.join(" · ");
}

/** The section as SVG: ground profile, pipes as circles at their depth, labels above. */
export function sectionSvg(body) {
  const ground = body.ground.filter((g) => Number.isFinite(g.elevation_m));
  const pipes = body.crossings.filter((c) => Number.isFinite(c.elevation_m));
  // a pipe's centre: its top (ground − cover) less half its diameter
  const radius = (c) => (Number.isFinite(c.diameter_mm) ? c.diameter_mm / 2000 : 0);
  const centre = (c) => c.elevation_m - radius(c);
  const highs = [...ground.map((g) => g.elevation_m), ...pipes.map((c) => c.elevation_m)];
  const lows = [...ground.map((g) => g.elevation_m), ...pipes.map((c) => centre(c) - radius(c))];
  if (!highs.length) return `<p>${escape(mt("section.no_ground"))}</p>`;
  let top = Math.max(...highs);
  let bottom = Math.min(...lows);
  const pad = Math.max(0.5, (top - bottom) * 0.1);
  top += pad;
  bottom -= pad;
  const length = Math.max(body.length_m, 1e-6);
  const x = (d) => M.left + (d / length) * (W - M.left - M.right);
  const y = (e) => M.top + ((top - e) / (top - bottom)) * (H - M.top - M.bottom);
  const yScale = (H - M.top - M.bottom) / (top - bottom);  // px per m of elevation
  const line = ground.map((g) => `${x(g.distance_m).toFixed(1)},${y(g.elevation_m).toFixed(1)}`).join(" ");
  const soil = ground.length
    ? `<polygon points="${x(ground[0].distance_m).toFixed(1)},${H - M.bottom} ${line} ${x(ground.at(-1).distance_m).toFixed(1)},${H - M.bottom}" fill="#eadfca"/>
<polyline points="${line}" fill="none" stroke="#7a5a35" stroke-width="1.5"/>` : "";
  // elevation ticks (m) on the left, distances (m) below
  const ticks = [top - pad, (top + bottom) / 2, bottom + pad].map((e) => `<line x1="${M.left - 3}" x2="${M.left}" y1="${y(e).toFixed(1)}" y2="${y(e).toFixed(1)}" stroke="#666"/>
<text x="${M.left - 4}" y="${(y(e) + 3).toFixed(1)}" text-anchor="end">${escape(e.toFixed(1))}</text>`).join("");
  const dists = [0, length / 2, length].map((d) => `<text x="${x(d).toFixed(1)}" y="${H - M.bottom + 11}" text-anchor="${d === 0 ? "start" : d === length ? "end" : "middle"}">${escape(d.toFixed(0))}</text>`).join("");
  const circles = pipes.map((c) => {
    const cx = x(c.distance_m);
    const cy = y(centre(c));
    const r = Math.min(12, Math.max(3.5, radius(c) * yScale));
    const text = label(c);
    return `<g class="crossing" data-crossing="${escape(c.id)}"><title>${escape(`${networkName(c.network)}: ${text}`)}</title>
<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${M.top - 2}" y2="${(cy - r).toFixed(1)}" stroke="#999" stroke-dasharray="2,2"/>
<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${r.toFixed(1)}" fill="${rgb(colorOf(c.network))}" stroke="#222" stroke-width="0.8"/>
<text transform="translate(${(cx + 3).toFixed(1)},${M.top - 4}) rotate(-90)">${escape(text)}</text></g>`;
  }).join("");
  return `<svg class="section" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${escape(mt("section.title"))}"
 font-size="7" font-family="system-ui, sans-serif" style="background:#fff;border:1px solid #ddd">
${soil}<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#666"/>
<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#666"/>
${ticks}${dists}<text x="${W - M.right}" y="${H - 2}" text-anchor="end">${escape(mt("section.axis_distance"))}</text>
<text x="2" y="${M.top - 6}">${escape(mt("section.axis_elevation"))}</text>${circles}</svg>`;
}

function resultHtml(body) {
  const rows = body.crossings.map((c) => `<tr data-crossing="${escape(c.id)}"><td><span class="swatch" style="display:inline-block;width:10px;height:10px;border-radius:5px;background:${rgb(colorOf(c.network))}"></span></td>
<td>${escape(c.id)}</td><td>${escape(networkName(c.network))}</td><td>${escape(fixed(c.diameter_mm, 0) ?? "—")}</td>
<td>${escape(fixed(c.depth_m, 2) ?? "—")}</td><td>${escape(fixed(c.distance_m, 1) ?? "—")}</td></tr>`).join("");
  const table = body.crossings.length ? `<table class="attributes section-crossings" style="font-size:11px;word-break:break-all"><thead><tr><th></th><th>${escape(mt("section.col_id"))}</th>
<th>${escape(mt("section.col_network"))}</th><th>${escape(mt("section.col_diameter"))}</th><th>${escape(mt("section.col_depth"))}</th>
<th>${escape(mt("section.col_distance"))}</th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${escape(mt("section.none"))}</p>`;
  return `<h3>${escape(mt("section.title"))}</h3>
<p>${escape(mt("section.summary", {length: body.length_m.toFixed(0), count: body.crossings.length}))}</p>
${sectionSvg(body)}${table}
<p class="section-buttons"><button type="button" data-section="clear">${escape(mt("section.new"))}</button></p>`;
}

/** A lon/lat line's length (m): within 0.5 % of the server's metric one over a few km. */
const lineLength = (points) => points.slice(1).reduce((sum, p, i) => sum + metres(points[i], p), 0);

async function finish(write) {
  // ask the section along the line drawn, and write it (or why not)
  const {json, render} = section.deps;
  section.finished = true;
  section.running = true;
  section.runs += 1;
  try {
    const length = lineLength(section.points);
    if (length > section.deps.maxLengthM) {  // the server's limit, said in the reader's language
      throw new Error(mt("section.too_long", {length: length.toFixed(0), max: section.deps.maxLengthM.toFixed(0)}));
    }
    const body = await json("utilities/section", {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({geometry: {type: "LineString", coordinates: section.points}})});
    section.result = body;
    section.error = null;
    write(resultHtml(body));
  } catch (error) {
    section.error = error.message;
    section.errors += 1;
    write(`<h3>${escape(mt("section.title"))}</h3><p class="error">${escape(error.message)}</p>`);
  } finally {
    section.running = false;
    section.answers += 1;
    render();
  }
}

function listen() {
  // the panel's Finish and Clear buttons (the panel's answer is written again on every click)
  if (section.listening) return;
  section.listening = true;
  const result = document.getElementById("result");
  const write = (html) => { result.innerHTML = html; };
  result.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-section]");
    if (!button || section.running) return;
    if (button.dataset.section === "finish" && section.points.length >= 2 && !section.finished) {
      finish(write);
    } else if (button.dataset.section === "clear") {
      clearSection();
      write(progressHtml());
      section.deps.render();
    }
  });
}

/**
 * A click on the map in the Section tool: a point of the line, or (on the last point: a
 * double-click) the end of it. `say(html)` writes the panel's answer to this click.
 */
export async function sectionClick(info, point, say, deps) {
  section.deps = deps;
  listen();
  if (section.running) return;
  if (section.finished) clearSection();  // a click after a section starts the next line
  const last = section.pixels.at(-1);
  if (last && Math.hypot(info.x - last[0], info.y - last[1]) <= DOUBLE_PX) {
    if (section.points.length >= 2) await finish(say);
    else say(progressHtml());
    return;
  }
  section.points.push(point);
  section.pixels.push([info.x, info.y]);
  say(progressHtml());
}

/** The line drawn and where the pipes cross it, for the map (above everything else). */
export function sectionLayers() {
  if (!section.points.length) return [];
  const out = [new PathLayer({
    id: "section-line", data: [section.points], getPath: (p) => p, getColor: [20, 20, 20, 230],
    getWidth: 3, widthUnits: "pixels", pickable: false,
  }), new ScatterplotLayer({
    id: "section-points", data: section.points, getPosition: (p) => p, getRadius: 4, radiusUnits: "pixels",
    getFillColor: [255, 255, 255, 255], getLineColor: [20, 20, 20, 255], stroked: true, lineWidthMinPixels: 2,
    pickable: false,
  })];
  if (section.result) {
    out.push(new ScatterplotLayer({
      id: "section-crossings", data: section.result.crossings, getPosition: (c) => [c.lon, c.lat],
      getRadius: 5, radiusUnits: "pixels", getFillColor: (c) => colorOf(c.network),
      getLineColor: [20, 20, 20, 255], stroked: true, lineWidthMinPixels: 1, pickable: false,
    }));
  }
  return out;
}
