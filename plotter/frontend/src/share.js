// The plotter's exports (CSV, PNG) and permalinks.
"use strict";
(function (lib) {
  const { $, api, status, PALETTE, state } = lib;

  // -- export -------------------------------------------------------------------------
  $("csv").addEventListener("click", () => {
    if (!state.view || !state.selected.length) return;
    const q = state.selected.map((x) => "uuid=" + x.entry.uuid).join("&") +
      `&start=${Math.floor(state.view.start)}&end=${Math.ceil(state.view.end)}&width=${lib.plotWidth()}`;
    const a = document.createElement("a");
    a.href = "api/csv?" + q; a.download = ""; document.body.appendChild(a); a.click(); a.remove();
  });
  $("png").addEventListener("click", () => {
    if (!state.plot) return;
    const a = document.createElement("a");
    a.href = state.plot.ctx.canvas.toDataURL("image/png");
    a.download = "plotter.png"; document.body.appendChild(a); a.click(); a.remove();
  });

  // -- permalinks ---------------------------------------------------------------------
  $("permalink").addEventListener("click", async () => {
    if (!state.view || !state.selected.length) { status("Select streams first", true); return; }
    const kind = $("plink-kind").value;
    const span = Math.round(state.view.end - state.view.start);
    const window_ = kind === "fixed"
      ? { kind, start: Math.floor(state.view.start), end: Math.ceil(state.view.end) }
      : { kind, span };
    const doc = {
      streams: state.selected.map((x) => x.entry.uuid), window: window_, zone: state.zone,
      view: { colors: Object.fromEntries(state.selected.map((x) => [x.entry.uuid, x.color])),
              hidden: state.selected.filter((x) => !x.show).map((x) => x.entry.uuid),
              axes: state.axes,
              streamAxes: Object.fromEntries(state.selected.filter((x) => x.axis).map((x) => [x.entry.uuid, x.axis])) },
    };
    try {
      const made = await api("api/permalinks", { method: "POST", body: JSON.stringify(doc),
        headers: { "Content-Type": "application/json" } });
      const url = new URL(made.url, location.href).href;
      $("plink-url").hidden = false;
      $("plink-url").value = url;
      $("plink-url").select();
      if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
      status("Permalink made");
    } catch (err) { status(err.message, true); }
  });
  async function openPermalink(pid) {
    const p = await api("api/permalinks/" + encodeURIComponent(pid));
    state.zone = p.zone; $("zone").value = p.zone;
    const colors = (p.view && p.view.colors) || {};
    const hidden = new Set((p.view && p.view.hidden) || []);
    const streamAxes = (p.view && p.view.streamAxes) || {};
    state.axes = (p.view && p.view.axes) || {};
    p.streams.filter((u) => state.streams.has(u)).forEach((u, i) => {
      state.selected.push({ entry: state.streams.get(u), color: colors[u] || PALETTE[i % PALETTE.length],
                            show: !hidden.has(u), axis: streamAxes[u] });
      for (const box of document.querySelectorAll(`#tree .stream[data-uuid="${u}"] input`)) box.checked = true;
    });
    state.permalink = p;
    if (state.selected.length) await lib.setView({ start: p.start, end: p.end }, false);
  }

  Object.assign(lib, { openPermalink });
})(window.plotterLib);
