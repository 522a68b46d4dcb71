// The city set-up page (twin city init): upload an OpenStreetMap extract with the options,
// propose (dry run) or load, follow the job, and show its report. Chinese first, English beside,
// as the viewer. It signs in as the viewer does (POST ../auth/token) and shares its session:
// sessionStorage "citytwin.session", {token, user, roles, expires_at}.
import {authHeaders as sessionHeaders, fetchMe, problemDetail, requestToken, revokeToken, savedSession,
  saveSession} from "./session.js";

const POLL_MS = 500;  // how often the job is asked how it goes
const TEXT = {
  anonymous: "未登录 Not signed in",
  signed_in: "已登录 Signed in: {user} · 角色 Role: {roles}",
  failed: "登录失败 Sign-in failed: {detail}",
  expired: "登录已失效 The session has ended: {detail}",
  need_file: "请选择文件 Choose a file",
  uploading: "上传中 Uploading {file}: {percent}%",
  uploaded: "已上传 Uploaded; 等待 waiting…",
  running: "进行中 Running: {stage} {count}",
  done_dry: "预览完成 Proposal ready ({seconds} s): 未写入 nothing was written",
  done_load: "导入完成 Loaded ({seconds} s)",
  failed_job: "失败 Failed",
  refused: "被拒绝 Refused ({status}): {detail}",
  network: "网络错误 Network error: {detail}",
  name: "名称 Name",
  bbox: "范围 Extent",
  crs: "坐标系 Metric CRS",
  extent_from: "范围来源 Extent from",
  source: "文件 Source",
  written: "已写入 Written",
  yes: "是 yes",
  no: "否 no",
  none_missing: "无 Nothing is missing",
  disables: "影响 disables",
  remedy: "补充方法 how to supply it",
};
const t = (key, values = {}) => String(TEXT[key] ?? key)
  .replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
const el = (id) => document.getElementById(id);
const esc = (value) => String(value ?? "").replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

const page = {session: null, me: null, job: null, phase: "idle", error: null, submitter: null};

// -- signing in (api/static/src/session.js, shared with the viewer) ----------------------------

function loadSession() {
  page.session = savedSession();
}

function useSession(session) {
  page.session = session || null;
  saveSession(page.session);
}

function authHeaders() {
  return sessionHeaders(page.session?.token);
}

async function whoAmI() {
  let response = await fetchMe("../", page.session?.token);
  if (response.status === 401 && page.session) {
    showSignInError(t("expired", {detail: await problemDetail(response)}));
    useSession(null);
    response = await fetchMe("../", null);
  }
  page.me = response.ok ? await response.json() : null;
  drawSignIn();
}

function drawSignIn() {
  const signedIn = Boolean(page.session && page.me?.user);
  el("signin-who").textContent = signedIn
    ? t("signed_in", {user: page.me.user, roles: (page.me.roles || []).join(", ")})
    : t("anonymous");
  el("signin-fields").hidden = signedIn;
  el("signout").hidden = !signedIn;
}

function showSignInError(text) {
  el("signin-error").hidden = !text;
  el("signin-error").textContent = text || "";
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  showSignInError(null);
  try {
    useSession(await requestToken("../", form.username.value.trim(), form.password.value));
  } catch (error) {
    showSignInError(t("failed", {detail: error.message}));
    return;
  }
  form.password.value = "";
  await whoAmI();
}

async function signOut() {
  const token = page.session?.token;
  useSession(null);
  await whoAmI();
  revokeToken("../", token);
}

// -- the set-up --------------------------------------------------------------------------------

function setProgress(text) {
  el("progress").textContent = text || "";
}

function setError(text) {
  page.error = text || null;
  el("error").hidden = !text;
  el("error").textContent = text || "";
}

function busy(on) {
  for (const id of ["propose", "load"]) el(id).disabled = on;
}

function formData(dryRun) {
  // the options first, the file last: the server checks them before the file has arrived
  const data = new FormData();
  for (const name of ["name", "bbox", "boundary", "metric_crs", "district_grid_m"]) {
    const value = el(name).value.trim();
    if (value) data.append(name, value);
  }
  data.append("estimate_population", el("estimate_population").checked ? "true" : "false");
  data.append("replace", el("replace").checked ? "true" : "false");
  data.append("dry_run", dryRun ? "true" : "false");
  data.append("file", el("file").files[0]);
  return data;
}

