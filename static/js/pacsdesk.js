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
