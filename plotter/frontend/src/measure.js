// The plotter's measuring cursors (loaded after lib.js).
"use strict";
(function (lib) {
  const { $, NS, fmtNum, fmtTime, state } = lib;

  // -- measuring cursors: two time cursors and two value cursors ----------------------
  // In "measure" mode each click places a point (time, value on the first unit's axis);
  // two points give two vertical and two horizontal cursors and their differences, how an
  // engineer reads an event's duration and depth.
  const measure = { points: [] };
  state.measure = measure;
  $("measure").addEventListener("change", () => {
    measure.points = [];
    $("measure-info").textContent = $("measure").checked ? "click the chart twice" : "";
    if (state.plot) state.plot.redraw();
  });
  function placeMeasure(u, ev) {
    if (!$("measure").checked) return;
    const scale = u.series[2] && u.series[2].scale;
    const t = u.posToVal(ev.offsetX, "x") * NS;
    const y = u.posToVal(ev.offsetY, scale);
    measure.points = measure.points.length >= 2 ? [] : measure.points;
    measure.points.push({ t, y, scale });
    showMeasure();
    u.redraw();
  }
  function showMeasure() {
    const p = measure.points;
    if (p.length < 2) { $("measure-info").textContent = p.length ? "click a second point" : ""; return; }
    const dt = p[1].t - p[0].t, dy = p[1].y - p[0].y;
    const dtText = Math.abs(dt) < 1e9 ? `${(dt / 1e6).toFixed(3)} ms` : `${(dt / 1e9).toFixed(6)} s`;
    $("measure-info").textContent = `Δt = ${dtText}   Δ = ${fmtNum(dy)} ${p[0].scale}   ` +
      `(${fmtTime(p[0].t)} → ${fmtTime(p[1].t)})`;
    measure.dt = dt; measure.dy = dy;
  }
  function drawMeasure(u) {
    if (!$("measure").checked || !measure.points.length) return;
    const g = u.ctx;
    const { left, top, width, height } = u.bbox;
    g.save();
    g.strokeStyle = "#6a1b9a"; g.lineWidth = 2 * devicePixelRatio; g.setLineDash([6, 4]);
    for (const p of measure.points) {
      const x = Math.round(u.valToPos(p.t / NS, "x", true));
      const y = Math.round(u.valToPos(p.y, p.scale, true));
      g.beginPath(); g.moveTo(x, top); g.lineTo(x, top + height); g.stroke();
      g.beginPath(); g.moveTo(left, y); g.lineTo(left + width, y); g.stroke();
    }
    g.restore();
  }

  lib.drawMeasure = drawMeasure;
  lib.placeMeasure = placeMeasure;
})(window.plotterLib);
