// The web client: the public API with the cookie transport only. The token lives in an HttpOnly
// cookie that this script never sees; state-changing calls echo the csrf_token cookie in
// X-CSRF-Token (double submit).
"use strict";

const $ = (id) => document.getElementById(id);

const MESSAGES = {
  name_taken: "That name is taken: choose another, or log in.",
  invalid_credentials: "Wrong name or password.",
  csrf_failed: "Your session could not be verified: log in again.",
  storage_unavailable: "The service cannot reach its data store right now: try again shortly.",
  busy: "Too many logins at once: try again in a moment.",
  shutting_down: "The service is restarting: try again in a moment.",
  unknown_recipient: "No user has that name.",
  recipient_unavailable: "That user does not take messages from you.",
};
const SESSION_ENDED = new Set(["missing_token", "invalid_token", "token_expired", "token_revoked"]);

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === "csrf_token") return decodeURIComponent(value.join("="));
  }
  return "";
}

// An expired token is renewed once with the refresh_token cookie (if the login kept one), then
// the call is made again. With a refresh token the token cookie lives as long as it does, so the
// browser still sends the expired token and the API says `token_expired`; the renewed tokens come
// back in cookies only, never in a body this script could read.
async function call(method, path, body, renewed = false) {
  try {
    return await send(method, path, body);
  } catch (error) {
    if (renewed || !(error instanceof ApiError) || error.code !== "token_expired") throw error;
    try {
      await send("POST", "/token/refresh/");
    } catch {
      throw error;
    }
    return call(method, path, body, true);
  }
}

async function send(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The service cannot be reached: check your connection.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = (data && data.error) || "http_error";
    const message = (data && data.message) || `The service answered ${response.status}.`;
    throw new ApiError(response.status, code, message, response.headers.get("Retry-After"));
  }
  return data;
}

function describe(error) {
  if (error.code === "rate_limited") {
    const seconds = Number(error.retryAfter);
    const wait = seconds >= 120 ? `${Math.ceil(seconds / 60)} minutes` : `${seconds} seconds`;
    return `Too many attempts: try again in ${Number.isFinite(seconds) ? wait : "a while"}.`;
  }
  if (error.code === "validation_error") {
    // "name: must be ..." reads well as it is, with its first letter up.
    return error.message.charAt(0).toUpperCase() + error.message.slice(1) + ".";
  }
  return MESSAGES[error.code] || error.message;
}

function show(signedIn) {
  $("signed-out").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
}

const ERRORS = [
  "compose-error",
  "session-error",
  "credentials-error",
  "sessions-error",
  "change-password-error",
  "change-password-note",
  "export-error",
  "delete-account-error",
];

function signedOut(note) {
  stopEvents();
  for (const id of ERRORS) $(id).textContent = "";
  $("credentials-note").textContent = note || "";
  $("history").replaceChildren();
  $("sessions").replaceChildren();
  $("answer").replaceChildren();
  $("answer-box").hidden = true;
  for (const id of ["password", "current-password", "new-password", "delete-password"]) {
    $(id).value = "";
  }
  show(false);
  $("name").focus();
}

// Any call that finds the session over returns to the login form.
async function guarded(errorId, action) {
  $(errorId).textContent = "";
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (SESSION_ENDED.has(error.code) || error.code === "csrf_failed") {
      signedOut("Your session has ended: log in again.");
      return;
    }
    $(errorId).textContent = describe(error);
  }
}

function entry(text, sentAt) {
  const item = document.createElement("li");
  item.append(text);
  if (sentAt) {
    const time = document.createElement("time");
    time.dateTime = sentAt;
    time.textContent = new Date(sentAt).toLocaleString();
    item.append(time);
  }
  return item;
}

// The user signed in, and the conversation shown (null: every message).
let me = "";
let conversation = null;

// A message of the history: its text, who it is from (and to), and when. The other person's name
// opens the conversation with them.
function messageItem(message) {
  const item = entry(message.text);
  item.dataset.id = message.id;
  const who = document.createElement("span");
  who.className = "from";
  const other = message.from === me ? message.to : message.from;
  if (message.from === me && message.to === me) {
    who.append("Note to yourself");
  } else {
    who.append(message.from === me ? "To " : "From ");
    const name = document.createElement("button");
    name.type = "button";
    name.className = "link";
    name.textContent = other;
    name.setAttribute("aria-label", `Conversation with ${other}`);
    name.addEventListener("click", () => showConversation(other));
    who.append(name);
  }
  item.append(who);
  const time = document.createElement("time");
  time.dateTime = message.sent_at;
  time.textContent = new Date(message.sent_at).toLocaleString();
  item.append(time);
  return item;
}

