// dynamo node status page script (served at /page/app.js). Plain ES2020, no dependencies.
// It must not know anything beyond the JSON endpoints cluster/status, cluster/ring,
// cluster/placement and stats, always fetched with RELATIVE URLs. All data is inserted
// with textContent / createElement (never innerHTML), so node-supplied text is escaped.
"use strict";
(() => {
  const REFRESH_MS = 2000, TIMEOUT_MS = 5000, SVG_NS = "http://www.w3.org/2000/svg";
  const state = { status: null, ring: null, placement: null, placementError: null, ringSig: "" };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === "class") e.className = v; else e.setAttribute(k, String(v));
    }
    for (const kid of kids.flat()) if (kid != null) e.append(kid instanceof Node ? kid : String(kid));
    return e;
  }
  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // A colour per node id: the ids known (ring members and status members), sorted, take the
  // palette's colours in turn, so neighbours never share one; past the palette, a hash of the
  // id picks a hue.
  const PALETTE = ["#3b82c4", "#e07b39", "#3f9d5a", "#b04fa8", "#c9a227", "#5bb8c9", "#d1495b", "#7a6fd0", "#8c6d46", "#5f7d95"];
  function colour(id) {
    const ids = new Set();
    for (const m of (state.ring && state.ring.members) || []) ids.add(m.id);
    for (const m of (state.status && state.status.members) || []) ids.add(m.id);
    const index = [...ids].sort().indexOf(id);
    if (index >= 0 && index < PALETTE.length) return PALETTE[index];
    let h = 2166136261;
    for (const c of String(id)) { h ^= c.codePointAt(0); h = Math.imul(h, 16777619); }
    return `hsl(${(h >>> 0) % 360}, 62%, 52%)`;
  }
  function swatch(id) { const s = el("span", { class: "swatch" }); s.style.backgroundColor = colour(id); return s; }
  function badge(up) {
    if (up === true) return el("span", { class: "badge up" }, "up");
    if (up === false) return el("span", { class: "badge down" }, "down");
    return el("span", { class: "badge" }, "?");
  }
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const fixed = (v, d = 1) => (isNum(v) ? v.toFixed(d) : "—");
  function bytes(n) {
    if (!isNum(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }
  function dur(ms) {
    if (!isNum(ms)) return "—";
    if (ms < 1000) return `${ms} ms`;
    const s = ms / 1000;
    if (s < 120) return `${s.toFixed(1)} s`;
    return s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
  }
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

  async function getJSON(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(url, { cache: "no-store", signal: ctl.signal, headers: { Accept: "application/json" } });
      let body = null;
      try { body = await res.json(); } catch (_) { /* not JSON */ }
      if (!res.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${res.status}`);
      if (body === null) throw new Error("response is not JSON");
      return body;
    } finally { clearTimeout(timer); }
  }

  function upOf(id) {
    const m = state.status && (state.status.members || []).find((x) => x.id === id);
    return m ? m.up : null;
  }
  const table = (cls, heads, rows) => el("table", { class: cls },
    el("thead", null, el("tr", null, heads.map(([h, c]) => el("th", { class: c }, h)))), el("tbody", null, rows));

  // 1. Members (same layout as the server-rendered snapshot).
  function renderSummary(st) {
    const rows = (st.members || []).map((m) => el("tr", { class: m.up ? null : "is-down" },
      el("td", { title: m.address }, swatch(m.id), m.id), el("td", null, m.zone), el("td", null, m.status),
      el("td", null, badge(m.up)), el("td", { class: "num" }, m.partitions),
      el("td", { class: "num" }, fixed(m.ownership_percent)), el("td", { class: "num" }, m.pending_hints)));
    $("summary").replaceChildren(
      el("h2", null, `Node ${st.node} · ring version ${st.ring_version}`),
      table("members", [["id"], ["zone"], ["status"], ["up/down"], ["partitions", "num"], ["ownership %", "num"], ["pending hints", "num"]], rows));
  }

  // 2. The ring: one equal arc per partition, coloured by its first owner.
  function renderRing() {
    const ring = state.ring;
    if (!ring) return;
    const P = ring.partitions | 0, owners = ring.owners || [];
    const down = new Set(((state.status && state.status.members) || []).filter((m) => m.up === false).map((m) => m.id));
    const hit = state.placement && state.placement.partition < P ? state.placement.partition : null;
    const sig = `${ring.version}|${P}|${[...down].sort().join(",")}|${hit}`;
    if (sig === state.ringSig) return;
    state.ringSig = sig;
    if (!P || !owners.length) {
      $("ring-meta").textContent = "";
      $("ring").replaceChildren(el("p", { class: "muted" }, "no ring yet"));
      $("legend").replaceChildren();
      return;
    }
    $("ring-meta").textContent = `v${ring.version} · ${P} partitions · N=${ring.n}`;
    const C = 110, R1 = 100, R0 = 62;
    const ang = (i) => -Math.PI / 2 + (2 * Math.PI * i) / P;
    const pt = (r, a) => `${(C + r * Math.cos(a)).toFixed(2)} ${(C + r * Math.sin(a)).toFixed(2)}`;
    const arc = (i) => {
      const a0 = ang(i), a1 = a0 + Math.min(2 * Math.PI / P, 2 * Math.PI - 1e-3), large = a1 - a0 > Math.PI ? 1 : 0;
      return `M${pt(R1, a0)} A${R1} ${R1} 0 ${large} 1 ${pt(R1, a1)} L${pt(R0, a1)} A${R0} ${R0} 0 ${large} 0 ${pt(R0, a0)} Z`;
    };
    const svg = svgEl("svg", { viewBox: "0 0 220 220", role: "img", "aria-label": `ring of ${P} partitions` });
    const defs = svgEl("defs"), pat = svgEl("pattern", { id: "hatch", width: 4, height: 4, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    pat.append(svgEl("line", { x1: 0, y1: 0, x2: 0, y2: 4, stroke: "#222", "stroke-width": 1.4, "stroke-opacity": 0.55 }));
    defs.append(pat);
    svg.append(defs);
    const counts = new Map((ring.members || []).map((m) => [m.id, 0]));
    for (let i = 0; i < P; i++) {
      const id = (owners[i] || [])[0];
      if (id == null) continue;
      counts.set(id, (counts.get(id) || 0) + 1);
      const d = arc(i), path = svgEl("path", { d, fill: colour(id) });
      if (P <= 512) { path.setAttribute("stroke", "#fff"); path.setAttribute("stroke-width", 0.3); }
      const title = svgEl("title");
      title.textContent = `partition ${i}: ${(owners[i] || []).join(", ")}`;
      path.append(title);
      if (down.has(id)) { path.setAttribute("fill-opacity", 0.35); svg.append(path, svgEl("path", { d, fill: "url(#hatch)", "pointer-events": "none" })); }
      else svg.append(path);
    }
    if (hit != null) {
      const mid = ang(hit + 0.5), tip = R1 + 7;
      svg.append(svgEl("path", { d: arc(hit), fill: "none", stroke: "#111", "stroke-width": 1.5 }),
        svgEl("line", { x1: C, y1: C, x2: C + tip * Math.cos(mid), y2: C + tip * Math.sin(mid), stroke: "#111", "stroke-width": 2 }),
        svgEl("circle", { cx: C, cy: C, r: 3.5, fill: "#111" }));
    }
    $("ring").replaceChildren(svg);
    $("legend").replaceChildren(...[...counts.keys()].sort().map((id) => el("li", { class: down.has(id) ? "is-down" : null },
      swatch(id), id, el("span", { class: "muted" }, ` ${counts.get(id)} partition${counts.get(id) === 1 ? "" : "s"}`),
      down.has(id) ? el("span", { class: "down-note" }, "(down)") : null)));
  }

  // 3. Placement of one key: preference list, first entry is the coordinator.
  function renderPlacement() {
    const out = $("placement-result"), p = state.placement;
    if (state.placementError) return out.replaceChildren(el("p", { class: "error" }, state.placementError));
    if (!p) return out.replaceChildren();
    out.replaceChildren(
      el("p", null, `“${p.key}” in bucket “${p.bucket}” → partition ${p.partition} (N=${p.n})`),
      el("ol", null, (p.preference_list || []).map((id, i) => el("li", null, swatch(id), id, badge(upOf(id)),
        i === 0 ? el("span", { class: "tag" }, "coordinator") : null))));
  }
  async function locate(ev) {
    ev.preventDefault();
    const bucket = $("bucket").value.trim() || "default", key = $("key").value;
    $("placement-result").replaceChildren(el("p", { class: "muted" }, "looking up…"));
    try {
      state.placement = await getJSON(`cluster/placement?bucket=${encodeURIComponent(bucket)}&key=${encodeURIComponent(key)}`);
      state.placementError = null;
    } catch (e) {
      state.placement = null;
      state.placementError = e.name === "AbortError" ? "request timed out" : e.message;
    }
    renderPlacement();
    renderRing();
  }

  // 4. Hints, handoff, anti-entropy, reaper.
  function renderTransfers(st) {
    const ae = st.anti_entropy || {}, ho = st.handoff || {}, rp = st.reaper || {};
    const kv = (rows) => el("table", { class: "kv" }, el("tbody", null,
      rows.map(([k, v]) => el("tr", null, el("th", null, k), el("td", null, v)))));
    const list = (items, empty) => (items.length ? el("ul", { class: "plain" }, items.map((t) => el("li", null, t))) : el("span", { class: "muted" }, empty));
    const members = st.members || [];
    const ages = (ae.pairs || []).map((p) => p.agreed_ms_ago).filter(isNum);
    const running = (ho.running || []).map((r) => `partition ${r[0]} → ${r[1]}${r[2] != null ? ` · ${r[2]} keys sent` : ""}`);
    const exchanges = (ae.in_progress || []).map((x) => `partition ${x.partition} ↔ ${x.peer}`);
    $("transfers-body").replaceChildren(
      el("h3", null, "Pending hints"),
      kv(members.map((m) => [el("span", null, swatch(m.id), m.id), String(m.pending_hints)])),
      el("h3", null, "Handoff"),
      kv([["queued", String(ho.queued ?? "—")], ["running", list(running, "none")], ["failed", String(ho.failed ?? "—")]]),
      el("h3", null, "Anti-entropy"),
      kv([["enabled", ae.enabled ? "yes" : "no"], ["interval", dur(ae.interval_ms)],
        ["repaired keys", String(ae.repaired_keys ?? "—")], ["bytes moved", bytes(ae.bytes_moved)],
        ["throttled", ae.throttled ? "yes" : "no"], ["allowed", `${bytes(ae.allowed_bytes_per_sec)}/s`],
        ["agreed pairs", `${(ae.pairs || []).length}${ages.length ? ` (oldest ${dur(Math.max(...ages))} ago)` : ""}`],
        ["in progress", list(exchanges, "none")]]),
      el("h3", null, "Reaper"),
      kv([["grace", dur(rp.grace_ms)], ["reaped / kept", `${rp.reaped ?? "—"} / ${rp.kept ?? "—"}`]]));
  }

  // 5. Latency percentiles: one row per operation (get, put, delete first, then any others).
  function renderStats(s) {
    const ops = s.operations || {}, first = ["get", "put", "delete"];
    const names = [...first.filter((o) => o in ops), ...Object.keys(ops).filter((o) => !first.includes(o)).sort()];
    $("latency-title").textContent = isNum(s.window_s) ? `Latency (last ${s.window_s} s, ms)` : "Latency (ms)";
    if (!names.length) return $("latency-body").replaceChildren(el("p", { class: "muted" }, "no operations yet"));
    const rows = names.map((n) => { const o = ops[n] || {}; return el("tr", null, el("td", null, n),
      ...[o.count, o.errors].map((v) => el("td", { class: "num" }, v ?? "—")),
      ...[o.p50_ms, o.p90_ms, o.p99_ms, o.p999_ms].map((v) => el("td", { class: "num" }, fixed(v)))); });
    $("latency-body").replaceChildren(table("latency", [["op"], ["count", "num"], ["errors", "num"],
      ["p50", "num"], ["p90", "num"], ["p99", "num"], ["p99.9", "num"]], rows));
  }

  function setIndicator(ok, why) {
    const ind = $("indicator");
    ind.className = ok ? "indicator ok" : "indicator bad";
    ind.textContent = ok ? `updated ${clock(new Date())}` : "node unreachable";
    ind.title = ok ? "" : why || "";
    document.body.classList.toggle("stale", !ok);
  }

  async function tick() {
    try {
      const [status, stats] = await Promise.allSettled([getJSON("cluster/status"), getJSON("stats")]);
      if (status.status === "rejected") throw status.reason;
      const st = (state.status = status.value);
      document.title = `dynamo — ${st.node}`;
      if (!state.ring || state.ring.version !== st.ring_version) {
        try { state.ring = await getJSON("cluster/ring"); } catch (e) {
          if (!state.ring) $("ring").replaceChildren(el("p", { class: "error" }, `ring unavailable: ${e.message}`));
        }
      }
      renderSummary(st);
      renderRing();
      renderPlacement();
      renderTransfers(st);
      if (stats.status === "fulfilled") renderStats(stats.value);
      else $("latency-body").replaceChildren(el("p", { class: "error" }, `stats unavailable: ${stats.reason.message}`));
      setIndicator(true);
    } catch (e) {
      setIndicator(false, e && e.message);
    } finally {
      setTimeout(tick, REFRESH_MS);
    }
  }

  $("placement-form").addEventListener("submit", locate);
  tick();
})();
