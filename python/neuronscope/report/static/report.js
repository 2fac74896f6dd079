// The index table of a neuronscope report: built from the page's inline JSON block, then sorted and
// filtered in place. Every string in that block comes from a corpus or an LLM, so it is only ever
// inserted as text (textContent / createTextNode), never parsed as HTML, without bidi control characters
// (one U+202E would reverse the rest of the cell), inside elements with dir="auto" (isolated).
// A score listed in a row's `undefined` is a correlation that does not exist (constant prediction or
// activations, or one token): it shows as "undefined", sorts with the missing values and fails "Min score".
"use strict";

(function () {
  const dataEl = document.getElementById("data");
  const table = document.getElementById("neuron-table");
  if (!dataEl || !table) return; // neuron pages carry no table
  const rows = JSON.parse(dataEl.textContent).rows;
  const tbody = table.tBodies[0];
  const search = document.getElementById("search");
  const layerFilter = document.getElementById("layer-filter");
  const polyOnly = document.getElementById("poly-only");
  const minScore = document.getElementById("min-score");
  const shownCount = document.getElementById("shown-count");

  const UNDEFINED_WHY = "Pearson correlation is undefined here: the predicted or the true activations are " +
    "constant on the scored tokens (e.g. the explanation never fires there), or there is only one token";
  const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

  function clean(s) {
    return String(s === null || s === undefined ? "" : s).replace(BIDI_CONTROLS, "");
  }

  function fixed(x, digits) {
    return x === null || x === undefined ? "—" : x.toFixed(digits);
  }

  function isUndefined(r, key) {
    return (r[key] === null || r[key] === undefined) && Array.isArray(r.undefined) && r.undefined.includes(key);
  }

  // A score cell: the value, "undefined" with the reason as its tooltip, or a dash when it is missing.
  function scoreCell(tr, r, key, cls, format) {
    if (isUndefined(r, key)) {
      const td = cell(tr, "undefined", cls + " undef");
      td.title = UNDEFINED_WHY;
      return td;
    }
    return cell(tr, r[key] === null || r[key] === undefined ? "—" : format(r[key]), cls);
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function buildRow(r) {
    const tr = document.createElement("tr");
    tr.className = "neuron-row";
    tr.dataset.layer = String(r.layer);
    tr.dataset.index = String(r.index);
    tr.dataset.href = r.href;
    cell(tr, String(r.layer), "num");
    const link = document.createElement("a");
    link.href = r.href;
    link.textContent = "N" + r.index;
    cell(tr, "", "num").appendChild(link);
    cell(tr, r.n_modes === null ? "—" : String(r.n_modes), "num" + (r.n_modes > 1 ? " poly" : ""));
    scoreCell(tr, r, "score", "num", function (v) { return fixed(v, 2); });
    scoreCell(tr, r, "baseline", "num muted", function (v) { return fixed(v, 2); });
    const delta = scoreCell(tr, r, "delta", "num", function (v) { return (v > 0 ? "+" : "") + v.toFixed(2); });
    if (r.delta !== null) delta.classList.add(r.delta > 0.005 ? "up" : r.delta < -0.005 ? "down" : "flat");
    const desc = cell(tr, "", "desc");
    for (const label of r.labels) {
      const chip = document.createElement("span");
      chip.className = "label";
      chip.dir = "auto";
      chip.textContent = label;
      desc.appendChild(chip);
    }
    const text = document.createElement("span");
    text.className = "desc-text";
    text.dir = "auto";
    text.textContent = r.description || (r.labels.length ? "" : "—");
    text.title = r.description;
    desc.appendChild(text);
    return tr;
  }

  // Rows keep their input position as the last sort key, so equal values never shuffle.
  const items = rows.map(function (r, order) {
    r.description = clean(r.description);
    r.labels = (Array.isArray(r.labels) ? r.labels : []).map(clean).filter(function (s) { return s.trim(); });
    const hay = [r.layer + ":" + r.index, "l" + r.layer + ":n" + r.index, "l" + r.layer + "_n" + r.index,
      r.description].concat(r.labels).join("\n").toLowerCase();
    return { r: r, order: order, hay: hay, el: buildRow(r) };
  });
  const empty = document.createElement("tr");
  const emptyCell = cell(empty, "No neuron matches the filters.", "muted");
  emptyCell.colSpan = table.tHead.rows[0].cells.length;

  let sortKey = null;
  let sortDir = 1;

  function sortValue(item, key) {
    const v = key === "description" ? (item.r.labels.join(" ") + " " + item.r.description).trim() : item.r[key];
    return v === null || v === undefined || v === "" ? null : v;
  }

  function compare(a, b) {
    if (sortKey !== null) {
      const va = sortValue(a, sortKey);
      const vb = sortValue(b, sortKey);
      // Missing values go last in both directions: they are not "smallest".
      if (va === null || vb === null) {
        if (va !== vb) return va === null ? 1 : -1;
      } else if (va !== vb) {
        const c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
        if (c !== 0) return sortDir * c;
      }
    }
    return a.order - b.order;
  }

  // A model has tens of thousands of neurons; laying out a table that long takes seconds, so only the
  // first `limit` matching rows are in the DOM and "Show more" raises the limit.
  const PAGE = 500;
  let limit = PAGE;
  const more = document.getElementById("show-more");

  function render() {
    const needle = search.value.trim().toLowerCase();
    const layer = layerFilter.value;
    const poly = polyOnly.checked;
    const min = minScore.value === "" ? null : Number(minScore.value);
    const matched = items.filter(function (item) {
      const r = item.r;
      return (needle === "" || item.hay.includes(needle)) &&
        (layer === "" || String(r.layer) === layer) &&
        (!poly || (r.n_modes !== null && r.n_modes >= 2)) &&
        (min === null || !Number.isFinite(min) || (r.score !== null && r.score >= min));
    });
    matched.sort(compare);
    const frag = document.createDocumentFragment();
    for (const item of matched.slice(0, limit)) frag.appendChild(item.el);
    if (matched.length === 0) frag.appendChild(empty);
    tbody.replaceChildren(frag);
    const listed = Math.min(limit, matched.length);
    shownCount.textContent = matched.length + " of " + items.length + " neurons shown" +
      (listed < matched.length ? " (first " + listed + " listed)" : "");
    more.hidden = listed >= matched.length;
    more.textContent = "Show " + Math.min(PAGE, matched.length - listed) + " more";
  }

  function rerender() {
    limit = PAGE;
    render();
  }

  for (const th of table.tHead.rows[0].cells) {
    th.addEventListener("click", function () {
      const key = th.dataset.sort;
      // First click: numbers largest first, text A→Z; a second click flips the order.
      sortDir = key === sortKey ? -sortDir : th.dataset.type === "num" ? -1 : 1;
      sortKey = key;
      for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      rerender();
    });
  }

  tbody.addEventListener("click", function (ev) {
    const tr = ev.target.closest("tr.neuron-row");
    if (!tr || ev.target.closest("a") || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    if (window.getSelection().toString()) return; // the reader is selecting text, not navigating
    window.location.href = tr.dataset.href;
  });

  more.addEventListener("click", function () {
    limit += PAGE;
    render();
  });
  search.addEventListener("input", rerender);
  minScore.addEventListener("input", rerender);
  layerFilter.addEventListener("change", rerender);
  polyOnly.addEventListener("change", rerender);
  document.addEventListener("keydown", function (ev) {
    const tag = document.activeElement ? document.activeElement.tagName : "";
    if (ev.key === "/" && tag !== "INPUT" && tag !== "SELECT" && tag !== "TEXTAREA") {
      ev.preventDefault();
      search.focus();
    }
  });
  // The browser restores the filter inputs on back navigation before this script runs: honour them.
  render();
})();