function upload(data, fileName) {
  // XMLHttpRequest, for the upload's progress (fetch does not report it)
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "city");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        setProgress(t("uploading", {file: fileName, percent: Math.floor(100 * event.loaded / event.total)}));
      }
    };
    request.upload.onload = () => setProgress(t("uploaded"));
    request.onload = () => resolve(request);
    request.onerror = () => reject(new Error(t("network", {detail: "upload"})));
    request.send(data);
  });
}

function detailOf(request) {
  try {
    const body = JSON.parse(request.responseText);
    return String(body.detail || body.title || request.statusText);
  } catch {
    return request.statusText || String(request.status);
  }
}

async function start(dryRun) {
  setError(null);
  const file = el("file").files[0];
  if (!file) { setError(t("need_file")); return; }
  busy(true);
  page.phase = "uploading";
  page.job = null;
  try {
    const answer = await upload(formData(dryRun), file.name);
    if (answer.status !== 202) {
      page.phase = "refused";
      setProgress("");
      setError(t("refused", {status: answer.status, detail: detailOf(answer)}));
      if (answer.status === 401) await whoAmI();
      return;
    }
    page.job = JSON.parse(answer.responseText);
    page.phase = "running";
    await follow(answer.getResponseHeader("Location") || `city/jobs/${page.job.id}`);
  } catch (error) {
    page.phase = "failed";
    setError(t("network", {detail: error.message}));
  } finally {
    busy(false);
  }
}

async function follow(location) {
  // ask the job how it goes until it has ended
  for (;;) {
    const response = await fetch(location, {headers: authHeaders(), cache: "no-store"});
    if (!response.ok) {
      page.phase = "failed";
      setError(t("refused", {status: response.status, detail: await problemDetail(response)}));
      return;
    }
    const job = await response.json();
    page.job = job;
    if (job.state === "running") {
      const p = job.progress;
      const count = p ? (p.total ? `${p.done}/${p.total}` : `${p.done}`) : "";
      setProgress(t("running", {stage: p?.stage ?? "", count}));
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      continue;
    }
    if (job.state === "done") {
      page.phase = "done";
      const seconds = Number(job.plan.seconds || 0).toFixed(1);
      setProgress(t(job.plan.written ? "done_load" : "done_dry", {seconds}));
      drawReport(job.plan);
    } else {
      page.phase = "failed";
      setProgress(t("failed_job"));
      setError(job.parameter ? `${job.parameter}: ${job.error}` : job.error);
    }
    return;
  }
}

function drawReport(plan) {
  const rows = [
    [t("name"), plan.name],
    [t("bbox"), (plan.bbox || []).map((v) => Number(v).toFixed(5)).join(", ")],
    [t("crs"), plan.metric_crs],
    [t("extent_from"), plan.extent_from],
    [t("source"), plan.source],
    [t("written"), plan.written ? t("yes") : t("no")],
  ];
  el("report-summary").tBodies[0].innerHTML = rows
    .map(([label, value]) => `<tr><th>${esc(label)}</th><td>${esc(value)}</td></tr>`).join("");
  const numbers = ["features", "cut", "dropped", "added", "changed", "unchanged", "retired"];
  el("report-layers").tBodies[0].innerHTML = (plan.layers || []).map((load) =>
    `<tr data-layer="${esc(load.layer)}"><td>${esc(load.layer)}</td>` +
    numbers.map((key) => `<td class="n">${esc(Number(load[key] ?? 0).toLocaleString())}</td>`).join("") +
    `<td>${esc(load.note ?? "")}</td></tr>`).join("");
  const missing = plan.missing || [];
  el("missing").innerHTML = missing.length
    ? missing.map((m) => `<li data-input="${esc(m.input)}"><strong>${esc(m.input)}</strong> — ` +
        `${esc(t("disables"))}: ${esc(m.disables)}; ${esc(t("remedy"))}: <code>${esc(m.remedy)}</code></li>`).join("")
    : `<li>${esc(t("none_missing"))}</li>`;
  el("report").hidden = false;
}

// -- wiring ------------------------------------------------------------------------------------

el("signin").addEventListener("submit", (event) => {
  signIn(event).catch((error) => showSignInError(t("failed", {detail: error.message})));
});
el("signout").addEventListener("click", () => { signOut(); });
el("city-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const dryRun = event.submitter?.dataset.dryRun !== "false";
  start(dryRun);
});

// for whoever checks the page (a test): what it is doing
window.twinAdmin = {state: () => ({phase: page.phase, job: page.job, error: page.error,
  user: page.me?.user ?? null})};

loadSession();
whoAmI().catch((error) => showSignInError(error.message));
