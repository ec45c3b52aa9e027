// Sort the tables inside <div class="atlas-sortable"> by any column: click (or Enter on) a header;
// a second click reverses. Numbers sort numerically, everything else by its text; a cell holding an
// element with data-sort (relevance, a key number like 16x16) sorts by that value instead.
(function () {
  function key(cell) {
    var el = cell ? cell.querySelector("[data-sort]") : null;
    if (el) return el.getAttribute("data-sort");
    return (cell ? cell.textContent : "").trim();
  }
  function compare(a, b) {
    var na = Number(a), nb = Number(b);
    if (a !== "" && b !== "" && !isNaN(na) && !isNaN(nb)) return na - nb;
    return a.localeCompare(b, undefined, { sensitivity: "base", numeric: true });
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, key: key(row.cells[index]), i: i };
    });
    rows.sort(function (x, y) {
      var c = compare(x.key, y.key);
      return (ascending ? c : -c) || x.i - y.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  function init() {
    document.querySelectorAll(".atlas-sortable table").forEach(function (table) {
      if (table.dataset.atlasSortable) return;
      table.dataset.atlasSortable = "1";
      table.querySelectorAll("thead th").forEach(function (th, index) {
        th.tabIndex = 0;
        th.title = "Sort by this column";
        th.addEventListener("click", function () { sortBy(table, index, th); });
        th.addEventListener("keydown", function (ev) {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, index, th); }
        });
      });
    });
  }
  if (window.document$ && window.document$.subscribe) {
    window.document$.subscribe(init);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
