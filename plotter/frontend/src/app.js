// The plotter's page: the time zone switch, and the start (loaded last: the other scripts
// have added their functions to window.plotterLib).
"use strict";
(function (lib) {
  const { $, api, status, fmtTime, NS, PALETTE, state } = lib;

  // -- zone ---------------------------------------------------------------------------
  try {
    const list = $("zones");
    const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
    for (const z of ["UTC", local, ...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [])]) {
      const o = document.createElement("option"); o.value = z; list.appendChild(o);
    }
  } catch (e) { /* an old browser: UTC and typed zones */ }
  $("zone").addEventListener("change", () => {
    const z = $("zone").value.trim() || "UTC";
    try { new Intl.DateTimeFormat("en", { timeZone: z }); } catch (e) { status(`unknown time zone ${z}`, true); return; }
    state.zone = z;
    if (state.last) lib.draw(state.last);
    if (state.view) { $("start").value = fmtTime(state.view.start); $("end").value = fmtTime(state.view.end); }
  });

  // -- start --------------------------------------------------------------------------
  window.addEventListener("resize", () => {
    if (state.plot) state.plot.setSize({ width: $("chart").clientWidth, height: state.plot.height });
  });
  async function start() {
    // A view in the address is asked for at once, while the tree loads (first paint).
    const early = new URLSearchParams(location.hash.slice(1));
    const s0 = Number(early.get("start")), e0 = Number(early.get("end"));
    const u0 = (early.get("s") || "").split(",").filter(Boolean);
    if (u0.length && s0 && e0 > s0 && !new URLSearchParams(location.search).get("p")) {
      const width = lib.plotWidth();
      state.pending.set(lib.requestKey(u0, { start: s0, end: e0 }, width),
        api("api/data?" + u0.map((u) => "uuid=" + u).join("&") +
            `&start=${Math.floor(s0)}&end=${Math.ceil(e0)}&width=${width}&compact=1`).catch(() => null));
    }
    try { await lib.loadTree(); status(""); } catch (err) {
      status(err.status === 503 ? "database unreachable: retrying…" : err.message, true);
      setTimeout(start, 2000);
      return;
    }
    // A permalink (?p=ID) or a view in the address (#s=UUID,UUID&start=NS&end=NS&zone=Z).
    const pid = new URLSearchParams(location.search).get("p");
    if (pid) {
      try { await lib.openPermalink(pid); } catch (err) { status(`permalink ${pid}: ${err.message}`, true); }
      return;
    }
    const h = new URLSearchParams(location.hash.slice(1));
    const uuids = (h.get("s") || "").split(",").filter((u) => state.streams.has(u));
    if (!uuids.length) return;
    if (h.get("zone")) { state.zone = h.get("zone"); $("zone").value = state.zone; }
    uuids.forEach((u, i) => {
      state.selected.push({ entry: state.streams.get(u), color: PALETTE[i % PALETTE.length], show: true });
      for (const box of document.querySelectorAll(`#tree .stream[data-uuid="${u}"] input`)) box.checked = true;
    });
    const s = Number(h.get("start")), e = Number(h.get("end"));
    if (s && e && e > s) await lib.setView({ start: s, end: e }, false);
    else await lib.showAll(false);
  }
  start();
})(window.plotterLib);
