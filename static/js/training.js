// Record a training session: narrow the attendee list by role and text, select what is shown.
document.addEventListener("DOMContentLoaded", function () {
  const role = document.querySelector("[data-attendee-role]");
  const search = document.querySelector("[data-attendee-search]");
  const count = document.querySelector("[data-attendee-count]");
  const rows = Array.from(document.querySelectorAll("[data-attendee]"));
  if (!role || !search || !count) {
    return;
  }
  const box = function (row) {
    return row.querySelector("input[type=checkbox]");
  };
  const recount = function () {
    const chosen = rows.filter(function (row) { return box(row).checked; }).length;
    count.textContent = chosen + " selected";
  };
  const filter = function () {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    rows.forEach(function (row) {
      const fits = (!role.value || row.dataset.role === role.value)
        && words.every(function (word) { return row.dataset.text.includes(word); });
      row.hidden = !fits;
    });
  };
  const setShown = function (checked) {
    rows.forEach(function (row) {
      if (!row.hidden) {
        box(row).checked = checked;
      }
    });
    recount();
  };
  role.addEventListener("change", filter);
  search.addEventListener("input", filter);
  document.querySelector("[data-attendee-all]").addEventListener("click", function () { setShown(true); });
  document.querySelector("[data-attendee-none]").addEventListener("click", function () { setShown(false); });
  rows.forEach(function (row) { box(row).addEventListener("change", recount); });
  filter();
  recount();
});
