// facesense Unknowns page: name, merge, ignore recurring unknown faces, and take out a
// wrong track. Every change goes through /api/unknowns; the groups are then re-read
// from the server-rendered page. Text from the server is inserted with textContent only.
// Wrapped in a function so that its own names do not clash with app.js's globals.
(() => {
  "use strict";

  // el, api, showMessage, setBusy and localTimes are app.js's (loaded first on every page).
  function postJson(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  const pageResult = () => document.getElementById("page-result");

  // Re-read the groups (and the counts) from the page, keeping open track lists open.
  async function reloadClusters() {
    const response = await fetch(window.location.pathname + window.location.search, { credentials: "same-origin" });
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("clusters");
    const grid = document.getElementById("clusters");
    if (!fresh || !grid) return;
    const open = new Set([...grid.querySelectorAll(".cluster")]
      .filter((c) => !c.querySelector(".records").hidden).map((c) => c.dataset.clusterId));
    for (const card of fresh.querySelectorAll(".cluster")) {
      if (open.has(card.dataset.clusterId)) {
        card.querySelector(".records").hidden = false;
        card.querySelector('[data-action="records"]').setAttribute("aria-expanded", "true");
      }
    }
    localTimes(fresh);
    grid.replaceWith(fresh);
    const count = doc.getElementById("unknowns-count");
    const shown = document.getElementById("unknowns-count");
    if (count && shown) shown.textContent = count.textContent;
    const names = doc.getElementById("people-names");
    const list = document.getElementById("people-names");
    if (names && list) list.replaceWith(names);
  }

  // Do one change; on success re-read the groups and say what happened at the top.
  async function change(card, busyRoot, request, message) {
    const results = card.querySelector(".results");
    setBusy(busyRoot, true);
    try {
      const data = await request();
      await reloadClusters();
      showMessage(pageResult(), message(data), "ok");
    } catch (e) {
      showMessage(results, e.message, "error");
      setBusy(busyRoot, false);
    }
  }

  function init() {
    localTimes();

    document.addEventListener("submit", (event) => {
      const form = event.target.closest("form.name-cluster, form.merge-cluster");
      if (!form) return;
      event.preventDefault();
      const card = form.closest(".cluster");
      const id = card.dataset.clusterId;
      if (form.classList.contains("name-cluster")) {
        const name = form.elements.name.value;
        change(card, form, () => postJson(`/api/unknowns/${id}/name`, { name }), (data) => {
          const n = data.samples_added;
          return el("span", {},
            `Group #${data.cluster} is ${data.person.name}: ${n} face${n === 1 ? "" : "s"} enrolled. `,
            el("a", { href: "/people", class: "person-link", "data-person-id": String(data.person.id) },
              `See ${data.person.name} on the People page`));
        });
      } else {
        const into = form.elements.into.value;
        change(card, form, () => postJson(`/api/unknowns/${into}/merge`, { other: Number(id) }),
          (data) => `Merged group #${id} into #${data.id}: ${data.records} track${data.records === 1 ? "" : "s"}.`);
      }
    });

    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const card = button.closest(".cluster");
      if (!card) return;
      const id = card.dataset.clusterId;
      const action = button.dataset.action;
      if (action === "records") {
        const list = card.querySelector(".records");
        list.hidden = !list.hidden;
        button.setAttribute("aria-expanded", String(!list.hidden));
      } else if (action === "ignore") {
        const ignored = button.dataset.ignored !== "true";
        const all = document.getElementById("clusters").dataset.all === "true";
        change(card, button, () => postJson(`/api/unknowns/${id}/ignore`, { ignored }), () => (ignored
          ? `Group #${id} ignored${all ? "" : " (Show all lists it)"}.`
          : `Group #${id} no longer ignored.`));
      } else if (action === "remove-record") {
        const rid = button.dataset.recordId;
        const last = card.querySelectorAll(".records li").length <= 1;
        const question = last
          ? `This is group #${id}'s only track: taking it out removes the group. Go on?`
          : `Take this track out of group #${id} (it is somebody else)?`;
        if (!window.confirm(question)) return;
        change(card, button, () => api(`/api/unknowns/records/${rid}`, { method: "DELETE" }),
          (data) => (data.cluster
            ? `Took track ${rid} out of group #${id}: ${data.cluster.records} left.`
            : `Took track ${rid} out; group #${id} is gone.`));
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.page === "unknowns") init();
  });
})();
