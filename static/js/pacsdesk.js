// PACS Desk page behaviour. No inline scripts: the Content-Security-Policy forbids them.
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});
// Pages that wait for background work (reports, verification) reload themselves.
document.addEventListener("DOMContentLoaded", function () {
  const poll = document.querySelector("[data-refresh-seconds]");
  if (poll) {
    const seconds = parseInt(poll.getAttribute("data-refresh-seconds"), 10) || 5;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
});
// Idle logoff: a minute before the server would log the user off, offer to stay signed in;
// once the time has passed, say so and offer to log in again (what was typed is kept as a draft).
document.addEventListener("DOMContentLoaded", function () {
  const body = document.body;
  const idle = parseInt(body.getAttribute("data-idle-seconds") || "0", 10);
  if (!idle) { return; }
  const keepalive = body.getAttribute("data-keepalive-url");
  const warnAfter = Math.max(idle - 60, idle / 2) * 1000;
  let started = Date.now();
  let warnTimer = null;
  let endTimer = null;
  const box = document.createElement("div");
  box.className = "alert alert-warning shadow idle-warning";
  box.setAttribute("role", "alertdialog");
  box.setAttribute("aria-live", "assertive");
  box.id = "idle-warning";
  box.hidden = true;
  const text = document.createElement("p");
  text.className = "mb-2";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn-primary btn-sm";
  box.appendChild(text);
  box.appendChild(button);
  body.appendChild(box);

  function schedule() {
    window.clearTimeout(warnTimer);
    window.clearTimeout(endTimer);
    box.hidden = true;
    warnTimer = window.setTimeout(warn, Math.max(warnAfter - (Date.now() - started), 0));
    endTimer = window.setTimeout(ended, Math.max(idle * 1000 - (Date.now() - started), 0));
  }
  function warn() {
    const left = Math.max(Math.round((idle * 1000 - (Date.now() - started)) / 1000), 0);
    text.textContent = "You will be logged off in about " + left + " seconds because of inactivity.";
    button.textContent = "Stay signed in";
    button.onclick = stay;
    box.hidden = false;
    button.focus();
  }
  function ended() {
    text.textContent = "You were logged off after a period of inactivity. What you typed here is kept: log in again to go on.";
    button.textContent = "Log in again";
    button.onclick = function () { window.location.assign(window.location.href); };
    box.hidden = false;
  }
  function stay() {
    const token = document.querySelector('input[name="csrf_token"]');
    fetch(keepalive, { method: "POST", credentials: "same-origin",
                       headers: { "X-CSRFToken": token ? token.value : "", "Accept": "application/json" } })
      .then(function (response) {
        const type = response.headers.get("Content-Type") || "";
        if (response.redirected || type.indexOf("application/json") !== 0) { ended(); return; }
        started = Date.now();
        schedule();
      })
      .catch(function () { ended(); });
  }
  schedule();
});
