// Plain words for the twin's ids, in the page's language: layers (core:layer.<id>), attributes
// (core:field.<name>), the values an attribute colours by or a kind names (core:value.<attribute>.<value>),
// and incident kinds (core:incident.<kind>). An id with no word yet is shown as it is (an
// attribute of the data's own, like `name:fr`), never as a missing key.
import {has, t} from "./i18n.js";

/** A layer's title, e.g. "roads" -> 道路; `fallback` (the catalog's title) or the id if none. */
export function layerTitle(layer, fallback = null) {
  const key = `core:layer.${layer}`;
  return has(key) ? t(key) : fallback || String(layer);
}

/** An attribute's name as a user reads it, e.g. "height_m" -> 高度（米）; else the name itself. */
export function fieldName(name) {
  const key = `core:field.${name}`;
  return has(key) ? t(key) : String(name);
}

/** A value of an attribute, e.g. ("kind", "fire_station") -> 消防站; else the value itself. */
export function valueName(attribute, value) {
  const key = `core:value.${attribute}.${String(value).toLowerCase()}`;
  return has(key) ? t(key) : String(value);
}

/** An incident kind, e.g. "gas_leak" -> 燃气泄漏; else the kind itself. */
export function incidentName(kind) {
  const key = `core:incident.${kind}`;
  return has(key) ? t(key) : String(kind);
}

/** A role, e.g. "emergency_commander" -> 应急指挥; else the role itself. */
export function roleName(role) {
  const key = `core:role.${role}`;
  return has(key) ? t(key) : String(role);
}

/** A clearance level's name, e.g. "important" -> 重要; else the name itself. */
export function clearanceName(level) {
  const key = `core:clearance.${level}`;
  return has(key) ? t(key) : String(level);
}
