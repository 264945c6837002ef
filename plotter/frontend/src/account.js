// Sign-in, sign-out and password change (manual ch. 11; docs/plotter-api.md, "Sign-in").
// The session is an HttpOnly cookie the page never sees; what it shows comes from
// api/session. Signing in or out reloads the tree (and the health panel), since who may
// see which streams changes; signing out reloads the page, so nothing private stays on it.
"use strict";
(function (lib) {
  const { $, api, status } = lib;
  let me = null;

  function show(session) {
    me = session.user;
    $("account-user").textContent = me ? `signed in as ${me}` : "";
    $("sign-in").hidden = !!me;
    $("sign-out").hidden = !me;
    $("password").hidden = !me;
    const broken = me && session.tagconfig_error;
    $("tagconfig-error").hidden = !broken;
    $("tagconfig-error").textContent = broken
      ? `tagconfig.json is broken; the last good version is in force: ${session.tagconfig_error}` : "";
  }
  async function refreshSession() {
    try { show(await api("api/session")); } catch (e) { /* the tree says what is wrong */ }
  }

  // -- sign in ------------------------------------------------------------------------
  function openLogin() {
    $("login-error").textContent = "";
    $("login-password").value = "";
    $("login").showModal();
    $("login-user").focus();
  }
  $("sign-in").addEventListener("click", openLogin);
  $("login-cancel").addEventListener("click", () => $("login").close());
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    $("login-submit").disabled = true;
    try {
      const session = await api("api/login", { method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user: $("login-user").value.trim(), password: $("login-password").value }) });
      $("login-password").value = "";
      $("login").close();
      show(session);
      if (location.pathname.endsWith("/login")) history.replaceState(null, "", "./" + location.search + location.hash);
      await lib.loadTree();
      if (lib.health) lib.health();
      status(`Signed in as ${session.user}`);
    } catch (err) {
      $("login-error").textContent = err.status === 401 ? "Wrong user name or password." : err.message;
    } finally { $("login-submit").disabled = false; }
  });

  // -- sign out -----------------------------------------------------------------------
  $("sign-out").addEventListener("click", async () => {
    try { await api("api/logout", { method: "POST" }); } catch (err) { status(err.message, true); return; }
    location.reload();
  });

  // -- password -----------------------------------------------------------------------
  $("password").addEventListener("click", () => {
    for (const id of ["passwd-old", "passwd-new", "passwd-again"]) $(id).value = "";
    $("passwd-error").textContent = "";
    $("passwd").showModal();
  });
  $("passwd-cancel").addEventListener("click", () => $("passwd").close());
  $("passwd-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if ($("passwd-new").value !== $("passwd-again").value) {
      $("passwd-error").textContent = "The two new passwords differ.";
      return;
    }
    try {
      await api("api/password", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ old: $("passwd-old").value, new: $("passwd-new").value }) });
      $("passwd").close();
      status("Password changed");
    } catch (err) { $("passwd-error").textContent = err.message; }
  });

  refreshSession();
  // The session may end meanwhile (idle time, a password changed elsewhere, deluser).
  setInterval(refreshSession, 60000);
  if (location.pathname.endsWith("/login")) openLogin();
  Object.assign(lib, { refreshSession });
})(window.plotterLib);
