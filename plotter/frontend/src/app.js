// The plotter's page. Everything it shows comes from the JSON API (docs/plotter-api.md).
// Times from the API are ns; the chart's x scale is in seconds (uPlot's time scale).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#e7969c",
    "#6b6ecf", "#b5cf6b", "#843c39", "#d6616b", "#7b4173", "#3182bd"];
  const NS = 1e9;

  const state = {
    streams: new Map(),      // uuid -> {uuid, name, collection, unit, path}
    selected: [],            // [{entry, color, show}]
    view: null,              // {start, end} in ns (Numbers)
    history: [], future: [],
    cache: new Map(),        // request key -> answer
    last: null,              // last answer drawn
    zone: "UTC",
    axes: {},                // axis id -> {label, side, auto, min, max}, as the user set them
    plot: null,
    fetchSeq: 0,
    pending: new Map(),      // request key -> answer promise asked for before it was needed
    stats: { requests: 0, lastWidth: null, lastPw: [] },
  };
  window.plotter = state;    // for the browser tests and the curious

  // -- helpers ------------------------------------------------------------------------
  function status(text, error) {
    const el = $("status");
    el.textContent = text || "";
    el.className = error ? "error" : "";
  }
  async function api(path, init) {
    const r = await fetch(path, init);
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) {
      const err = new Error((body && body.error) || `HTTP ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return body;
  }
  function fmtTime(ns) {
    if (ns === null || ns === undefined) return "—";
    const d = new Date(ns / 1e6);
    try {
      const s = d.toLocaleString("sv-SE", { timeZone: state.zone, hour12: false });
      const ms = String(Math.floor(ns / 1e6) % 1000).padStart(3, "0");
      return `${s}.${ms}`;
    } catch (e) { return d.toISOString(); }
  }
  function parseTime(text) {
    // ISO times; without a zone they are read as UTC.
    const t = text.trim();
    if (/^\d{15,}$/.test(t)) return Number(t);
    const withZone = /(Z|[+-]\d\d:?\d\d)$/.test(t) ? t : t.replace(" ", "T") + "Z";
    const ms = Date.parse(withZone);
    return isNaN(ms) ? null : ms * 1e6;
  }
  function fmtNum(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(4) : v.toPrecision(6);
  }
  function spanText(ns) {
    const s = ns / NS;
    if (s < 1) return `${(s * 1000).toPrecision(3)} ms`;
    if (s < 120) return `${s.toPrecision(3)} s`;
    if (s < 7200) return `${(s / 60).toPrecision(3)} min`;
    if (s < 172800) return `${(s / 3600).toPrecision(3)} h`;
    return `${(s / 86400).toPrecision(3)} days`;
  }

  // Shared with the page's other scripts (density.js, measure.js, panels.js), which add
  // their functions to it.
  const lib = window.plotterLib = { $, api, status, fmtTime, fmtNum, NS, state };

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
    if (!state.selected.length) { destroyPlot(); return; }
    if (!state.view) await showAll(false);
    else refresh();
  }

  // -- the view -----------------------------------------------------------------------
  async function bracket() {
    const q = state.selected.map((x) => "uuid=" + x.entry.uuid).join("&");
    return api("api/bracket?" + q);
  }
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
    if (state.cache.has(key)) { draw(state.cache.get(key)); return; }
    if (state.last) draw(state.last);
    const seq = ++state.fetchSeq;
    const q = uuids.map((u) => "uuid=" + u).join("&") +
      `&start=${Math.floor(v.start)}&end=${Math.ceil(v.end)}&width=${width}&compact=1`;
    const t0 = performance.now();
    try {
      const early = state.pending.get(key);
      state.pending.delete(key);
      const answer = (early && await early) || await api("api/data?" + q);
      if (seq !== state.fetchSeq) return;      // a newer view was asked for meanwhile
      state.stats.requests++;
      state.stats.lastWidth = width;
      state.stats.lastPw = answer.streams.map((s) => s.pw);
      state.stats.lastFetchMs = performance.now() - t0;
      answer.key = key;
      state.cache.set(key, answer);
      if (state.cache.size > 60) state.cache.delete(state.cache.keys().next().value);
      status("");
      draw(answer);
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

  // One stream's answer as [x (s), min, mean, max] with a null where the data has a gap,
  // so the chart draws a gap and never a line across it.
  function columns(s) {
    const x = [], lo = [], mid = [], hi = [];
    const n = s.times.length;
    if (s.t0 !== undefined && !s.expanded) {     // compact: differences in units from t0
      let i = 0;
      s.times = s.times.map((d) => { i += d; return s.t0 + i * s.unit; });
      s.expanded = true;
    }
    if (s.kind === "windows") {
      const w = 2 ** s.pw;
      for (let i = 0; i < n; i++) {
        if (i > 0 && s.times[i] - s.times[i - 1] > w * 1.5) {
          x.push((s.times[i - 1] + w) / NS); lo.push(null); mid.push(null); hi.push(null);
        }
        // a window is drawn at its middle
        x.push((s.times[i] + w / 2) / NS); lo.push(s.min[i]); mid.push(s.mean[i]); hi.push(s.max[i]);
      }
    } else {
      const d = [];
      for (let i = 1; i < n; i++) d.push(s.times[i] - s.times[i - 1]);
      d.sort((a, b) => a - b);
      const typical = d.length ? d[Math.floor(d.length / 2)] : 0;
      for (let i = 0; i < n; i++) {
        if (i > 0 && typical > 0 && s.times[i] - s.times[i - 1] > typical * 3) {
          x.push((s.times[i - 1] + typical) / NS); lo.push(null); mid.push(null); hi.push(null);
        }
        x.push(s.times[i] / NS); lo.push(s.values[i]); mid.push(s.values[i]); hi.push(s.values[i]);
      }
    }
    return [x, lo, mid, hi];
  }

  function destroyPlot() {
    if (state.plot) { state.plot.destroy(); state.plot = null; }
    state.plotKey = null;
    $("empty").hidden = state.selected.length > 0;
    $("legend").textContent = "";
    $("axes").textContent = "";
  }

  function draw(answer) {
    const t0 = performance.now();
    state.last = answer;
    const byUuid = new Map(answer.streams.map((s) => [s.uuid, s]));
    const sel = state.selected.filter((x) => byUuid.has(x.entry.uuid));
    if (!sel.length) return;
    const shape = sel.map((x) => `${x.entry.uuid}:${x.color}:${axisOf(x)}`).join(",") + "|" +
      state.zone + "|" + JSON.stringify(state.axes);
    // An answer's chart data is made once: going back to a view in the page only redraws.
    const dataKey = sel.map((x) => x.entry.uuid).join(",");
    if (answer.dataKey !== dataKey) {
      const tables = sel.map((x) => columns(byUuid.get(x.entry.uuid)));
      answer.data = tables.length === 1 ? tables[0] : uPlot.join(tables);
      answer.dataKey = dataKey;
    }
    const data = answer.data;
    if (!state.plot || state.plotKey !== shape) {
      destroyPlot();
      state.plot = new uPlot(options(sel), data, $("chart"));
      state.plotKey = shape;
      buildLegend(sel);
      buildAxesPanel(sel);
    } else {
      state.plot.setData(data, false);
    }
    $("empty").hidden = true;
    sel.forEach((x, i) => showSeries(i, x.show));
    state.plot.setScale("x", { min: state.view.start / NS, max: state.view.end / NS });
    const kinds = answer.streams.map((s) => (s.kind === "raw" ? "raw" : `pw ${s.pw}`));
    $("view-info").textContent = `${spanText(state.view.end - state.view.start)} · ` +
      `${[...new Set(kinds)].join(", ")} · ${answer.width} px`;
    state.stats.lastDrawMs = performance.now() - t0;
    lib.updateDensity();
    if (!state.stats.firstPaint) state.stats.firstPaint = performance.now();   // from page open
  }

  function showSeries(i, show) {
    for (let k = 1; k <= 3; k++) {
      if (state.plot.series[3 * i + k].show !== show) state.plot.setSeries(3 * i + k, { show });
    }
  }

  // -- axes: one per unit by default; a stream can be moved to another, and an axis
  // renamed, put left or right, given a fixed scale or autoscaled -------------------------
  function axisOf(x) { return x.axis || x.entry.unit || "(none)"; }
  function axisConfig(id) { return state.axes[id] || { label: id, side: "auto", auto: true, min: null, max: null }; }
  function setAxis(id, change) {
    state.axes[id] = { ...axisConfig(id), ...change };
    if (state.last) draw(state.last);
  }
  function buildAxesPanel(sel) {
    const t = $("axes");
    t.textContent = "";
    const ids = [...new Set(sel.map(axisOf))];
    const head = t.insertRow();
    for (const h of ["axis", "name", "side", "scale", "min", "max"]) {
      const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
    }
    for (const id of ids) {
      const cfg = axisConfig(id);
      const r = t.insertRow();
      r.dataset.axis = id;
      r.insertCell().textContent = id;
      const name = document.createElement("input"); name.value = cfg.label; name.size = 10; name.className = "axis-name";
      name.addEventListener("change", () => setAxis(id, { label: name.value }));
      r.insertCell().appendChild(name);
      const side = document.createElement("select"); side.className = "axis-side";
      for (const v of ["auto", "left", "right"]) side.add(new Option(v, v, false, cfg.side === v));
      side.addEventListener("change", () => setAxis(id, { side: side.value }));
      r.insertCell().appendChild(side);
      const auto = document.createElement("label");
      const box = document.createElement("input"); box.type = "checkbox"; box.checked = cfg.auto; box.className = "axis-auto";
      auto.append(box, " autoscale");
      r.insertCell().appendChild(auto);
      const inputs = ["min", "max"].map((k) => {
        const inp = document.createElement("input"); inp.type = "number"; inp.step = "any";
        inp.className = "axis-" + k;
        inp.disabled = cfg.auto;
        const sc = state.plot && state.plot.scales[id];
        inp.value = cfg[k] !== null ? cfg[k] : (sc && sc[k] !== undefined && sc[k] !== null ? +sc[k].toPrecision(6) : "");
        r.insertCell().appendChild(inp);
        return inp;
      });
      const fixed = () => {
        const lo = parseFloat(inputs[0].value), hi = parseFloat(inputs[1].value);
        if (!box.checked && !(hi > lo)) { status("an axis' max must be above its min", true); return; }
        setAxis(id, box.checked ? { auto: true } : { auto: false, min: lo, max: hi });
      };
      box.addEventListener("change", () => { inputs.forEach((i) => { i.disabled = box.checked; }); fixed(); });
      inputs.forEach((i) => i.addEventListener("change", fixed));
    }
  }

  function options(sel) {
    const units = [...new Set(sel.map(axisOf))];
    const series = [{}];
    const bands = [];
    sel.forEach((x, i) => {
      const scale = axisOf(x);
      const base = 1 + 3 * i;
      series.push({ label: x.entry.name + " min", scale, stroke: "transparent", width: 0, points: { show: false } });
      series.push({ label: x.entry.name, scale, stroke: x.color, width: 1.5, points: { show: false }, spanGaps: false });
      series.push({ label: x.entry.name + " max", scale, stroke: "transparent", width: 0, points: { show: false } });
      bands.push({ series: [base + 2, base], fill: x.color + "33" });
    });
    const axes = [{ label: `Time (${state.zone})`, labelSize: 20 }];
    units.forEach((u, i) => {
      const cfg = axisConfig(u);
      const side = cfg.side === "left" ? 3 : cfg.side === "right" ? 1 : (i % 2 ? 1 : 3);
      axes.push({ scale: u, label: cfg.label, labelSize: 20, side, grid: { show: i === 0 }, size: 70 });
    });
    const scales = { x: { time: true } };
    for (const u of units) {
      const cfg = axisConfig(u);
      scales[u] = cfg.auto ? { auto: true } : { auto: false, range: [cfg.min, cfg.max] };
    }
    const el = $("chart");
    return {
      width: Math.max(300, el.clientWidth),
      height: Math.max(260, Math.min(560, window.innerHeight - 260)),
      series, bands, axes, scales,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), state.zone),
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, focus: { prox: 16 } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          zoomTo(a * NS, b * NS);
        }],
        setCursor: [(u) => updateLegend(u)],
        draw: [(u) => lib.drawMeasure(u)],
        ready: [(u) => {
          u.over.addEventListener("click", (ev) => lib.placeMeasure(u, ev));
          // Shift+drag pans (a plain drag zooms): the chart follows the mouse with the data
          // the page has, and the view is fetched at the end of the drag.
          u.over.addEventListener("mousedown", (ev) => {
            if (!ev.shiftKey || !state.view) return;
            ev.stopImmediatePropagation();
            ev.preventDefault();
            const from = state.view, x0 = ev.clientX;
            const perPx = (from.end - from.start) / u.bbox.width * devicePixelRatio;
            const move = (e) => {
              const d = -(e.clientX - x0) * perPx;
              state.view = { start: from.start + d, end: from.end + d };
              u.setScale("x", { min: state.view.start / NS, max: state.view.end / NS });
            };
            const up = () => {
              document.removeEventListener("mousemove", move);
              document.removeEventListener("mouseup", up);
              if (state.view !== from) { state.history.push(from); state.future = []; refresh(); }
            };
            document.addEventListener("mousemove", move);
            document.addEventListener("mouseup", up);
          }, { capture: true });
          u.over.addEventListener("wheel", (ev) => {
            ev.preventDefault();
            const v = state.view; if (!v) return;
            const at = u.posToVal(ev.offsetX, "x") * NS;
            const f = ev.deltaY < 0 ? 0.75 : 1 / 0.75;
            wheelZoom(at - (at - v.start) * f, at + (v.end - at) * f);
          }, { passive: false });
        }],
      },
    };
  }
  let wheelTimer = null, wheelStart = null;
  function wheelZoom(start, end) {
    // Redraw at once with what the page has; fetch once the wheel rests.
    if (!wheelStart) wheelStart = state.view;
    state.view = { start, end };
    if (state.plot) state.plot.setScale("x", { min: start / NS, max: end / NS });
    clearTimeout(wheelTimer);
    wheelTimer = setTimeout(() => {
      state.history.push(wheelStart); state.future = []; wheelStart = null; refresh();
    }, 200);
  }

  // -- legend -------------------------------------------------------------------------
  function buildLegend(sel) {
    const t = $("legend");
    t.textContent = "";
    const head = t.insertRow();
    for (const h of ["", "", "stream", "axis", "mean", "min", "max"]) {
      const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
    }
    const timeRow = t.insertRow();
    timeRow.insertCell(); timeRow.insertCell();
    const tc = timeRow.insertCell(); tc.className = "name"; tc.id = "legend-time"; tc.colSpan = 5;
    sel.forEach((x, i) => {
      const row = t.insertRow();
      row.dataset.uuid = x.entry.uuid;
      const c0 = row.insertCell();
      const sw = document.createElement("input"); sw.type = "checkbox"; sw.checked = x.show;
      sw.title = "show or hide this stream";
      sw.addEventListener("change", () => { x.show = sw.checked; showSeries(i, x.show); });
      c0.appendChild(sw);
      const c1 = row.insertCell();
      const color = document.createElement("input"); color.type = "color"; color.value = x.color;
      color.addEventListener("change", () => { x.color = color.value; draw(state.last); });
      c1.appendChild(color);
      const name = row.insertCell(); name.className = "name";
      name.textContent = `${x.entry.collection}/${x.entry.name}`;
      const unit = document.createElement("span"); unit.className = "unit"; unit.textContent = x.entry.unit;
      name.appendChild(unit);
      name.addEventListener("contextmenu", (ev) => openMenu(ev, x.entry.uuid));
      const axis = document.createElement("select"); axis.className = "stream-axis";
      axis.title = "the y-axis this stream is drawn against";
      const ids = [...new Set([...sel.map(axisOf), ...Object.keys(state.axes)])];
      for (const id of ids) axis.add(new Option(axisConfig(id).label, id, false, id === axisOf(x)));
      axis.add(new Option("new axis…", "\u0000new"));
      axis.addEventListener("change", () => {
        let id = axis.value;
        if (id === "\u0000new") {
          let n = 1; while (ids.includes(`axis ${n}`) || state.axes[`axis ${n}`]) n++;
          id = `axis ${n}`;
          state.axes[id] = axisConfig(id);
        }
        x.axis = id;
        draw(state.last);
      });
      row.insertCell().appendChild(axis);
      for (const k of ["mean", "min", "max"]) { const c = row.insertCell(); c.dataset.k = k; }
    });
  }
  function updateLegend(u) {
    const idx = u.cursor.idx;
    const tc = $("legend-time");
    if (tc) tc.textContent = idx === null || idx === undefined ? "" : fmtTime(u.data[0][idx] * NS);
    const rows = $("legend").querySelectorAll("tr[data-uuid]");
    rows.forEach((row, i) => {
      const base = 1 + 3 * i;
      const get = (k) => (idx === null || idx === undefined ? null : u.data[base + k][idx]);
      row.querySelector('[data-k="min"]').textContent = fmtNum(get(0));
      row.querySelector('[data-k="mean"]').textContent = fmtNum(get(1));
      row.querySelector('[data-k="max"]').textContent = fmtNum(get(2));
    });
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

  // -- export -------------------------------------------------------------------------
  $("csv").addEventListener("click", () => {
    if (!state.view || !state.selected.length) return;
    const q = state.selected.map((x) => "uuid=" + x.entry.uuid).join("&") +
      `&start=${Math.floor(state.view.start)}&end=${Math.ceil(state.view.end)}&width=${plotWidth()}`;
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
    if (state.selected.length) await setView({ start: p.start, end: p.end }, false);
  }

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
    if (state.last) draw(state.last);
    if (state.view) { $("start").value = fmtTime(state.view.start); $("end").value = fmtTime(state.view.end); }
  });

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
    const b = await bracket().catch(() => null);
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
        `&start=${Math.floor(from)}&end=${Math.ceil(end)}&width=${old.width}&pw=${pw}&compact=1`);
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
    draw(merged);
  }
  state.follow = follow;

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
      const width = plotWidth();
      state.pending.set(requestKey(u0, { start: s0, end: e0 }, width),
        api("api/data?" + u0.map((u) => "uuid=" + u).join("&") +
            `&start=${Math.floor(s0)}&end=${Math.ceil(e0)}&width=${width}&compact=1`).catch(() => null));
    }
    try { await loadTree(); status(""); } catch (err) {
      status(err.status === 503 ? "database unreachable: retrying…" : err.message, true);
      setTimeout(start, 2000);
      return;
    }
    // A permalink (?p=ID) or a view in the address (#s=UUID,UUID&start=NS&end=NS&zone=Z).
    const pid = new URLSearchParams(location.search).get("p");
    if (pid) {
      try { await openPermalink(pid); } catch (err) { status(`permalink ${pid}: ${err.message}`, true); }
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
    if (s && e && e > s) await setView({ start: s, end: e }, false);
    else await showAll(false);
  }
  lib.bracket = bracket;
  lib.setView = setView;
  start();
})();
