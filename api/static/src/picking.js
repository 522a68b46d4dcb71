// Which layers a picking pass draws (deck.gl's `layerFilter`). deck.gl picks on every pointer
// press (for its own onClick, which the viewer does not use: listenForClicks takes clicks) and
// once a frame while the pointer moves (for hover, which only the live layers' tooltips use).
// Each pick draws every pickable layer again and reads it back at once; on a busy part of the
// map with software WebGL that is hundreds of milliseconds a pick, holding the page while the
// pointer moves to a target, presses and releases, so a click's own pick and answer came
// seconds late and the next click, made meanwhile, superseded it. Now only the viewer's own
// picks (a click's, inside `ownPick`) draw every layer; hover picks draw the live layers;
// deck.gl's press pick draws none.

// the layers whose hover the page shows (their tooltips): the live roads and vehicles
const HOVERED = ["live-traffic", "live-vehicles"];
let own = 0;

/** deck.gl's `layerFilter`: every layer is drawn, but picks draw only what they are for. */
export function pickFilter({layer, isPicking, renderPass}) {
  if (!isPicking || own > 0) return true;
  if (String(renderPass).startsWith("picking:hover")) return HOVERED.includes(layer.id);
  return false;
}

/** Run `pick` (a synchronous deck.gl pick) with every pickable layer drawn. */
export function ownPick(pick) {
  own += 1;
  try {
    return pick();
  } finally {
    own -= 1;
  }
}
