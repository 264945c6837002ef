// Reusing windows the page already holds for a view that only partly overlaps them
// (loaded after lib.js). A pan, a shift-drag or a jump by less than the view's span needs
// the same point width (the server's choice depends on the span and the width only), so
// only the windows on either side that the page lacks are fetched, at that point width,
// and merged with those it has: a quarter-width pan asks for a quarter of the data.
"use strict";
(function (lib) {
  const { api, state } = lib;

  // The server's choice of point width for a span over a width (plotter/query.py,
  // choose_pointwidth; docs/plotter-api.md): log2 of ns per pixel, rounded.
  function pointWidth(span, width) {
    const perPixel = span / width;
    return perPixel < 1.5 ? 0 : Math.min(62, Math.floor(Math.log2(perPixel) + 0.5));
  }
  const down = (t, w) => Math.floor(t / w) * w;
  const up = (t, w) => Math.ceil(t / w) * w;

  // [start, end) of the windows an answer holds every one of (absent ones are gaps).
  function covered(answer) {
    if (answer.cover) return answer.cover;
    const w = 2 ** answer.streams[0].pw;
    return [down(answer.start, w), up(answer.end, w)];
  }

  // The answer in the page to build a view from: the same streams, as windows at the
  // point width the server would choose for the view at this width (the first view may
  // have been asked for at an estimated width), overlapping it by at least a quarter.
  // Null when there is none (then the whole view is fetched).
  function base(uuids, view, width) {
    // ns times near 2^60 are Numbers to within 256 ns: windows of 2^10 ns and more are
    // told apart by their middles, and asked for from a middle (BTrDB rounds down).
    const pw = pointWidth(view.end - view.start, width);
    if (pw < 10) return null;
    const w = 2 ** pw, need = [down(view.start, w), up(view.end, w)];
    let best = null, bestOverlap = 0;
    for (const a of [state.last, ...state.cache.values()]) {
      if (!a || a.streams.length !== uuids.length) continue;
      if (!a.streams.every((s, i) => s.uuid === uuids[i] && s.kind === "windows" && s.pw === pw)) continue;
      const [c0, c1] = covered(a);
      const overlap = Math.min(c1, need[1]) - Math.max(c0, need[0]);
      if (overlap > bestOverlap) { best = a; bestOverlap = overlap; }
    }
    return best && bestOverlap >= (need[1] - need[0]) / 4 ? best : null;
  }

  // The view's answer from ``a`` and the missing windows on either side, fetched at a's
  // point width; null when no answer in the page can be reused. Throws as api() does.
  async function fetchAround(uuids, view, width) {
    const a = base(uuids, view, width);
    if (!a) return null;
    const pw = a.streams[0].pw, w = 2 ** pw;
    const [c0, c1] = covered(a);
    const need = [down(view.start, w), up(view.end, w)];
    const pieces = [];
    if (need[0] < c0) pieces.push([need[0], Math.min(c0, need[1])]);
    if (need[1] > c1) pieces.push([Math.max(c1, need[0]), need[1]]);
    const q = uuids.map((u) => "uuid=" + u).join("&");
    const fetched = await Promise.all(pieces.map(([s, e]) =>
      api(`api/data?${q}&start=${Math.round(s + w / 2)}&end=${Math.round(e - w / 2)}` +
          `&width=${width}&pw=${pw}&compact=1`)));
    state.stats.requests += fetched.length;
    state.stats.partial = { pieces, pw };
    // Each source gives the windows whose middles are in its part of the view.
    const parts = [[c0, c1, (i) => a.streams[i]],
      ...pieces.map(([s, e], j) => [s, e, (i) => fetched[j].streams[i]])].sort((x, y) => x[0] - y[0]);
    const streams = a.streams.map((old, i) => {
      const out = { ...old, t0: 0, unit: 1, expanded: true, times: [], min: [], mean: [], max: [], count: [] };
      for (const [p0, p1, pick] of parts) {
        const src = pick(i);
        const lo = Math.max(p0, need[0]), hi = Math.min(p1, need[1]);
        let acc = 0;
        for (let k = 0; k < src.times.length; k++) {
          let t;
          if (src.expanded) t = src.times[k];
          else { acc += src.times[k]; t = src.t0 + acc * src.unit; }
          const mid = t + w / 2;
          if (mid < lo || mid >= hi) continue;
          out.times.push(t); out.min.push(src.min[k]); out.mean.push(src.mean[k]);
          out.max.push(src.max[k]); out.count.push(src.count[k]);
        }
      }
      return out;
    });
    return { start: view.start, end: view.end, width, streams, cover: need };
  }

  Object.assign(lib, { fetchAround, pointWidth });
})(window.plotterLib);
