// The sign-in both pages share (the viewer at / and the set-up page at /admin/city): the twin's
// own issuer (POST auth/token, the OAuth 2.0 password grant; auth/revoke, RFC 7009; auth/me),
// and the session kept in sessionStorage (it survives a reload, not a closed tab), so signing in
// on one page signs in on the other. `base` is where the API is relative to the page ("" for the
// viewer, "../" for /admin/city).

export const SESSION_KEY = "citytwin.session";

/** The saved session {token, user, roles, expires_at}, or null (an unreadable one is dropped). */
export function savedSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && typeof saved.token === "string") return saved;
  } catch (error) {
    console.warn("the saved session is unreadable:", error);
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

/** Keep `session` for the next page load (null: forget it). */
export function saveSession(session) {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** The Authorization header a request goes with (none without a token). */
export function authHeaders(token) {
  return token ? {Authorization: `Bearer ${token}`} : {};
}

/** The reason a problem+json answer gives, else the status text. */
export async function problemDetail(response) {
  try {
    const body = await response.json();
    return String(body.detail || body.title || response.statusText);
  } catch {
    return response.statusText || String(response.status);
  }
}

/** Ask auth/me who `token` is (the Response: a 401 says the token no longer holds). */
export function fetchMe(base, token) {
  return fetch(`${base}auth/me`, {headers: authHeaders(token)});
}

/**
 * Sign in with the password grant. Resolves to the session {token, user, roles, expires_at};
 * a refusal rejects with an Error whose message is the issuer's reason.
 */
export async function requestToken(base, username, password) {
  const response = await fetch(`${base}auth/token`, {method: "POST",
    body: new URLSearchParams({grant_type: "password", username, password})});
  if (!response.ok) throw new Error(await problemDetail(response));
  const body = await response.json();
  return {token: body.access_token, user: body.user, roles: body.roles,
    expires_at: Date.now() + Number(body.expires_in) * 1000};
}

/** Revoke `token` at the issuer, best effort (a failure is only logged). */
export async function revokeToken(base, token) {
  if (!token) return;
  try {
    const response = await fetch(`${base}auth/revoke`, {method: "POST", headers: authHeaders(token),
      body: new URLSearchParams({token})});
    if (!response.ok) console.warn("the token was not revoked:", await problemDetail(response));
  } catch (error) {
    console.warn("the token was not revoked:", error);
  }
}
