// facesense dashboard: a little plain JavaScript on top of server-rendered pages.
// Every change goes through the REST API; text from the server is inserted with
// textContent only, never as HTML.
"use strict";

const OUTCOME_LABELS = {
  added: "added",
  unreadable: "not an image",
  duplicate: "duplicate",
  no_face: "no face",
  several_faces: "several faces",
  too_small: "too small",
  too_blurry: "blurry",
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await response.json();
  if (response.status === 401) {
    window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    throw new Error("please log in");
  }
  if (!response.ok) {
    const error = new Error((body && body.error) || `request failed (${response.status})`);
    error.body = body;
    throw error;
  }
  return body;
}

function showMessage(box, text, kind) {
  box.replaceChildren(el("p", { class: kind === "error" ? "error" : "ok" }, text));
}

function showOutcomes(box, results, heading) {
  const list = el("ul");
  for (const r of results) {
    const kind = r.outcome === "added" ? "added" : r.outcome === "unreadable" ? "unreadable" : "skipped";
    list.append(
      el("li", { class: `outcome outcome-${kind}`, "data-outcome": r.outcome },
        el("span", { class: "badge" }, OUTCOME_LABELS[r.outcome] || r.outcome),
        el("span", {}, r.file),
        r.outcome === "added" ? null : el("span", { class: "muted small" }, r.detail)),
    );
  }
  box.replaceChildren();
  if (heading) box.append(heading);
  box.append(list);
}

function setBusy(form, busy) {
  for (const b of form.querySelectorAll("button")) b.disabled = busy;
}

function localTimes(root) {
  for (const t of (root || document).querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!Number.isNaN(d.getTime())) {
      t.textContent = d.toLocaleString();
      t.title = t.getAttribute("datetime");
    }
  }
}

// --- Live ----------------------------------------------------------------------------

// "Wrong?" on a named track: "not X" or "this is Y" (a person picker), as on the events page.
function trackCorrectControl(t) {
  return el("details", {
    class: "correct-face correct-track", "data-track-id": String(t.track_id), "data-event-id": String(t.event_id),
    "data-name": t.name,
  },
    el("summary", { class: "small" }, "Wrong?"),
    el("div", { class: "row" },
      el("button", { type: "button", class: "danger", "data-action": "not" }, `Not ${t.name}`),
      el("form", { class: "is-person row" },
        el("select", { name: "is", required: "", "aria-label": `Who track #${t.track_id} really is` },
          el("option", { value: "" }, "This is…")),
        el("button", { type: "submit" }, "This is them"))));
}

function trackRow(t) {
  return el("tr", { class: `state-${t.state}`, "data-track-id": String(t.track_id) },
    el("td", {}, `#${t.track_id}`),
    el("td", { class: "track-name" }, t.name || (t.state === "pending" ? "identifying…" : "unknown")),
    el("td", {}, t.state === "pending" ? "–" : `${Math.round(t.confidence * 100)}%`),
    el("td", { class: "track-correct" }, t.can_correct ? trackCorrectControl(t) : null));
}

// A row with an open picker, or a correction on its way, is left alone by the refresh.
function rowPaused(row) {
  return row.dataset.busy === "1" || Boolean(row.querySelector("details[open]"));
}

// Make body's children `rows`, in order, without detaching the rows that stay (an
// open picker keeps its focus and its choice).
function reconcileRows(body, rows) {
  const keep = new Set(rows);
  for (const child of [...body.children]) if (!keep.has(child)) child.remove();
  let cursor = body.firstChild;
  for (const row of rows) {
    if (row === cursor) cursor = cursor.nextSibling;
    else body.insertBefore(row, cursor);
  }
}

function renderTracks(body, tracks) {
  const old = new Map([...body.querySelectorAll("tr[data-track-id]")].map((r) => [r.dataset.trackId, r]));
  const rows = [];
  for (const t of tracks) {
    const prev = old.get(String(t.track_id));
    old.delete(String(t.track_id));
    if (prev && rowPaused(prev)) {
      prev.classList.remove("gone");
      rows.push(prev);
    } else {
      rows.push(trackRow(t));
    }
  }
  for (const prev of old.values()) {
    if (rowPaused(prev)) {  // the face left while its picker is open: keep it, the click will say so
      prev.classList.add("gone");
      rows.push(prev);
    }
  }
  if (!rows.length) rows.push(el("tr", { class: "none" }, el("td", { colspan: "4" }, "No faces right now")));
  reconcileRows(body, rows);
}

