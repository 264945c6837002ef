// The chart as an SVG image (loaded after lib.js): what is visible, drawn again as vectors
// from uPlot's own layout, so it scales for reports: each shown stream's mean line and
// min-max band (gaps stay gaps), the axes with their ticks, values and labels, the grid,
// and a legend of the streams.
"use strict";
(function (lib) {
  const { $, NS, state } = lib;
  const FONT = "12px system-ui, sans-serif";

  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const f = (v) => (Math.round(v * 10) / 10).toString();

  // One series' points as [x, y] in the SVG's px (null for a gap), from one point before
  // the visible range to one after it (the clip cuts the rest). In uPlot's joined data
  // undefined is "this stream has no point at this x" (skipped), null a gap.
  function points(u, k, lo, hi, L, T) {
    const xs = u.data[0], ys = u.data[k], scale = u.series[k].scale, out = [];
    let i0 = 0, i1 = xs.length - 1;
    while (i0 < xs.length - 1 && xs[i0 + 1] < lo) i0++;
    while (i1 > 0 && xs[i1 - 1] > hi) i1--;
    for (let i = i0; i <= i1; i++) {
      const y = ys[i];
      if (y === undefined) continue;
      out.push(y === null ? null : [L + u.valToPos(xs[i], "x"), T + u.valToPos(y, scale)]);
    }
    return out;
  }
  function linePath(pts) {
    let d = "", pen = false;
    for (const p of pts) {
      if (p === null) { pen = false; continue; }
      d += (pen ? "L" : "M") + f(p[0]) + "," + f(p[1]);
      pen = true;
    }
    return d;
  }
  // The band between max and min: one closed shape per stretch without a gap.
  function bandPath(top, bottom) {
    let d = "", run = [];
    const flush = () => {
      if (run.length) {
        d += "M" + run.map((i) => f(top[i][0]) + "," + f(top[i][1])).join("L") +
          "L" + run.slice().reverse().map((i) => f(bottom[i][0]) + "," + f(bottom[i][1])).join("L") + "Z";
      }
      run = [];
    };
    for (let i = 0; i < top.length; i++) {
      if (top[i] === null || bottom[i] === null) flush(); else run.push(i);
    }
    flush();
    return d;
  }

  function axisSvg(u, a, L, T, W, H) {
    if (!a.show || !a._splits) return "";
    const out = [], side = a.side, scale = a.scale;
    const vals = a._values || [];
    const lines = (text) => String(text).split("\n");
    a._splits.forEach((v, j) => {
      const text = vals[j];
      if (text === null || text === undefined || text === "") return;
      if (side === 2) {
        const x = L + u.valToPos(v, scale);
        if (x < L - 0.5 || x > L + W + 0.5) return;
        out.push(`<line x1="${f(x)}" y1="${f(a._pos)}" x2="${f(x)}" y2="${f(a._pos + 6)}"/>`);
        out.push(`<text x="${f(x)}" y="${f(a._pos + 19)}" text-anchor="middle">` +
          lines(text).map((t, n) => `<tspan x="${f(x)}" dy="${n ? "1.2em" : 0}">${esc(t)}</tspan>`).join("") + "</text>");
        if (a.grid && a.grid.show) out.push(`<line class="grid" x1="${f(x)}" y1="${f(T)}" x2="${f(x)}" y2="${f(T + H)}"/>`);
      } else {
        const y = T + u.valToPos(v, scale);
        if (y < T - 0.5 || y > T + H + 0.5) return;
        const right = side === 1, x0 = a._pos, x1 = right ? x0 + 6 : x0 - 6;
        out.push(`<line x1="${f(x0)}" y1="${f(y)}" x2="${f(x1)}" y2="${f(y)}"/>`);
        out.push(`<text x="${f(right ? x0 + 9 : x0 - 9)}" y="${f(y + 4)}" text-anchor="${right ? "start" : "end"}">${esc(lines(text)[0])}</text>`);
        if (a.grid && a.grid.show) out.push(`<line class="grid" x1="${f(L)}" y1="${f(y)}" x2="${f(L + W)}" y2="${f(y)}"/>`);
      }
    });
    if (a.label) {
      const mid = (a._lpos !== undefined ? a._lpos : a._pos) + (a.labelSize || 20) / 2;
      if (side === 2) out.push(`<text class="label" x="${f(L + W / 2)}" y="${f(mid + 5)}" text-anchor="middle">${esc(a.label)}</text>`);
      else {
        const cy = T + H / 2, rot = side === 3 ? -90 : 90;
        out.push(`<text class="label" transform="translate(${f(mid)},${f(cy)}) rotate(${rot})" y="5" text-anchor="middle">${esc(a.label)}</text>`);
      }
    }
    return `<g class="axis" data-scale="${esc(scale)}">${out.join("")}</g>`;
  }

  // The SVG text of the chart as it is now, or null when there is none.
  function chartSvg() {
    const u = state.plot;
    if (!u) return null;
    const r = uPlot.pxRatio || devicePixelRatio;
    const L = u.bbox.left / r, T = u.bbox.top / r, W = u.bbox.width / r, H = u.bbox.height / r;
    const lo = u.scales.x.min, hi = u.scales.x.max;
    const shown = state.selected.filter((x) => state.last && state.last.streams.some((s) => s.uuid === x.entry.uuid));
    const legendH = 22, width = u.width, height = u.height + legendH;
    const parts = [];
    parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
    parts.push(`<defs><clipPath id="plot-area"><rect x="${f(L)}" y="${f(T)}" width="${f(W)}" height="${f(H)}"/></clipPath></defs>`);
    parts.push(`<style>text{font:${FONT};fill:#333}line{stroke:#999;stroke-width:1}` +
      "line.grid{stroke:#e4e4e4}text.label{font-weight:bold}</style>");
    parts.push(`<g>${u.axes.map((a) => axisSvg(u, a, L, T, W, H)).join("")}</g>`);
    const streams = [];
    shown.forEach((x, i) => {
      const base = 1 + 3 * i;
      if (!u.series[base + 1] || !u.series[base + 1].show) return;
      const min = points(u, base, lo, hi, L, T), mean = points(u, base + 1, lo, hi, L, T);
      const max = points(u, base + 2, lo, hi, L, T);
      const name = `${x.entry.collection}/${x.entry.name}`;
      streams.push(`<g class="stream" data-uuid="${x.entry.uuid}"><title>${esc(name)}</title>` +
        `<path class="band" d="${bandPath(max, min)}" fill="${x.color}" fill-opacity="0.2" stroke="none"/>` +
        `<path class="mean" d="${linePath(mean)}" fill="none" stroke="${x.color}" stroke-width="1.5" stroke-linejoin="round"/></g>`);
    });
    parts.push(`<g clip-path="url(#plot-area)">${streams.join("")}</g>`);
    parts.push(`<rect x="${f(L)}" y="${f(T)}" width="${f(W)}" height="${f(H)}" fill="none" stroke="#999"/>`);
    let lx = L;
    const legend = shown.filter((x, i) => u.series[2 + 3 * i] && u.series[2 + 3 * i].show).map((x) => {
      const text = `${x.entry.collection}/${x.entry.name} (${x.entry.unit})`;
      const item = `<rect x="${f(lx)}" y="${u.height + 6}" width="14" height="10" fill="${x.color}"/>` +
        `<text x="${f(lx + 18)}" y="${u.height + 15}">${esc(text)}</text>`;
      lx += 30 + text.length * 6.5;
      return item;
    });
    parts.push(`<g class="legend">${legend.join("")}</g>`);
    return `<?xml version="1.0" encoding="UTF-8"?>\n` +
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
      `<title>${esc(`Plotter: ${lib.fmtTime(lo * NS)} to ${lib.fmtTime(hi * NS)} (${state.zone})`)}</title>` +
      parts.join("") + "</svg>\n";
  }

  $("svg").addEventListener("click", () => {
    const text = chartSvg();
    if (!text) return;
    const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    const a = document.createElement("a");
    a.href = url; a.download = "plotter.svg"; document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  Object.assign(lib, { chartSvg });
})(window.plotterLib);
