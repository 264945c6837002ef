// The plotter's legend (colour, switch, axis, the values under the cursor) and its axes
// panel.
"use strict";
(function (lib) {
  const { $, status, fmtTime, fmtNum, NS, state } = lib;

  // -- axes: one per unit by default; a stream can be moved to another, and an axis
  // renamed, put left or right, given a fixed scale or autoscaled -------------------------
  function axisOf(x) { return x.axis || x.entry.unit || "(none)"; }
  function axisConfig(id) { return state.axes[id] || { label: id, side: "auto", auto: true, min: null, max: null }; }
  function setAxis(id, change) {
    state.axes[id] = { ...axisConfig(id), ...change };
    if (state.last) lib.draw(state.last);
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
      sw.addEventListener("change", () => { x.show = sw.checked; lib.showSeries(i, x.show); });
      c0.appendChild(sw);
      const c1 = row.insertCell();
      const color = document.createElement("input"); color.type = "color"; color.value = x.color;
      color.addEventListener("change", () => { x.color = color.value; lib.draw(state.last); });
      c1.appendChild(color);
      const name = row.insertCell(); name.className = "name";
      name.textContent = `${x.entry.collection}/${x.entry.name}`;
      const unit = document.createElement("span"); unit.className = "unit"; unit.textContent = x.entry.unit;
      name.appendChild(unit);
      name.addEventListener("contextmenu", (ev) => lib.openMenu(ev, x.entry.uuid));
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
        lib.draw(state.last);
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

  Object.assign(lib, { axisOf, axisConfig, buildLegend, buildAxesPanel, updateLegend });
})(window.plotterLib);
