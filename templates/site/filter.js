// The curated list's filters: by label and by text, read from and kept in the address
// (?label=co-create&q=docs) so a filtered view can be shared. Nothing is fetched.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var select = document.getElementById("label");
  var text = document.getElementById("q");
  var shown = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#issues tbody tr"));
  var params = new URLSearchParams(window.location.search);
  var wanted = params.get("label") || "";
  select.value = wanted;
  if (select.value !== wanted) {
    // A label from a shared address that is not a curated one: shown, so the view explains itself.
    var extra = document.createElement("option");
    extra.value = wanted;
    extra.textContent = wanted;
    select.appendChild(extra);
    select.value = wanted;
  }
  text.value = params.get("q") || "";

  function apply() {
    var needle = text.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (row) {
      var labels = (row.getAttribute("data-labels") || "").split("\n");
      var okLabel = wanted === "" || labels.some(function (l) {
        return l.toLowerCase() === wanted.toLowerCase();
      });
      var okText = needle === "" || row.textContent.toLowerCase().indexOf(needle) !== -1;
      row.hidden = !(okLabel && okText);
      if (!row.hidden) { n += 1; }
    });
    shown.textContent = String(n);
  }

  function remember() {
    var p = new URLSearchParams();
    if (wanted) { p.set("label", wanted); }
    if (text.value.trim()) { p.set("q", text.value.trim()); }
    var query = p.toString();
    try {
      window.history.replaceState(null, "", query ? "?" + query : window.location.pathname);
    } catch (e) {
      // Opened from disk, some browsers refuse to change the address; filtering still works.
    }
  }

  select.addEventListener("change", function () { wanted = select.value; apply(); remember(); });
  text.addEventListener("input", function () { apply(); remember(); });
  form.addEventListener("submit", function (e) { e.preventDefault(); apply(); remember(); });
  apply();
})();