async function fillPersonPicker(box) {
  const select = box.querySelector('select[name="is"]');
  if (!select || select.options.length > 1) return;
  try {
    const data = await api("/api/people");
    if (select.options.length > 1) return;
    for (const p of data.people) {
      if (p.name !== box.dataset.name) select.append(el("option", { value: p.name }, p.name));
    }
  } catch (e) {
    const card = box.closest(".source");
    if (card) showMessage(card.querySelector('[data-field="results"]'), e.message, "error");
  }
}

function initLive() {
  const cards = document.querySelectorAll(".source[data-source-id]");
  if (!cards.length) return;
  for (const img of document.querySelectorAll("img[data-stream]")) {
    img.addEventListener("error", () => {
      // The stream broke (server restarting, network): try again in a moment.
      setTimeout(() => { img.src = img.dataset.src + "?t=" + Date.now(); }, 2000);
    });
  }
  async function refresh() {
    try {
      const data = await api("/api/sources");
      for (const s of data.sources) {
        const card = document.querySelector(`.source[data-source-id="${s.id}"]`);
        if (!card) continue;
        const status = card.querySelector('[data-field="status"]');
        status.textContent = s.status;
        status.className = `badge status status-${s.status}`;
        card.querySelector('[data-field="fps"]').textContent = s.fps.toFixed(1);
        card.querySelector('[data-field="frames"]').textContent = s.frames;
        card.querySelector('[data-field="lag"]').textContent = Math.round(s.lag_ms);
        card.querySelector('[data-field="dropped"]').textContent = s.dropped;
        card.querySelector('[data-field="message"]').textContent = s.message || "";
        renderTracks(card.querySelector('[data-field="tracks"]'), s.tracks);
      }
    } catch (e) {
      // keep the last state; the next poll tries again
    }
  }

  async function correctTrack(box, body) {
    const card = box.closest(".source");
    const row = box.closest("tr");
    const results = card.querySelector('[data-field="results"]');
    row.dataset.busy = "1";
    setBusy(box, true);
    try {
      const path = `/api/sources/${card.dataset.sourceId}/tracks/${box.dataset.trackId}/correct`;
      const data = await api(`${path}?event_id=${encodeURIComponent(box.dataset.eventId)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      showMessage(results, `Track #${data.track_id}: ${data.correction} (event ${data.event_id}); identifying it again with the correction.`, "ok");
    } catch (e) {
      showMessage(results, e.message, "error");
    } finally {
      box.open = false;
      delete row.dataset.busy;
      setBusy(box, false);
    }
    refresh();  // the row shows what the server says now
  }
  // `toggle` does not bubble: listen in the capture phase.
  document.addEventListener("toggle", (event) => {
    const box = event.target;
    if (box instanceof HTMLDetailsElement && box.matches(".correct-track") && box.open) fillPersonPicker(box);
  }, true);
  document.addEventListener("click", (event) => {
    const button = event.target.closest('.correct-track button[data-action="not"]');
    if (!button) return;
    const box = button.closest(".correct-track");
    correctTrack(box, { not: box.dataset.name });
  });
  document.addEventListener("submit", (event) => {
    const form = event.target.closest(".correct-track form.is-person");
    if (!form) return;
    event.preventDefault();
    correctTrack(form.closest(".correct-track"), { is: form.elements.is.value });
  });
  refresh();
  setInterval(refresh, 1000);
}

// --- People ----------------------------------------------------------------------------

async function reloadPeople() {
  const response = await fetch("/people", { credentials: "same-origin" });
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = doc.getElementById("people-grid");
  const grid = document.getElementById("people-grid");
  if (!fresh || !grid) return;
  // Keep open sample lists open.
  const open = new Set([...grid.querySelectorAll(".person")]
    .filter((c) => !c.querySelector(".samples").hidden).map((c) => c.dataset.personId));
  for (const card of fresh.querySelectorAll(".person")) {
    if (open.has(card.dataset.personId)) {
      card.querySelector(".samples").hidden = false;
      card.querySelector('[data-action="samples"]').setAttribute("aria-expanded", "true");
    }
  }
  grid.replaceWith(fresh);
}

function initPeople() {
  const addForm = document.getElementById("add-person");
  const addResult = document.getElementById("add-result");
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    setBusy(addForm, true);
    addResult.replaceChildren(el("p", { class: "muted" }, "Checking the photos…"));
    try {
      const data = await api("/api/people", { method: "POST", body: new FormData(addForm) });
      showOutcomes(addResult, data.results, el("p", { class: "ok" }, `Added ${data.person.name}.`));
      addForm.reset();
      await reloadPeople();
    } catch (e) {
      if (e.body && e.body.results) showOutcomes(addResult, e.body.results, el("p", { class: "error" }, e.message));
      else showMessage(addResult, e.message, "error");
    } finally {
      setBusy(addForm, false);
    }
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest(".person");
    if (!card) return;
    const id = card.dataset.personId;
    const name = card.dataset.personName;
    const results = card.querySelector(".results");
    const action = button.dataset.action;
    if (action === "samples") {
      const list = card.querySelector(".samples");
      list.hidden = !list.hidden;
      button.setAttribute("aria-expanded", String(!list.hidden));
    } else if (action === "rename") {
      const form = card.querySelector("form.rename");
      form.hidden = false;
      form.querySelector("input").focus();
    } else if (action === "cancel-rename") {
      card.querySelector("form.rename").hidden = true;
    } else if (action === "delete") {
      const n = card.dataset.samples;
      if (!window.confirm(`Delete ${name} and their ${n} face sample(s)? This cannot be undone.`)) return;
      button.disabled = true;
      try {
        await api(`/api/people/${id}`, { method: "DELETE" });
        await reloadPeople();
      } catch (e) {
        showMessage(results, e.message, "error");
        button.disabled = false;
      }
    } else if (action === "remove-sample") {
      const sid = button.dataset.sampleId;
      const last = card.querySelectorAll(".samples li").length <= 1;
      const question = last
        ? `This is ${name}'s last sample: removing it removes ${name}. Go on?`
        : `Remove this face sample from ${name}?`;
      if (!window.confirm(question)) return;
      button.disabled = true;
      try {
        await api(`/api/people/${id}/faces/${sid}`, { method: "DELETE" });
        await reloadPeople();
      } catch (e) {
        showMessage(results, e.message, "error");
        button.disabled = false;
      }
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.rename");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(".person");
    const results = card.querySelector(".results");
    setBusy(form, true);
    try {
      await api(`/api/people/${card.dataset.personId}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: form.elements.name.value }),
      });
      await reloadPeople();
    } catch (e) {
      showMessage(results, e.message, "error");
      setBusy(form, false);
    }
  });

  document.addEventListener("change", async (event) => {
    const input = event.target.closest('input[data-action="add-faces"]');
    if (!input || !input.files.length) return;
    const card = input.closest(".person");
    const results = card.querySelector(".results");
    const body = new FormData();
    for (const f of input.files) body.append("files", f);
    results.replaceChildren(el("p", { class: "muted" }, "Checking the photos…"));
    try {
      const data = await api(`/api/people/${card.dataset.personId}/faces`, { method: "POST", body });
      const added = data.results.filter((r) => r.outcome === "added").length;
      await reloadPeople();
      const fresh = document.querySelector(`.person[data-person-id="${card.dataset.personId}"] .results`);
      if (fresh) showOutcomes(fresh, data.results, el("p", { class: added ? "ok" : "error" }, `${added} of ${data.results.length} photo(s) added.`));
    } catch (e) {
      showMessage(results, e.message, "error");
    }
  });
}

// --- Events -------------------------------------------------------------------------------

function initEvents() {
  localTimes();
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.name-face");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(".event");
    const results = card.querySelector(".results");
    setBusy(form, true);
    try {
      const data = await api(`/api/events/${form.dataset.eventId}/name`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: form.elements.name.value }),
      });
      const nameNode = card.querySelector(".event-name");
      if (nameNode) nameNode.textContent = data.person.name;
      form.replaceWith(el("p", { class: "ok small" },
        `Enrolled as ${data.person.name} (${data.person.samples} sample${data.person.samples === 1 ? "" : "s"}).`));
      results.replaceChildren();
    } catch (e) {
      showMessage(results, e.message, "error");
      setBusy(form, false);
    }
  });

  // "Wrong?": "not X" (a negative of X) or "this is Y" (Y's sample and X's negative).
  async function correct(box, body) {
    const card = box.closest(".event");
    const results = card.querySelector(".results");
    setBusy(box, true);
    try {
      const data = await api(`/api/events/${box.dataset.eventId}/correct`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      box.replaceWith(el("p", { class: "ok small correction", "data-correction": data.correction },
        `Corrected: ${data.correction}`));
      results.replaceChildren();
    } catch (e) {
      showMessage(results, e.message, "error");
      setBusy(box, false);
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest('.correct-face button[data-action="not"]');
    if (!button) return;
    const box = button.closest(".correct-face");
    correct(box, { not: box.dataset.name });
  });
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form.is-person");
    if (!form) return;
    event.preventDefault();
    correct(form.closest(".correct-face"), { is: form.elements.is.value });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "live") initLive();
  else if (page === "people") initPeople();
  else if (page === "events") initEvents();
});
