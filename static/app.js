// The ops page's small behaviours. Everything works without this file
// (times stay in UTC, forms post plainly); it adds local and relative
// times, row selection, the live-updates toggle and panel dismissal.
(function () {
  "use strict";

  const selected = new Set();
  let paused = false;
  let missed = 0;
  let dropped = false;

  // --- times: local zone, plus "in 3 min" / "2 h ago" -------------------
  const absolute = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  const full = new Intl.DateTimeFormat(undefined, {
    dateStyle: "full", timeStyle: "long",
  });
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
  const units = [
    ["year", 365 * 86400], ["month", 30 * 86400], ["day", 86400],
    ["hour", 3600], ["minute", 60], ["second", 1],
  ];

  function ago(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    if (Math.abs(seconds) < 45) return seconds >= 0 ? "in a moment" : "just now";
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size || unit === "second") {
        return relative.format(Math.round(seconds / size), unit);
      }
    }
    return "";
  }

  function formatTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      el.textContent = absolute.format(date) + " · " + ago(date);
      el.title = full.format(date);
    });
  }

  // --- selection ---------------------------------------------------------
  function rowBoxes() {
    return document.querySelectorAll('input[name="ids"][form="bulk"]');
  }

  function showSelection() {
    document.querySelectorAll("[data-selected-count]").forEach(function (el) {
      el.textContent = String(selected.size);
    });
    const all = document.getElementById("select-all");
    if (all) {
      const boxes = Array.from(rowBoxes());
      all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
      all.indeterminate = !all.checked && boxes.some((b) => b.checked);
    }
  }

  function restoreSelection(root) {
    root.querySelectorAll('input[name="ids"][form="bulk"]').forEach(function (box) {
      box.checked = selected.has(box.value);
    });
  }

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target.id === "select-all") {
      rowBoxes().forEach(function (box) {
        box.checked = target.checked;
        if (target.checked) selected.add(box.value); else selected.delete(box.value);
      });
      showSelection();
    } else if (target.matches && target.matches('input[name="ids"][form="bulk"]')) {
      if (target.checked) selected.add(target.value); else selected.delete(target.value);
      showSelection();
    }
  });

  // A bulk action on "selected" sends the selection the button counts. A
  // live update may have just replaced a row, and htmx re-checks the new
  // row's box only once it settles; the form's own boxes can lag behind.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.id !== "bulk") return;
    const form = event.detail.formData;
    if (form.get("scope") !== "selected") return;
    form.delete("ids");
    selected.forEach(function (id) { form.append("ids", id); });
  });

  // --- live updates ------------------------------------------------------
  function liveStatus(state, text) {
    const el = document.getElementById("live-status");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  function refreshTable() {
    missed = 0;
    htmx.trigger(document.body, "sq-refresh");
  }

  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("#live-toggle");
    if (toggle) {
      paused = !paused;
      toggle.setAttribute("aria-pressed", String(paused));
      toggle.textContent = paused ? "Resume updates" : "Pause updates";
      if (paused) {
        liveStatus("paused", "paused");
      } else {
        liveStatus("live", "live");
        refreshTable();  // one GET brings rows, counts and platforms up to date
      }
      return;
    }
    const dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      const panel = document.getElementById(dismiss.dataset.dismiss);
      if (panel) {
        panel.innerHTML = "";
        panel.classList.remove("open");
      }
    }
  });

  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (!paused) return;
    event.preventDefault();
    // Count changed posts only; counts and platforms come along on resume.
    if (!String(event.detail.type || "").startsWith("post-")) return;
    missed += 1;
    liveStatus("paused", "paused · " + missed + " update" + (missed === 1 ? "" : "s") + " waiting");
  });

  document.addEventListener("htmx:sseOpen", function () {
    liveStatus(paused ? "paused" : "live", paused ? "paused" : "live");
    // Changes made while the stream was down were never sent: re-read.
    if (dropped && !paused) refreshTable();
    dropped = false;
  });

  document.addEventListener("htmx:sseError", function () {
    dropped = true;
    liveStatus("down", "reconnecting…");
  });

  document.addEventListener("htmx:afterSettle", function () {
    // A bulk confirmation just appeared: put the keyboard on its answer.
    const focus = document.querySelector("#bulk-panel [data-autofocus]:not([data-focused])");
    if (focus) {
      focus.dataset.focused = "1";
      focus.focus();
    }
    // Rows that left the page (a filter, another page) are no longer selected.
    const onPage = new Set(Array.from(rowBoxes()).map((b) => b.value));
    selected.forEach((id) => { if (!onPage.has(id)) selected.delete(id); });
    showSelection();
  });

  // Every piece of content htmx adds (a page, a row, a live update).
  document.addEventListener("DOMContentLoaded", function () {
    htmx.onLoad(function (root) {
      formatTimes(root);
      restoreSelection(root);
      showSelection();
    });
    setInterval(function () { formatTimes(document); }, 30000);
  });
})();
