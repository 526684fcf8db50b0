(function () {
  "use strict";
  function cellValue(row, column) {
    return row.cells[column].getAttribute("data-value");
  }
  function compare(a, b, column, numeric, direction) {
    var x = cellValue(a, column), y = cellValue(b, column);
    if (x === "" || y === "") {  // missing values always last
      if (x === y) { return Number(a.dataset.rank) - Number(b.dataset.rank); }
      return x === "" ? 1 : -1;
    }
    var order = numeric ? Number(x) - Number(y) : (x < y ? -1 : (x > y ? 1 : 0));
    if (order === 0) { return Number(a.dataset.rank) - Number(b.dataset.rank); }
    return direction === "asc" ? order : -order;
  }
  function sortTable(table, column, direction) {
    var header = table.tHead.rows[0].cells[column];
    var numeric = header.dataset.type === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { return compare(a, b, column, numeric, direction); });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", direction === "asc" ? "ascending" : "descending");
  }
  function onClick(event) {
    var th = event.currentTarget.closest("th");
    var current = th.getAttribute("aria-sort");
    var direction = current === "ascending" ? "desc" : (current === "descending" ? "asc" : th.dataset.first);
    sortTable(th.closest("table"), th.cellIndex, direction);
  }
  function sortFromHash() {
    var match = /(?:^#|&)sort=([^:&]+)(?::(asc|desc))?/.exec(window.location.hash);
    if (!match) { return; }
    var key = decodeURIComponent(match[1]);
    document.querySelectorAll("table.board").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        if (th.dataset.key === key) { sortTable(table, th.cellIndex, match[2] || th.dataset.first); }
      });
    });
  }
  document.querySelectorAll("table.board th button").forEach(function (button) {
    button.addEventListener("click", onClick);
  });
  window.addEventListener("hashchange", sortFromHash);
  sortFromHash();
})();
