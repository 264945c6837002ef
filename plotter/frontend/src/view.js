// The plotter's view: navigation (quick ranges, zoom, pan, back and forward), fetching a
// view's data, and follow-now.
"use strict";
(function (lib) {
  const { $, api, status, fmtTime, parseTime, NS, state } = lib;

  // -- the view -----------------------------------------------------------------------
  async function bracket(init) {
    const q = state.selected.map((x) => "uuid=" + x.entry.uuid).join("&");
    return api("api/bracket?" + q, init);
  }
  // What follow-now asks by itself every 5 s does not keep a session alive (the server
  // does not count a request with this header as use), so an unattended page following
  // now is still signed out after the idle time.
  const PASSIVE = { headers: { "X-QSS-Passive": "1" } };
  async function showAll(remember = true) {
    const b = await bracket();
    if (b.first === null) { status("The selected streams hold no data yet."); setView(null, remember); refresh(); return; }
    const pad = Math.max(1e6, (b.last - b.first) * 0.01);
    return setView({ start: b.first - pad, end: b.last + pad }, remember);
  }
  async function quickRange(seconds) {
    if (!state.selected.length) return;
    if (seconds === "all") return showAll();
    const b = await bracket();
    const end = (b.last === null ? Date.now() * 1e6 : b.last) + 1;
    setView({ start: end - seconds * NS, end: end + seconds * NS * 0.01 });
  }
  function setView(view, remember = true) {
    if (remember && state.view) { state.history.push(state.view); state.future = []; }
    state.view = view;
    return refresh();
  }
  function zoomTo(start, end) {
    if (end - start < 1000) { const mid = (start + end) / 2; start = mid - 500; end = mid + 500; }
    setView({ start, end });
  }
  function pan(fraction) {
    const v = state.view; if (!v) return Promise.resolve();
    const d = (v.end - v.start) * fraction;
    return setView({ start: v.start + d, end: v.end + d });
  }
  function back() {
    if (!state.history.length) return Promise.resolve();
    state.future.push(state.view); state.view = state.history.pop(); return refresh();
  }
  // For the benchmark: ms from a pan (or back) to the redrawn chart.
  state.timeNavigation = async (fraction) => { const t0 = performance.now(); await pan(fraction); return performance.now() - t0; };
  state.timeBack = async () => { const t0 = performance.now(); await back(); return performance.now() - t0; };
  $("back").addEventListener("click", back);
  $("forward").addEventListener("click", () => {
    if (!state.future.length) return;
    state.history.push(state.view); state.view = state.future.pop(); refresh();
  });
  $("reset").addEventListener("click", () => showAll());
  for (const b of document.querySelectorAll("#ranges button")) {
    b.addEventListener("click", () => quickRange(b.dataset.range === "all" ? "all" : Number(b.dataset.range)));
  }
  $("go").addEventListener("click", () => {
    const s = parseTime($("start").value), e = parseTime($("end").value);
    if (s === null || e === null || e <= s) { status("Start and end: ISO times (UTC unless a zone is given), end after start", true); return; }
    setView({ start: s, end: e });
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT") return;
    if (ev.altKey && ev.key === "ArrowLeft") $("back").click();
    else if (ev.altKey && ev.key === "ArrowRight") $("forward").click();
    else if (ev.key === "ArrowLeft") pan(-0.25);
    else if (ev.key === "ArrowRight") pan(0.25);
    else return;
    ev.preventDefault();
  });

  // -- data ---------------------------------------------------------------------------
  function plotWidth() {
    return Math.max(100, Math.round(state.plot ? state.plot.bbox.width / devicePixelRatio : $("chart").clientWidth - 120));
  }
  function requestKey(uuids, v, width) {
    return `${uuids.join(",")}|${Math.round(v.start)}|${Math.round(v.end)}|${width}`;
  }
  let retryTimer = null;
  async function refresh() {
    clearTimeout(retryTimer);
    if (!state.view || !state.selected.length) return;
    const v = state.view;
    // The address bar holds the view: reload or share it to see the same streams and range.
    history.replaceState(null, "", location.pathname + location.search + "#s=" + state.selected.map((x) => x.entry.uuid).join(",") +
      `&start=${Math.floor(v.start)}&end=${Math.ceil(v.end)}&zone=${encodeURIComponent(state.zone)}`);
    $("start").value = fmtTime(v.start);
    $("end").value = fmtTime(v.end);
    const uuids = state.selected.map((x) => x.entry.uuid);
    const width = plotWidth();
    const key = requestKey(uuids, v, width);
    // Draw what the page has at once (the same view from the cache, or the last answer
    // rescaled), then ask the server for this view at this width.
    if (state.cache.has(key)) { lib.draw(state.cache.get(key)); return; }
    if (state.last) lib.draw(state.last);
    const seq = ++state.fetchSeq;
    const q = uuids.map((u) => "uuid=" + u).join("&") +
      `&start=${Math.floor(v.start)}&end=${Math.ceil(v.end)}&width=${width}&compact=1`;
    const t0 = performance.now();
    try {
      const early = state.pending.get(key);
      state.pending.delete(key);
      let answer = early ? await early : null;
      let asked = answer ? 1 : 0;
      // A view that partly overlaps windows in the page: only the rest is fetched.
      if (!answer) answer = await lib.fetchAround(uuids, v, width);
      if (!answer) { answer = await api("api/data?" + q); asked = 1; }
      state.stats.requests += asked;           // (fetchAround counts its own)
      if (seq !== state.fetchSeq) return;      // a newer view was asked for meanwhile
      state.stats.lastWidth = width;
      state.stats.lastPw = answer.streams.map((s) => s.pw);
      state.stats.lastFetchMs = performance.now() - t0;
      answer.key = key;
      state.cache.set(key, answer);
      if (state.cache.size > 60) state.cache.delete(state.cache.keys().next().value);
      status("");
      lib.draw(answer);
    } catch (err) {
      if (seq !== state.fetchSeq) return;
      if (err.status === 503 || err.status === undefined) {
        status("database unreachable: retrying…", true);
        retryTimer = setTimeout(refresh, 2000);
      } else {
        status(err.message, true);
      }
    }
  }

  // -- follow now ---------------------------------------------------------------------
  // Polling: one small request every few seconds is enough for a file a minute, passes
  // every proxy, and needs no connection held open per browser.
  let followTimer = null;
  $("follow").addEventListener("change", () => {
    clearInterval(followTimer);
    if ($("follow").checked) { follow(); followTimer = setInterval(follow, 5000); }
  });
  // Only what is new is fetched: the windows from the last one drawn (which may have grown)
  // to the newest point, at the view's point width, appended to what the page has.
  async function follow() {
    if (!state.view || !state.selected.length) return;
    const b = await bracket(PASSIVE).catch(() => null);
    if (!b || b.last === null) return;
    const span = state.view.end - state.view.start;
    const end = b.last + span * 0.02;
    if (end <= state.view.end) return;
    const view = { start: end - span, end };
    const old = state.last;
    const uuids = state.selected.map((x) => x.entry.uuid);
    const same = old && old.streams.length === uuids.length &&
      old.streams.every((s, i) => s.uuid === uuids[i] && s.kind === "windows" && s.pw === old.streams[0].pw);
    if (!same) { state.view = view; return refresh(); }
    const pw = old.streams[0].pw, w = 2 ** pw;
    const abs = (s, k) => (s.expanded ? s.times[k] : s.t0 + s.times[k] * s.unit);
    const lastDrawn = Math.max(view.start, ...old.streams.filter((s) => s.times.length)
      .map((s) => abs(s, s.times.length - 1)));
    const from = Math.max(view.start, Math.floor(lastDrawn / w) * w);
    let fresh;
    try {
      fresh = await api("api/data?" + uuids.map((u) => "uuid=" + u).join("&") +
        `&start=${Math.floor(from)}&end=${Math.ceil(end)}&width=${old.width}&pw=${pw}&compact=1`, PASSIVE);
    } catch (err) { return; }
    const merged = { ...old, start: view.start, end: view.end, data: null, dataKey: null,
      streams: old.streams.map((s, i) => {
        const n = fresh.streams[i];
        const times = [], lo = [], mid = [], hi = [], count = [];
        const add = (t, k, src) => { times.push(t); lo.push(src.min[k]); mid.push(src.mean[k]); hi.push(src.max[k]); count.push(src.count[k]); };
        let acc = 0;
        const newTimes = n.times.map((d) => { acc += d; return n.t0 + acc * n.unit; });
        const firstNew = newTimes.length ? newTimes[0] : Infinity;
        for (let k = 0; k < s.times.length; k++) {
          const t = abs(s, k);
          if (t + w > view.start && t < firstNew) add(t, k, s);
        }
        for (let k = 0; k < n.times.length; k++) add(newTimes[k], k, n);
        return { ...s, t0: 0, unit: 1, times, min: lo, mean: mid, max: hi, count, expanded: true };
      }) };
    state.stats.follows = (state.stats.follows || 0) + 1;
    state.stats.lastFollow = { from: Math.floor(from), windows: fresh.streams.map((x) => x.times.length) };
    state.view = view;
    history.replaceState(null, "", location.pathname + location.search + "#s=" + uuids.join(",") +
      `&start=${Math.floor(view.start)}&end=${Math.ceil(view.end)}&zone=${encodeURIComponent(state.zone)}`);
    lib.draw(merged);
  }
  state.follow = follow;

  Object.assign(lib, { bracket, showAll, setView, zoomTo, refresh, plotWidth, requestKey });
})(window.plotterLib);
