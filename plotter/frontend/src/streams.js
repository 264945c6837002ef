// The plotter's Select Streams tree and its "show info" menu.
"use strict";
(function (lib) {
  const { $, api, status, fmtTime, PALETTE, state } = lib;

  // -- Select Streams -----------------------------------------------------------------
  async function loadTree() {
    const body = await api("api/streams");
    state.streams = new Map(body.streams.map((s) => [s.uuid, s]));
    const tree = $("tree");
    tree.textContent = "";
    const add = (parent, node, depth) => {
      const det = document.createElement("details");
      det.open = true;
      const sum = document.createElement("summary");
      sum.textContent = node.name || "(no collection)";
      det.appendChild(sum);
      for (const child of node.children) add(det, child, depth + 1);
      for (const s of node.streams) det.appendChild(streamRow(s));
      parent.appendChild(det);
    };
    for (const node of body.tree) add(tree, node, 0);
    if (!body.streams.length) tree.textContent = "No streams in BTrDB yet.";
    applyFilter();
  }
  function streamRow(s) {
    const label = document.createElement("label");
    label.className = "stream";
    label.dataset.uuid = s.uuid;
    label.dataset.path = s.path.toLowerCase();
    label.title = s.path;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = state.selected.some((x) => x.entry.uuid === s.uuid);
    box.addEventListener("change", () => toggleStream(s.uuid, box.checked));
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = s.name;
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = s.unit;
    label.append(box, name, unit);
    label.addEventListener("contextmenu", (ev) => openMenu(ev, s.uuid));
    return label;
  }
  function applyFilter() {
    const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of $("tree").querySelectorAll(".stream")) {
      row.classList.toggle("hidden", !words.every((w) => row.dataset.path.includes(w)));
    }
    // Hide folders without a visible stream; open those with one while filtering.
    const dets = [...$("tree").querySelectorAll("details")].reverse();
    for (const det of dets) {
      const any = det.querySelector(".stream:not(.hidden)") !== null;
      det.classList.toggle("hidden", !any);
      if (words.length && any) det.open = true;
    }
  }
  $("filter").addEventListener("input", applyFilter);

  async function toggleStream(uuid, on) {
    if (on) {
      if (state.selected.some((x) => x.entry.uuid === uuid)) return;
      const used = new Set(state.selected.map((x) => x.color));
      const color = PALETTE.find((c) => !used.has(c)) || PALETTE[state.selected.length % PALETTE.length];
      state.selected.push({ entry: state.streams.get(uuid), color, show: true });
    } else {
      state.selected = state.selected.filter((x) => x.entry.uuid !== uuid);
    }
    for (const box of document.querySelectorAll(`#tree .stream[data-uuid="${uuid}"] input`)) box.checked = on;
    if (!state.selected.length) { lib.destroyPlot(); return; }
    if (!state.view) await lib.showAll(false);
    else lib.refresh();
  }
  // -- show info ----------------------------------------------------------------------
  let menuUuid = null;
  function openMenu(ev, uuid) {
    ev.preventDefault();
    menuUuid = uuid;
    const m = $("menu");
    m.style.left = ev.clientX + "px"; m.style.top = ev.clientY + "px";
    m.hidden = false;
  }
  document.addEventListener("click", () => { $("menu").hidden = true; });
  $("menu").querySelector('[data-action="info"]').addEventListener("click", () => showInfo(menuUuid));
  async function showInfo(uuid) {
    let info;
    try { info = await api("api/streams/" + uuid); } catch (err) { status(err.message, true); return; }
    $("info-title").textContent = info.path;
    const t = $("info-table");
    t.textContent = "";
    const row = (k, v, cls) => {
      const r = t.insertRow(); r.insertCell().textContent = k;
      const c = r.insertCell(); c.textContent = v; if (cls) c.className = cls; return c;
    };
    const u = row("UUID", info.uuid, "uuid");
    u.id = "info-uuid";
    u.title = "click to copy";
    u.addEventListener("click", () => {
      if (navigator.clipboard) navigator.clipboard.writeText(info.uuid).then(() => status("UUID copied"));
    });
    row("Collection", info.collection);
    row("Name", info.name);
    row("Unit", info.unit);
    row("Tags", Object.entries(info.tags).map(([k, v]) => `${k}=${v}`).join(", "));
    row("Annotations", Object.entries(info.annotations).map(([k, v]) => `${k}=${v}`).join("\n") || "none");
    row("First point", fmtTime(info.first));
    row("Last point", fmtTime(info.last));
    row("Points", info.count.toLocaleString("en"));
    $("info-curl").textContent = info.curl;
    $("info").showModal();
  }

  Object.assign(lib, { loadTree, openMenu, toggleStream });
})(window.plotterLib);
