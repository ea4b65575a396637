// spyderctl trace -o html: pan/zoom, search, details and findings over the inline SVG.
// Everything shown comes from the JSON in #trace-data and is put in the page with
// textContent, never as markup.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("trace-data").textContent);
  const svg = document.getElementById("graph");
  const boxes = {};   // box id (node or group id) -> <g class="node">
  const edgesOf = {}; // box id -> [<g class="edge">]

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function time(ns) {
    if (!ns) return "";
    return new Date(ns / 1e6).toISOString().replace("T", " ").replace("Z", " UTC");
  }

  // -- the picture's boxes ----------------------------------------------------------------
  svg.querySelectorAll("g.node").forEach(function (g) {
    const id = g.querySelector("title").textContent;
    boxes[id] = g;
    g.setAttribute("data-id", id);
    g.addEventListener("click", function (ev) { ev.stopPropagation(); select(id); });
  });
  svg.querySelectorAll("g.edge").forEach(function (g) {
    const ends = g.querySelector("title").textContent.split("->");
    ends.forEach(function (end) { (edgesOf[end] = edgesOf[end] || []).push(g); });
    g.setAttribute("data-ends", ends.join(" "));
  });

  // -- pan and zoom -------------------------------------------------------------------------
  const base = svg.viewBox.baseVal;
  const home = [base.x, base.y, base.width, base.height];
  let vb = home.slice();

  function apply() { svg.setAttribute("viewBox", vb.join(" ")); }

  function zoom(factor, cx, cy) {
    const r = svg.getBoundingClientRect();
    const fx = cx === undefined ? 0.5 : (cx - r.left) / r.width;
    const fy = cy === undefined ? 0.5 : (cy - r.top) / r.height;
    const w = vb[2] * factor, h = vb[3] * factor;
    vb = [vb[0] + (vb[2] - w) * fx, vb[1] + (vb[3] - h) * fy, w, h];
    apply();
  }

  function fit() { vb = home.slice(); apply(); }

  function centre(id) {
    const g = boxes[id];
    if (!g) return;
    const b = g.getBBox(), m = g.getCTM(), root = svg.getCTM();
    // the box's centre in viewBox units (graphviz translates its drawing in a <g>)
    const p = svg.createSVGPoint();
    p.x = b.x + b.width / 2; p.y = b.y + b.height / 2;
    const q = p.matrixTransform(root.inverse().multiply(m));
    const r = svg.getBoundingClientRect();
    const w = Math.min(home[2], r.width), h = w * r.height / r.width;
    vb = [q.x - w / 2, q.y - h / 2, w, h];
    apply();
  }

  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, ev.clientX, ev.clientY);
  }, { passive: false });
  let drag = null;
  svg.addEventListener("mousedown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, vb: vb.slice(), moved: false };
    svg.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    const s = Math.max(vb[2] / r.width, vb[3] / r.height);
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    vb = [drag.vb[0] - dx * s, drag.vb[1] - dy * s, vb[2], vb[3]];
    apply();
  });
  window.addEventListener("mouseup", function () {
    drag = null;
    svg.classList.remove("dragging");
  });
  document.getElementById("zin").onclick = function () { zoom(1 / 1.3); };
  document.getElementById("zout").onclick = function () { zoom(1.3); };
  document.getElementById("fit").onclick = fit;

  // -- header ---------------------------------------------------------------------------------
  function header() {
    const h = document.getElementById("head"), s = data.summary || {};
    const root = data.nodes[data.root] || {};
    h.appendChild(el("h1", data.kind === "trace"
      ? "Trace " + data.id + " \u2014 score " + (s.score ?? "?") + " (threshold " +
        (s.threshold ?? "?") + ")"
      : "Process " + data.id));
    const c = s.counts || {};
    h.appendChild(el("div", "root " + (s.root_label || root.name || "?") + " [" +
      (root.pid ?? "?") + "] (" +
      (s.root_kind || data.kind) + ")  \u00b7  " + time(s.first) + " .. " + time(s.last) +
      "  \u00b7  " + data.findings.length + " findings, " + (c.processes ?? "?") +
      " processes, " + (c.connections ?? "?") + " connections, " + (c.files ?? "?") +
      " files" + (data.truncated ? "  \u00b7  truncated" : ""), "meta"));
    const rules = el("div", null, "rules");
    Object.entries(s.rules || {}).forEach(function ([rule, sev]) {
      rules.appendChild(el("span", rule + " (" + sev + ")", "sev-" + sev));
    });
    h.appendChild(rules);
  }

  // -- details of a box -----------------------------------------------------------------------
  const NS = ["pidns", "netns", "mntns", "userns", "utsns", "cgroupns", "ipcns"];

  function row(t, k, v) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) return;
    const tr = el("tr");
    tr.appendChild(el("th", k));
    const td = el("td");
    if (v instanceof Node) td.appendChild(v); else td.textContent = String(v);
    tr.appendChild(td);
    t.appendChild(tr);
  }

  function argv(args) {
    const span = el("span", null, "argv");
    (args || []).forEach(function (a) { span.appendChild(el("code", a)); });
    return span;
  }

  function processRows(t, n) {
    row(t, "pid", n.pid);
    row(t, "ppid", n.ppid);
    row(t, "exe", n.exe);
    row(t, "argv", n.args && n.args.length ? argv(n.args) : "");
    row(t, "cwd", n.cwd);
    row(t, "user", (n.user || "") + " (uid " + n.uid + ")");
    if (n.login_user) row(t, "login user", n.login_user + " (loginuid " + n.loginuid + ")");
    row(t, "session", n.session_id);
    row(t, "tty", n.tty);
    row(t, "container", n.container_id ? (n.container_name || "") + " " +
      n.container_id.slice(0, 12) + (n.container_image ? " image " + n.container_image : "") +
      (n.container_runtime ? " (" + n.container_runtime + ")" : "") : "host");
    row(t, "started", time(n.start));
    row(t, "ended", n.end ? time(n.end) + (n.exit_code !== undefined
      ? " (exit " + n.exit_code + (n.exit_signal ? ", signal " + n.exit_signal : "") + ")"
      : "") : "running or unknown");
    row(t, "namespaces", NS.filter(function (k) { return n[k]; })
      .map(function (k) { return k + ":" + n[k]; }).join("  "));
    row(t, "via", n.via ? n.via + " from " + n.parent : "");
  }

  function details(id) {
    const box = document.getElementById("details");
    box.textContent = "";
    const members = data.groups[id];
    if (members) {
      box.appendChild(el("p", members.length + " commands run by the same parent, with " +
        "nothing else to show:"));
      members.forEach(function (m) {
        const n = data.nodes[m];
        const d = el("div", n.name + "[" + n.pid + "] " + (n.args || []).join(" "), "member");
        d.onclick = function () { showNode(m); };
        box.appendChild(d);
      });
      return;
    }
    showNode(id);
  }

  function showNode(id) {
    const n = data.nodes[id], box = document.getElementById("details");
    box.textContent = "";
    if (!n) { box.appendChild(el("p", id)); return; }
    box.appendChild(el("h3", n.kind === "process" ? n.name + "[" + n.pid + "]" : n.kind));
    const t = el("table");
    if (n.kind === "process") processRows(t, n);
    else if (n.kind === "connection" || n.kind === "listener") {
      row(t, "direction", n.direction || (n.kind === "listener" ? "listen" : ""));
      row(t, "local", n.local_ip + ":" + n.local_port);
      row(t, "remote", n.remote_ip ? n.remote_ip + ":" + n.remote_port : "");
      row(t, "result", n.result);
      row(t, "process", n.process_id);
      row(t, "time", time(n.start));
    } else if (n.kind === "file") {
      row(t, "path", n.path);
      row(t, "written by", n.writer);
      row(t, "time", time(n.start));
    } else if (n.kind === "alert") {
      row(t, "from", n.identifier || n.unit);
      row(t, "priority", n.priority);
      row(t, "message", n.message);
      row(t, "time", time(n.start));
    }
    row(t, "role", n.role);
    row(t, "id", n.id);
    box.appendChild(t);
    const mine = data.findings.filter(function (f) { return f.process_id === id; });
    mine.forEach(function (f) {
      box.appendChild(el("div", "\u26a0 " + f.rule + " (" + f.severity + ")",
        "sev sev-" + f.severity));
    });
    const all = el("details");
    all.appendChild(el("summary", "all attributes"));
    all.appendChild(el("pre", JSON.stringify(n, null, 1)));
    box.appendChild(all);
  }

  let selected = null;
  function select(id) {
    if (selected && boxes[selected]) boxes[selected].classList.remove("selected");
    selected = id;
    if (boxes[id]) boxes[id].classList.add("selected");
    details(id);
  }

  // -- findings -------------------------------------------------------------------------------
  function highlight(chain) {
    svg.querySelectorAll(".chain").forEach(function (g) { g.classList.remove("chain"); });
    if (!chain) { svg.classList.remove("focus"); return; }
    const on = new Set(chain);
    chain.forEach(function (id) {
      if (boxes[id]) boxes[id].classList.add("chain");
      (edgesOf[id] || []).forEach(function (g) {
        const ends = g.getAttribute("data-ends").split(" ");
        if (ends.every(function (e) { return on.has(e); })) g.classList.add("chain");
      });
    });
    svg.classList.add("focus");
  }

  function findings() {
    const box = document.getElementById("findings");
    if (!data.findings.length) box.appendChild(el("p", "none", "hint"));
    data.findings.forEach(function (f) {
      const d = el("div", null, "finding");
      d.setAttribute("data-finding", f.id);
      d.appendChild(el("span", f.severity + " ", "sev sev-" + f.severity));
      d.appendChild(el("span", f.rule + (f.count > 1 ? " x" + f.count : "") +
        (f.suppressed ? " (suppressed)" : "")));
      d.appendChild(el("div", time(f.time) + "  " + f.message, "hint"));
      d.onclick = function () {
        const was = d.classList.contains("active");
        box.querySelectorAll(".finding").forEach(function (x) { x.classList.remove("active"); });
        if (was) { highlight(null); return; }
        d.classList.add("active");
        highlight(f.chain);
        const subject = data.nodes[f.process_id];
        select(subject ? subject.box : f.process_id);
      };
      box.appendChild(d);
    });
  }

  // -- search ---------------------------------------------------------------------------------
  function haystack(n) {
    return [n.name, String(n.pid), n.exe, (n.args || []).join(" "), n.path, n.remote_ip,
      n.local_ip, n.remote_port, n.local_port, n.container_name, n.container_id, n.user,
      n.message].filter(function (x) { return x !== undefined && x !== null && x !== ""; })
      .join("\n").toLowerCase();
  }

  function search(q) {
    const hits = document.getElementById("hits");
    hits.textContent = "";
    svg.querySelectorAll("g.node.hit").forEach(function (g) { g.classList.remove("hit"); });
    q = q.trim().toLowerCase();
    if (!q) return;
    const found = Object.values(data.nodes).filter(function (n) {
      if (n.folded) return false;  // its image, drawn in its place, is found instead
      return String(n.pid) === q || n.id.toLowerCase() === q || haystack(n).includes(q);
    });
    found.slice(0, 50).forEach(function (n) {
      if (boxes[n.box]) boxes[n.box].classList.add("hit");
      const label = n.kind === "process" ? n.name + "[" + n.pid + "] " +
        (n.args || []).join(" ") : n.kind + " " + (n.path || n.remote_ip || n.id);
      const d = el("div", label);
      d.onclick = function () { centre(n.box); select(n.box); showNode(n.id); };
      hits.appendChild(d);
    });
    hits.insertBefore(el("div", found.length + " match" + (found.length === 1 ? "" : "es"),
      "hint"), hits.firstChild);
  }
  const input = document.getElementById("search");
  input.addEventListener("input", function () { search(input.value); });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") {
      const first = document.querySelector("#hits div:not(.hint)");
      if (first) first.click();
    }
  });

  header();
  findings();
  document.body.setAttribute("data-ready", "1");
})();