// New messages, live: the browser's EventSource resumes by itself after the network drops (it
// sends Last-Event-ID); a stream that ends (a session that ended, a token that expired) is opened
// again after the token is renewed, from the last event it had (?after=).
let events = null;
let lastEventId = "";

function belongsHere(message) {
  if (conversation === null) return true;
  const other = message.from === me ? message.to : message.from;
  return other === conversation || (conversation === me && message.from === message.to);
}

function showLive(message) {
  const list = $("history");
  if (!belongsHere(message) || list.querySelector(`li[data-id="${CSS.escape(message.id)}"]`)) return;
  list.prepend(messageItem(message));
  $("history-empty").hidden = true;
}

function startEvents() {
  stopEvents();
  const query = lastEventId ? `?after=${encodeURIComponent(lastEventId)}` : "";
  const source = new EventSource(`/events/${query}`);
  events = source;
  source.addEventListener("message", (event) => {
    lastEventId = event.lastEventId;
    showLive(JSON.parse(event.data));
  });
  source.addEventListener("reset", (event) => {
    lastEventId = event.lastEventId;
    guarded("compose-error", loadHistory);
  });
  source.addEventListener("end", () => {
    stopEvents();
    recheck(0);
  });
  source.addEventListener("error", () => {
    // A network error makes EventSource retry by itself (CONNECTING); an answer that is not a
    // stream (401 once the session is over, 429 or 503 when the service is full) closes it.
    if (source.readyState !== EventSource.CLOSED || events !== source) return;
    events = null;
    recheck(5000);
  });
}

// After a stream ended or was refused: is the session still on? Then live again (after
// `delay` ms), else back to the login form.
async function recheck(delay) {
  try {
    await call("GET", "/me/"); // renews an expired token if the login kept a refresh token
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    // A logout of this page stops its stream first: this end came from elsewhere.
    if (events === null && !$("signed-in").hidden && SESSION_ENDED.has(error.code)) {
      signedOut("Your session has ended: log in again.");
      return;
    }
    delay = Math.max(delay, 5000); // the service is unreachable or busy: not at once
  }
  setTimeout(() => {
    if (events === null && !$("signed-in").hidden) startEvents();
  }, delay);
}

function stopEvents() {
  if (events !== null) {
    events.close();
    events = null;
  }
}

async function showConversation(name) {
  conversation = name;
  $("to").value = name === me ? "" : name;
  await guarded("compose-error", loadHistory);
}

async function loadHistory() {
  const query = conversation === null ? "" : `&with=${encodeURIComponent(conversation)}`;
  const data = await call("GET", `/messages/?limit=50${query}`);
  $("history-title").textContent =
    conversation === null ? "History" : `Conversation with ${conversation}`;
  $("conversation-bar").hidden = conversation === null;
  $("history").replaceChildren(...data.messages.map(messageItem));
  $("history-empty").hidden = data.messages.length > 0;
}

function when(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = new Date(iso).toLocaleString();
  return time;
}

async function loadSessions() {
  const data = await call("GET", "/sessions/");
  $("sessions").replaceChildren(
    ...data.sessions.map((session) => {
      const item = document.createElement("li");
      const client = document.createElement("div");
      client.className = "client";
      const name = document.createElement("strong");
      name.textContent = session.user_agent || "Unknown client";
      const meta = document.createElement("span");
      meta.className = "meta";
      if (session.current) meta.append("This browser · ");
      meta.append("signed in ", when(session.created_at));
      meta.append(" · last active ", when(session.last_used_at));
      client.append(name, meta);
      const end = document.createElement("button");
      end.type = "button";
      end.textContent = "End";
      const which = session.current ? `${name.textContent} (this browser)` : name.textContent;
      end.setAttribute("aria-label", `End session: ${which}`);
      end.addEventListener("click", () => endSession(session));
      item.append(client, end);
      return item;
    }),
  );
}

async function endSession(session) {
  await guarded("sessions-error", async () => {
    await call("DELETE", `/sessions/${encodeURIComponent(session.id)}/`);
    if (session.current) {
      signedOut("Session ended.");
      return;
    }
    await loadSessions();
  });
}

