// The underground seen through the ground: pipes drawn at their depth as tubes, and the ground
// they lie under, as opaque as the Surface slider says.
//
// A translucent surface hides nothing only if what lies below it is drawn first: the depth test
// then lets the surface through (it is nearer the eye) and blending mixes it over the pipes. So
// the map is drawn in this order (viewer.js render):
//   1. the underground layers (pipes, their nodes), opaque, at depth (twin/deck.py DEPTH_EXAGGERATION);
//   2. the ground: one plane at height 0 over the data, the page's background colour, with the
//      Surface slider's opacity (100 %: the pipes are under the ground, unseen; 0 %: no ground),
//      drawn without writing depth, so it hides nothing drawn after it;
//   3. the surface (districts, roads, buildings) faded by the same opacity, and everything else.
// The ground is drawn while a basemap layer is shown: with the basemap off, the pipes are seen
// in plan through the empty ground, as before. A surface at 0 % is not drawn (nor picked).
//
// Pipes are coloured by network in the APWA Uniform Color Code (twin/deck.py NETWORK_COLORS,
// through viewer/config.json): potable water blue, sewer green, gas yellow, electric red,
// communications orange, reclaimed purple, district heat amber.
import {MapView} from "@deck.gl/core";
import {SolidPolygonLayer} from "@deck.gl/layers";

// The map's view, seeing below the ground: deck.gl puts the far clipping plane just past the
// ground seen straight down (farZMultiplier 1.01), which clips everything under it; the pipes
// lie down to 10 × their depth below it. Twice the camera's distance keeps them in view at every
// zoom (a 25 m sewer drawn 250 m down, with the camera 130 m up at zoom 20).
export const MAP_VIEW = new MapView({id: "map-view", farZMultiplier: 3});

// the page's background (viewer.css body): the ground at 100 % looks like the map without pipes
export const GROUND_COLOR = [244, 243, 239];
// the ground reaches this far (degrees) past the data, so a pipe near the edge seen obliquely
// is still under it
const GROUND_MARGIN = 0.02;

/** The extent [west, south, east, north] of the tilesets of these layers, or null. */
export function extentOf(tilesets, layers) {
  const sets = layers.map((layer) => tilesets[layer]).filter((s) => s && s.bounds);
  if (!sets.length) return null;
  return [
    Math.min(...sets.map((s) => s.bounds[0])), Math.min(...sets.map((s) => s.bounds[1])),
    Math.max(...sets.map((s) => s.bounds[2])), Math.max(...sets.map((s) => s.bounds[3])),
  ];
}

/**
 * The ground plane over `extent` (padded), with opacity `surface` (0–1); null when there is
 * nothing to draw (no extent, or a surface at 0).
 */
export function groundLayer(extent, surface) {
  if (!extent || surface <= 0) return null;
  const [w, s, e, n] = [extent[0] - GROUND_MARGIN, extent[1] - GROUND_MARGIN,
    extent[2] + GROUND_MARGIN, extent[3] + GROUND_MARGIN];
  return new SolidPolygonLayer({
    id: "ground",
    data: [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
    getPolygon: (p) => p,
    getFillColor: [...GROUND_COLOR, Math.round(255 * surface)],
    pickable: false,
    // the ground hides what is below it by colour only: nothing drawn after it is occluded
    parameters: {depthWriteEnabled: false},
    updateTriggers: {getFillColor: [surface]},
  });
}

/**
 * A pipe's drawn width (m): its diameter (mm) as wide as its depth is deep (`exaggeration`
 * times), at least the style's line width.
 */
export function tubeWidth(style, properties, exaggeration) {
  const diameter = Number(properties?.[style.diameter]);
  return Math.max(Number.isFinite(diameter) && diameter > 0 ? diameter / 1000 * exaggeration : 0, style.width_m);
}

/** GeoJsonLayer props drawing a style's lines as tubes: lines facing the eye, rounded. */
export function tubeProps(style, exaggeration) {
  if (!style.diameter) return {};
  return {
    getLineWidth: (f) => tubeWidth(style, f.properties, exaggeration),
    lineBillboard: true,
    lineWidthMinPixels: 2,
    lineJointRounded: true,
    lineCapRounded: true,
  };
}

/**
 * Features sorted so that vehicles come before the rest (stations, hospitals ...): a later point
 * is drawn over an earlier one at the same place, and picked first, so a station is drawn and
 * picked over the vehicles parked at it. The sorted array is kept per tile's array (a tile is
 * sorted once).
 */
const sortedTiles = new WeakMap();
export function vehiclesFirst(features) {
  if (!Array.isArray(features)) return features;
  let sorted = sortedTiles.get(features);
  if (!sorted) {
    const rank = (f) => (f.properties?.kind === "vehicle" ? 0 : 1);
    sorted = [...features].sort((a, b) => rank(a) - rank(b));
    sortedTiles.set(features, sorted);
  }
  return sorted;
}
