// The plotter's chart: an answer as uPlot's columns (gaps kept as gaps), the chart's
// options, and zoom and pan with the mouse.
"use strict";
(function (lib) {
  const { $, spanText, NS, state } = lib;

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
    const shape = sel.map((x) => `${x.entry.uuid}:${x.color}:${lib.axisOf(x)}`).join(",") + "|" +
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
      lib.buildLegend(sel);
      lib.buildAxesPanel(sel);
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

  function options(sel) {
    const units = [...new Set(sel.map(lib.axisOf))];
    const series = [{}];
    const bands = [];
    sel.forEach((x, i) => {
      const scale = lib.axisOf(x);
      const base = 1 + 3 * i;
      series.push({ label: x.entry.name + " min", scale, stroke: "transparent", width: 0, points: { show: false } });
      series.push({ label: x.entry.name, scale, stroke: x.color, width: 1.5, points: { show: false }, spanGaps: false });
      series.push({ label: x.entry.name + " max", scale, stroke: "transparent", width: 0, points: { show: false } });
      bands.push({ series: [base + 2, base], fill: x.color + "33" });
    });
    const axes = [{ label: `Time (${state.zone})`, labelSize: 20 }];
    units.forEach((u, i) => {
      const cfg = lib.axisConfig(u);
      const side = cfg.side === "left" ? 3 : cfg.side === "right" ? 1 : (i % 2 ? 1 : 3);
      axes.push({ scale: u, label: cfg.label, labelSize: 20, side, grid: { show: i === 0 }, size: 70 });
    });
    const scales = { x: { time: true } };
    for (const u of units) {
      const cfg = lib.axisConfig(u);
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
          lib.zoomTo(a * NS, b * NS);
        }],
        setCursor: [(u) => lib.updateLegend(u)],
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
              if (state.view !== from) { state.history.push(from); state.future = []; lib.refresh(); }
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
      state.history.push(wheelStart); state.future = []; wheelStart = null; lib.refresh();
    }, 200);
  }

  Object.assign(lib, { draw, destroyPlot, showSeries });
})(window.plotterLib);
