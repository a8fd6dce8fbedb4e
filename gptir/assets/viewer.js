// gptir view: pan, zoom, collapsible scopes, node details, search and the pass/step stepper.
// Data comes from the JSON block; text from it is only ever set with textContent (never parsed as HTML).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gptir-data").textContent);
  var pages = Array.prototype.slice.call(document.querySelectorAll("#stage > .page"));
  var stage = document.getElementById("stage");
  var info = document.getElementById("info");
  var current = 0;
  var views = [];  // per page: {x, y, w, h} of the viewBox, or null before first show

  // a collapsed scope of a big page has its members as markup in the data (rendered and escaped by
  // gptir.viewer), inserted the first time it opens
  function materialize(scope) {
    var members = scope.querySelector(":scope > .members[data-deferred]");
    if (!members) { return; }
    var id = members.getAttribute("data-deferred");
    members.removeAttribute("data-deferred");
    members.innerHTML = (data.pages[current].deferred || {})[id] || "";
  }

  function openScope(scope) { materialize(scope); scope.classList.remove("collapsed"); }

  function svgOf(i) { return pages[i].querySelector("svg.gptir-graph"); }

  function fit(i) {
    var svg = svgOf(i);
    if (!svg) { return; }
    var W = parseFloat(svg.getAttribute("width")), H = parseFloat(svg.getAttribute("height"));
    var sw = stage.clientWidth || 800, sh = stage.clientHeight || 600;
    // the whole picture when it is readable that way, else its top at a readable scale
    var s = Math.min(sw / W, sh / H);
    if (s < 0.25) { s = Math.max(Math.min(sw / W, 1), 0.25); }
    s = Math.min(s, 1.5);
    var vw = sw / s, vh = sh / s;
    views[i] = { x: (W - vw) / 2, y: 0, w: vw, h: vh };
    apply(i);
    // a diff page opens on its first change
    var first = pages[i].querySelector(".node.hl");
    var whole = s <= Math.min(sw / W, sh / H) + 1e-9;
    if (first && !whole) { centerOn(first, i); }
  }

  function apply(i) {
    var v = views[i], svg = svgOf(i);
    if (svg && v) { svg.setAttribute("viewBox", v.x + " " + v.y + " " + v.w + " " + v.h); }
  }

  function show(i) {
    if (i < 0 || i >= pages.length) { return; }
    pages[current].hidden = true;
    current = i;
    pages[i].hidden = false;
    var p = data.pages[i] || {};
    document.getElementById("title").textContent = p.title || data.title || "";
    document.title = p.title || data.title || "gptir view";
    var summary = document.getElementById("summary");
    if (summary) { summary.textContent = p.summary || ""; }
    var counter = document.getElementById("counter");
    if (counter) { counter.textContent = (i + 1) + " / " + pages.length; }
    if (!views[i]) { fit(i); }
  }

  function clear(el) { while (el.firstChild) { el.removeChild(el.firstChild); } }

  function add(parent, tag, text, cls) {
    var el = document.createElement(tag);
    if (text !== undefined && text !== null) { el.textContent = String(text); }
    if (cls) { el.className = cls; }
    parent.appendChild(el);
    return el;
  }

  function details(key) {
    var rec = (data.pages[current].nodes || {})[key];
    clear(info);
    if (!rec) { return; }
    add(info, "h3", rec.name);
    if (rec.ir) { add(info, "div", rec.ir, "ir"); }
    var dl = add(info, "dl");
    function row(k, v) { if (v !== undefined && v !== null && v !== "") { add(dl, "dt", k); add(dl, "dd", v); } }
    row("op", rec.op);
    row("type", rec.type);
    row("scope", rec.scope);
    row("source", rec.loc);
    if (rec.backward) { row("pass", "backward"); }
    if (rec.state && rec.state !== "same") { row("diff", rec.state); }
    row("note", rec.note);
    if (rec.stats) {
      var s = rec.stats;
      row("shape", "[" + s.shape.join(", ") + "]  (" + s.size + " values)");
      if (s.min !== undefined) {
        row("min / max", s.min + " / " + s.max);
        row("mean / std", s.mean + " / " + s.std);
      }
      if (s.nonfinite) { row("non-finite", s.nonfinite); }
    }
  }

  function select(node) {
    var old = pages[current].querySelectorAll(".node.selected");
    for (var i = 0; i < old.length; i++) { old[i].classList.remove("selected"); }
    node.classList.add("selected");
    details(node.getAttribute("data-key"));
  }

  function expandAncestors(el) {
    var p = el.parentNode;
    while (p && p !== stage) {
      if (p.classList && p.classList.contains("scope")) { openScope(p); }
      p = p.parentNode;
    }
  }

  function centerOn(el, page) {
    var v = views[page === undefined ? current : page];
    var r = el.querySelector("rect.shape");
    if (!v || !r) { return; }
    var x = parseFloat(r.getAttribute("x")) + parseFloat(r.getAttribute("width")) / 2;
    var y = parseFloat(r.getAttribute("y")) + parseFloat(r.getAttribute("height")) / 2;
    v.x = x - v.w / 2; v.y = y - v.h / 2;
    apply(page === undefined ? current : page);
  }

  // clicks: scope labels toggle, nodes show details
  var moved = false;
  stage.addEventListener("click", function (ev) {
    if (moved) { return; }
    var t = ev.target;
    var scope = t.closest ? t.closest(".scope") : null;
    if (t.closest && t.closest(".node")) { select(t.closest(".node")); return; }
    if (scope && (t.classList.contains("scope-label") || t.classList.contains("big-label") ||
                  (t.classList.contains("box") && scope.classList.contains("collapsed")))) {
      if (scope.classList.contains("collapsed")) { openScope(scope); } else { scope.classList.add("collapsed"); }
    }
  });

  // pan and zoom through the viewBox
  var drag = null;
  stage.addEventListener("mousedown", function (ev) {
    if (!views[current]) { return; }
    drag = { x: ev.clientX, y: ev.clientY, vx: views[current].x, vy: views[current].y };
    moved = false;
  });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) { return; }
    var v = views[current], k = v.w / (stage.clientWidth || 1);
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { moved = true; stage.classList.add("dragging"); }
    v.x = drag.vx - dx * k; v.y = drag.vy - dy * k;
    apply(current);
  });
  window.addEventListener("mouseup", function () {
    drag = null; stage.classList.remove("dragging");
    setTimeout(function () { moved = false; }, 0);
  });
  stage.addEventListener("wheel", function (ev) {
    var v = views[current];
    if (!v) { return; }
    ev.preventDefault();
    var rect = stage.getBoundingClientRect();
    var fx = (ev.clientX - rect.left) / rect.width, fy = (ev.clientY - rect.top) / rect.height;
    var f = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    var px = v.x + fx * v.w, py = v.y + fy * v.h;
    v.w *= f; v.h *= f; v.x = px - fx * v.w; v.y = py - fy * v.h;
    apply(current);
  }, { passive: false });

  // search by name or op
  var search = document.getElementById("search"), found = document.getElementById("found");
  var matches = [], matchAt = 0;
  function runSearch() {
    var q = search.value.trim().toLowerCase();
    var old = pages[current].querySelectorAll(".node.found");
    for (var i = 0; i < old.length; i++) { old[i].classList.remove("found"); }
    matches = []; matchAt = 0;
    if (q) {
      var waiting = pages[current].querySelectorAll(".members[data-deferred]");
      for (var w = 0; w < waiting.length; w++) { materialize(waiting[w].parentNode); }
      var nodes = data.pages[current].nodes || {};
      var els = pages[current].querySelectorAll(".node");
      for (var j = 0; j < els.length; j++) {
        var rec = nodes[els[j].getAttribute("data-key")];
        if (rec && (rec.name.toLowerCase().indexOf(q) >= 0 || rec.op.toLowerCase() === q)) { matches.push(els[j]); }
      }
      for (var m = 0; m < matches.length; m++) { matches[m].classList.add("found"); expandAncestors(matches[m]); }
      if (matches.length) { centerOn(matches[0]); }
    }
    found.textContent = q ? matches.length + " found" : "";
  }
  if (search) {
    search.addEventListener("input", runSearch);
    search.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && matches.length) {
        matchAt = (matchAt + 1) % matches.length;
        centerOn(matches[matchAt]);
        select(matches[matchAt]);
      }
    });
  }

  // the stepper
  var prev = document.getElementById("prev"), next = document.getElementById("next");
  if (prev) { prev.addEventListener("click", function () { show(current - 1); }); }
  if (next) { next.addEventListener("click", function () { show(current + 1); }); }
  document.addEventListener("keydown", function (ev) {
    if (ev.target === search) { return; }
    if (ev.key === "ArrowRight") { show(current + 1); ev.preventDefault(); }
    else if (ev.key === "ArrowLeft") { show(current - 1); ev.preventDefault(); }
  });

  window.gptirView = {
    current: function () { return current; },
    show: show,
    open: openScope,
    highlighted: function () {
      var els = pages[current].querySelectorAll(".node.hl"), out = [];
      for (var i = 0; i < els.length; i++) { out.push(els[i].getAttribute("data-name")); }
      return out;
    }
  };
  show(0);
  if (!views[0]) { fit(0); }
})();
