// The plotter's data usage gauge and health panel (loaded after lib.js).
"use strict";
(function (lib) {
  const { $, api } = lib;

  // -- usage --------------------------------------------------------------------------
  async function usage() {
    try {
      const u = await api("api/usage");
      $("usage-meter").value = u.percent || 0;
      $("usage-meter").high = u.limit_percent;
      $("usage-text").textContent = u.percent === null ? u.message
        : `${u.percent.toFixed(1)}% used (new data refused at ${u.limit_percent}%)`;
      $("usage-message").hidden = !u.message || u.percent === null;
      $("usage-message").textContent = u.percent === null ? "" : (u.message || "");
    } catch (e) { $("usage-text").textContent = "unknown"; }
  }

  // -- health (manual ch. 16: "No data is shown on the plotter") ----------------------
  function ago(s) {
    if (s === null) return "never";
    if (s < 120) return `${s} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }
  async function health() {
    let h;
    try { h = await api("api/health"); } catch (e) { $("health-programs").textContent = "unknown"; return; }
    const t = $("health-upmus");
    t.textContent = "";
    for (const u of h.upmus) {
      const r = t.insertRow();
      r.dataset.serial = u.serial;
      r.insertCell().textContent = u.alias || u.serial;
      const last = r.insertCell();
      last.textContent = "last file " + ago(u.seconds_ago);
      // a file a minute is normal; five minutes without one is worth a look
      if (u.seconds_ago === null || u.seconds_ago > 300) last.className = "bad";
      const back = r.insertCell();
      back.textContent = `${u.unsynced_files} unsynced`;
      if (u.unsynced_files > 5) back.className = "bad";
      const q = r.insertCell();
      q.textContent = `${u.quarantined} quarantined`;
      if (u.quarantined) q.className = "bad";
    }
    if (!h.upmus.length) t.insertRow().insertCell().textContent = h.upmus_error || h.queue_error || "no uPMUs";
    const p = $("health-programs");
    p.textContent = "";
    for (const prog of h.programs) {
      const s = document.createElement("span");
      s.textContent = `${prog.name} ${prog.state}`;
      if (prog.state !== "RUNNING") s.className = "bad";
      p.appendChild(s);
    }
    if (h.programs_error) p.textContent = `programs: ${h.programs_error}`;
  }

  lib.health = health;
  usage();
  setInterval(usage, 30000);
  health();
  setInterval(health, 15000);
})(window.plotterLib);
