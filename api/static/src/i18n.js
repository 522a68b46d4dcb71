// Every string the viewer shows, in Chinese (zh-CN) and English (en), through i18next. The
// strings live in locales/<language>/<area>.json, one file per part of the page (an i18next
// namespace each): core (the map and its layers), signin, live, answers (route, service areas,
// incident), map (underground, section), chrome (panel, legend, search, time, export). A key is
// written `area:key`, e.g. t("live:alerts"); values are interpolated as {name}. The language is
// the one chosen on the page (kept in localStorage), else the browser's first of zh*/en, else
// Chinese: the people who use an operations centre read Chinese first. The API's problem+json
// titles and the CLI stay English; the page translates what it shows.
import i18next from "i18next";

import enAnswers from "./locales/en/answers.json";
import enChrome from "./locales/en/chrome.json";
import enCore from "./locales/en/core.json";
import enLive from "./locales/en/live.json";
import enMap from "./locales/en/map.json";
import enSignin from "./locales/en/signin.json";
import zhAnswers from "./locales/zh-CN/answers.json";
import zhChrome from "./locales/zh-CN/chrome.json";
import zhCore from "./locales/zh-CN/core.json";
import zhLive from "./locales/zh-CN/live.json";
import zhMap from "./locales/zh-CN/map.json";
import zhSignin from "./locales/zh-CN/signin.json";

export const LANGUAGES = {"zh-CN": "中文", en: "English"};
const STORAGE_KEY = "citytwin.language";
const RESOURCES = {
  en: {answers: enAnswers, chrome: enChrome, core: enCore, live: enLive, map: enMap, signin: enSignin},
  "zh-CN": {answers: zhAnswers, chrome: zhChrome, core: zhCore, live: zhLive, map: zhMap, signin: zhSignin},
};
const listeners = [];

/** The language to open in: the page's saved choice, else the browser's, else zh-CN. */
export function preferredLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved in LANGUAGES) return saved;
  for (const tag of navigator.languages || [navigator.language]) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "zh-CN";
}

i18next.init({
  resources: RESOURCES,
  lng: preferredLanguage(),
  fallbackLng: false,  // a key missing in a language shows the key (a test finds it), not English
  ns: Object.keys(RESOURCES.en),
  defaultNS: "core",
  initAsync: false,
  returnNull: false,
  keySeparator: false,  // keys are flat: "group.basemap" is one key
  interpolation: {prefix: "{", suffix: "}", escapeValue: false},  // the page escapes what it writes
});
document.documentElement.lang = i18next.language;

/** The string for `key` ("area:key") in the page's language, with {name} values filled in. */
export const t = (key, values = {}) => String(i18next.t(key, values));

/** Whether `key` has a string in the page's language. */
export const has = (key) => i18next.exists(key);

/** The page's language ("zh-CN" or "en"). */
export const language = () => i18next.language;

/** Translate the page's own HTML: every element with data-i18n="area:key" (text) or
 * data-i18n-title / data-i18n-placeholder / data-i18n-aria-label (attributes). */
export function translatePage(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const attribute of ["title", "placeholder", "aria-label"]) {
    const data = `data-i18n-${attribute}`;
    for (const node of root.querySelectorAll(`[${data}]`)) node.setAttribute(attribute, t(node.getAttribute(data)));
  }
}

/** Switch the page to `lng` (kept for the next visit); every listener draws its part again. */
export function setLanguage(lng) {
  if (!(lng in LANGUAGES)) throw new Error(`no such language: ${lng}`);
  localStorage.setItem(STORAGE_KEY, lng);
  i18next.changeLanguage(lng);
  document.documentElement.lang = lng;
  translatePage();
  for (const listener of listeners) listener(lng);
}

/** Call `listener(lng)` after every change of language (to draw what a part wrote itself). */
export function onLanguageChange(listener) {
  listeners.push(listener);
}

/** Every key of every area, per language (for the page's own check and the tests). */
export function keys() {
  const out = {};
  for (const [lng, areas] of Object.entries(RESOURCES)) {
    out[lng] = Object.entries(areas).flatMap(([area, table]) => Object.keys(table).map((k) => `${area}:${k}`));
  }
  return out;
}