async function enter() {
  me = (await call("GET", "/me/")).name;
  conversation = null;
  lastEventId = "";
  $("user").textContent = me;
  show(true);
  startEvents();
  await Promise.all([loadHistory(), loadSessions()]);
  $("message").focus();
}

// A wrong current password is a 403 of its own: the session itself is fine.
function describePassword(error) {
  return error.code === "invalid_credentials" ? "The current password is wrong." : describe(error);
}

async function changePassword(event) {
  event.preventDefault();
  $("change-password-note").textContent = "";
  await guarded("change-password-error", async () => {
    try {
      await call("POST", "/password/", {
        password: $("current-password").value,
        new_password: $("new-password").value,
      });
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "invalid_credentials") throw error;
      $("change-password-error").textContent = describePassword(error);
      return;
    }
    $("current-password").value = "";
    $("new-password").value = "";
    $("change-password-note").textContent = "Password changed: every other session has ended.";
    await loadSessions();
  });
}

async function exportData() {
  await guarded("export-error", async () => {
    const data = await call("GET", "/me/export/");
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${data.name}-data.json`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
}

async function deleteAccount(event) {
  event.preventDefault();
  await guarded("delete-account-error", async () => {
    try {
      await call("DELETE", "/me/", { password: $("delete-password").value });
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "invalid_credentials") throw error;
      $("delete-account-error").textContent = describePassword(error);
      return;
    }
    $("delete-password").value = "";
    signedOut("Your account has been deleted.");
  });
}

async function submitCredentials(event) {
  event.preventDefault();
  const action = event.submitter ? event.submitter.dataset.action : "login";
  const body = { name: $("name").value, password: $("password").value };
  // cookie_only: the tokens go in HttpOnly cookies, none in the body this script reads.
  const login = { ...body, refresh: $("remember").checked, cookie_only: true };
  const buttons = $("credentials").querySelectorAll("button");
  buttons.forEach((button) => (button.disabled = true));
  $("credentials-error").textContent = "";
  $("credentials-note").textContent = "";
  try {
    if (action === "signup") await call("POST", "/signup/", body);
    await call("POST", "/login/", login);
    $("password").value = "";
    await enter();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    $("credentials-error").textContent = describe(error);
  } finally {
    buttons.forEach((button) => (button.disabled = false));
  }
}

async function submitMessage(event) {
  event.preventDefault();
  const text = $("message").value;
  if (!text.trim()) {
    $("compose-error").textContent = "Write a message first.";
    return;
  }
  const to = $("to").value.trim();
  await guarded("compose-error", async () => {
    const data = await call("POST", "/message/", to ? { text, to } : { text });
    $("message").value = "";
    if (data && data.status === undefined) {
      // "last N": keys N down to "1", "1" the newest, shown as the seed numbers them.
      const keys = Object.keys(data).sort((a, b) => Number(b) - Number(a));
      const items = keys.map((key) => {
        const item = entry(data[key]);
        item.value = Number(key);
        return item;
      });
      $("answer").reversed = true;
      $("answer").replaceChildren(...items);
      $("answer-box").hidden = false;
      if (!items.length) $("answer").replaceChildren(entry("No messages yet."));
    } else {
      $("answer-box").hidden = true;
    }
    await loadHistory();
  });
}

async function logout(path) {
  stopEvents(); // the logout ends this session's stream too: that end is no news here
  await guarded("session-error", async () => {
    try {
      await call("POST", path);
    } catch (error) {
      if (!$("signed-in").hidden) startEvents(); // still signed in: live again
      throw error;
    }
    signedOut(path === "/logout/all/" ? "Logged out everywhere." : "Logged out.");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("credentials").addEventListener("submit", submitCredentials);
  $("compose").addEventListener("submit", submitMessage);
  $("logout").addEventListener("click", () => logout("/logout/"));
  $("logout-all").addEventListener("click", () => logout("/logout/all/"));
  $("change-password").addEventListener("submit", changePassword);
  $("export").addEventListener("click", exportData);
  $("delete-account").addEventListener("submit", deleteAccount);
  $("all-messages").addEventListener("click", () => {
    conversation = null;
    guarded("compose-error", loadHistory);
  });
  if (!csrfToken()) {
    // No session cookie (it lives exactly as long as the token's): nothing to ask the API.
    signedOut("");
    return;
  }
  enter().catch((error) => {
    if (!(error instanceof ApiError)) throw error;
    signedOut(SESSION_ENDED.has(error.code) ? "" : describe(error));
  });
});
