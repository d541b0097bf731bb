// Help desk pages: the queue's selection and live counts, the asset picker, drafts that
// survive an idle logoff. No inline scripts: the Content-Security-Policy forbids them.
(function () {
  "use strict";

  // ------------------------------------------------------------ queue selection
  function setUpSelection() {
    const all = document.getElementById("select-all");
    const label = document.getElementById("bulk-selected");
    const rows = Array.from(document.querySelectorAll(".row-select"));
    if (!label || !rows.length) { return; }
    function update() {
      const n = rows.filter(function (r) { return r.checked; }).length;
      label.textContent = n ? n + " selected" : "None selected";
      if (all) {
        all.checked = n === rows.length;
        all.indeterminate = n > 0 && n < rows.length;
      }
    }
    rows.forEach(function (r) { r.addEventListener("change", update); });
    if (all) {
      all.addEventListener("change", function () {
        rows.forEach(function (r) { r.checked = all.checked; });
        update();
      });
    }
    const apply = document.getElementById("bulk-apply");
    if (apply) {
      apply.addEventListener("click", function (event) {
        if (!rows.some(function (r) { return r.checked; })) {
          event.preventDefault();
          label.textContent = "Select at least one ticket first.";
        }
      });
    }
    update();
  }

  // ------------------------------------------------------------ live counts
  function setUpCounts() {
    const box = document.getElementById("queue-counts");
    if (!box) { return; }
    const url = box.getAttribute("data-counts-url");
    const seconds = parseInt(box.getAttribute("data-counts-seconds") || "30", 10);
    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          const type = response.headers.get("Content-Type") || "";
          if (response.redirected || type.indexOf("application/json") !== 0) {
            window.location.reload(); // the session ended: the server shows the login page
            return null;
          }
          return response.json();
        })
        .then(function (counts) {
          if (!counts) { return; }
          Object.keys(counts).forEach(function (key) {
            const el = box.querySelector('[data-count="' + key + '"]');
            if (el) { el.textContent = String(counts[key]); }
          });
          box.setAttribute("data-refreshed", new Date().toISOString());
        })
        .catch(function () { /* offline for a moment: try again at the next tick */ });
    }
    refresh();
    window.setInterval(refresh, seconds * 1000);
  }

  // ------------------------------------------------------------ asset picker
  function setUpAssetPicker(input) {
    const url = input.getAttribute("data-asset-lookup");
    const list = document.createElement("datalist");
    list.id = input.id + "-options";
    input.setAttribute("list", list.id);
    input.setAttribute("autocomplete", "off");
    input.parentNode.appendChild(list);
    let timer = null;
    let asked = "";
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        const text = input.value.trim();
        if (text.length < 2 || text === asked) { return; }
        asked = text;
        fetch(url + "?q=" + encodeURIComponent(text), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (assets) {
            list.textContent = "";
            assets.forEach(function (a) {
              const option = document.createElement("option");
              option.value = a.tag;
              option.label = a.name + (a.location ? " · " + a.location : "");
              option.textContent = option.label;
              list.appendChild(option);
            });
          })
          .catch(function () { /* the picker is a convenience: typing the tag still works */ });
      }, 200);
    });
  }

  // ------------------------------------------------------------ drafts
  // Kept in this tab's sessionStorage under the user's id: they survive an idle logoff and
  // the login that follows, never outlive the tab, and are never shown to another user.
  // Imaging identifiers and files are not kept.
  const DRAFT_PREFIX = "pacsdesk-draft:";
  const NOT_KEPT = ["csrf_token", "accession_number", "patient_id", "study_instance_uid"];

  function draftKey(form) {
    return DRAFT_PREFIX + form.getAttribute("data-draft-user") + ":" + form.getAttribute("data-draft");
  }

  function forgetOtherUsers(userId) {
    for (let i = window.sessionStorage.length - 1; i >= 0; i--) {
      const key = window.sessionStorage.key(i);
      if (key && key.indexOf(DRAFT_PREFIX) === 0 && key.indexOf(DRAFT_PREFIX + userId + ":") !== 0) {
        window.sessionStorage.removeItem(key);
      }
    }
  }

  function draftFields(form) {
    return Array.from(form.elements).filter(function (el) {
      return el.name && NOT_KEPT.indexOf(el.name) < 0 && el.type !== "file" && el.type !== "submit"
        && el.type !== "hidden" && el.type !== "button";
    });
  }

  function setUpDraft(form) {
    const key = draftKey(form);
    const saved = window.sessionStorage.getItem(key);
    const note = form.querySelector("[data-draft-note]");
    if (saved) {
      let values = {};
      try { values = JSON.parse(saved); } catch (e) { values = {}; }
      let restored = false;
      draftFields(form).forEach(function (el) {
        if (!(el.name in values)) { return; }
        if (el.type === "checkbox") { el.checked = !!values[el.name]; return; }
        el.value = values[el.name];
        restored = restored || (el.tagName !== "SELECT" && values[el.name] !== "");
      });
      if (restored && note) {
        note.hidden = false;
      }
    }
    let timer = null;
    function save() {
      const values = {};
      draftFields(form).forEach(function (el) {
        values[el.name] = el.type === "checkbox" ? el.checked : el.value;
      });
      window.sessionStorage.setItem(key, JSON.stringify(values));
      form.setAttribute("data-draft-saved", new Date().toISOString());
    }
    form.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(save, 300);
    });
    form.addEventListener("change", save);
    const discard = form.querySelector("[data-draft-discard]");
    if (discard) {
      discard.addEventListener("click", function (event) {
        event.preventDefault();
        window.sessionStorage.removeItem(key);
        window.location.reload();
      });
    }
  }

  function clearSubmittedDrafts() {
    // The server marks the page that follows a successful submit with the draft it made useless.
    document.querySelectorAll("[data-draft-clear]").forEach(function (el) {
      const user = el.getAttribute("data-draft-user");
      window.sessionStorage.removeItem(DRAFT_PREFIX + user + ":" + el.getAttribute("data-draft-clear"));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpSelection();
    setUpCounts();
    document.querySelectorAll("input[data-asset-lookup]").forEach(setUpAssetPicker);
    clearSubmittedDrafts();
    const forms = document.querySelectorAll("form[data-draft]");
    if (forms.length) { forgetOtherUsers(forms[0].getAttribute("data-draft-user")); }
    forms.forEach(setUpDraft);
  });
}());
