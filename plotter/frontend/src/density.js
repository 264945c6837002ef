// The plotter's data-density strip (loaded after lib.js).
"use strict";
(function (lib) {
  const { $, api, state } = lib;

  // -- the data-density strip: points per window over all the selected streams' data ----
  const density = { key: null, first: null, last: null, bins: null };
  async function updateDensity() {
    const c = $("density");
    const uuids = state.selected.map((x) => x.entry.uuid);
    if (!uuids.length) { c.getContext("2d").clearRect(0, 0, c.width, c.height); density.key = null; return; }
    const key = uuids.join(",");
    if (density.key !== key) {
      density.key = key;
      const b = await lib.bracket().catch(() => null);
      if (!b || b.first === null || density.key !== key) return;
      const width = Math.max(100, c.clientWidth);
      const q = uuids.map((u) => "uuid=" + u).join("&") +
        `&start=${b.first}&end=${b.last + 1}&width=${width}&compact=1`;
      const answer = await api("api/data?" + q).catch(() => null);
      if (!answer || density.key !== key) return;
      const bins = new Float64Array(width);
      for (const s of answer.streams) {
        let acc = 0;
        for (let i = 0; i < s.times.length; i++) {
          acc += s.times[i];
          const t = s.t0 + acc * s.unit;
          // (the first window starts before the first point: it counts at the left edge)
          const px = Math.min(width - 1, Math.max(0, Math.floor((t - b.first) / (b.last + 1 - b.first) * width)));
          bins[px] += s.kind === "raw" ? 1 : s.count[i];
        }
      }
      Object.assign(density, { first: b.first, last: b.last + 1, bins });
    }
    drawDensity();
  }
  function drawDensity() {
    const c = $("density");
    if (!density.bins) return;
    const w = density.bins.length;
    c.width = w;
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, c.height);
    const max = Math.max(1, ...density.bins);
    for (let x = 0; x < w; x++) {
      const n = density.bins[x];
      if (!n) continue;
      const level = Math.log1p(n) / Math.log1p(max);      // log: sparse data stays visible
      g.fillStyle = `rgba(29, 53, 87, ${0.25 + 0.75 * level})`;
      g.fillRect(x, 4, 1, c.height - 8);
    }
    if (state.view) {                                    // the view, outlined
      const span = density.last - density.first;
      const a = (state.view.start - density.first) / span * w, b = (state.view.end - density.first) / span * w;
      g.strokeStyle = "#d62728"; g.lineWidth = 2;
      g.strokeRect(Math.max(1, a), 1, Math.max(2, Math.min(w - 1, b) - Math.max(1, a)), c.height - 2);
    }
  }
  $("density").addEventListener("click", (ev) => {
    if (!density.bins || !state.view) return;
    const c = $("density");
    const t = density.first + (ev.offsetX / c.clientWidth) * (density.last - density.first);
    const span = state.view.end - state.view.start;
    lib.setView({ start: t - span / 2, end: t + span / 2 });
  });
  state.density = density;

  lib.updateDensity = updateDensity;
})(window.plotterLib);
