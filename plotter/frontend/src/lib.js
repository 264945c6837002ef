// The plotter's page: its state and helpers (loaded first). Everything the page shows comes
// from the JSON API (docs/plotter-api.md). Times from the API are ns; the chart's x scale is
// in seconds (uPlot's time scale).
// The page's other scripts add their functions to window.plotterLib and call one another
// through it once the page runs, so only this file (first) and app.js (last: it starts the
// page) have a fixed place in index.html.
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
  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(path, init) {
    // A request that changes something carries the CSRF token the server set as a cookie
    // (docs/plotter-api.md, "Sign-in").
    if (init && init.method && init.method !== "GET") {
      init = { ...init, headers: { ...(init.headers || {}), "X-CSRF-Token": cookie("qss_csrf") } };
    }
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

  window.plotterLib = { $, api, cookie, status, fmtTime, fmtNum, parseTime, spanText, NS, PALETTE, state };
})();
