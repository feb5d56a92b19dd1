/* The report page: overview tables and charts (SVG drawn here), the "what if" panel, and the paged gallery with
 * client-side filters. It reads window.EMOREPORT (data.js) and fetches nothing; whatIf() comes from whatif.js.
 */
(function () {
  "use strict";
  const D = window.EMOREPORT;
  const $ = (id) => document.getElementById(id);
  if (!D) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = "data.js did not load: run `emocurate report RUN` again to write it beside this page.";
    document.body.prepend(p);
    return;
  }
  const C = D.cols, N = D.n, EMO = D.emotions, OUT = D.outcomes;
  const NONE = "(none)";

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const kid of kids) node.append(kid);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function f64(b64) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float64Array(bytes.buffer);  // little-endian float64, as data.py wrote them
  }
  const conf = f64(C.conf), score = f64(C.score);
  const emotionName = (i) => (C.emotion[i] < 0 ? NONE : EMO[C.emotion[i]]);
  const colour = (e) => (D.polarity[e] === "negative" ? "var(--neg)" : D.polarity[e] === "positive" ? "var(--pos)" : "#888");
  const fmt = (x, digits) => (Number.isNaN(x) ? "–" : x.toFixed(digits));
  const outcomeText = (o) => (o === 0 ? "kept" : "dropped by " + OUT[o]);

  const R = {
    n: N, gate: C.gate, labelled: C.labelled, captioned: C.caption.map((c) => (c === null ? 0 : 1)), conf, score,
    emotion: C.emotion, outcome: C.outcome, byScore: D.by_score, nEmotions: EMO.length,
    applyToLabelled: D.recipe.apply_min_confidence_to_labelled,
  };
  const state = { conf: String(D.recipe.min_confidence), frac: String(D.recipe.drop_fraction), result: null,
                  matches: [], page: 0 };
  window.emoReport = { data: D, whatIf: (t, f) => whatIf(R, t, f), state };

  // ------------------------------------------------------------------ overview
  function summary() {
    const kept = C.outcome.filter((o) => o === 0).length;
    $("summary").textContent = `${N} records: ${kept} kept, ${N - kept} dropped · classify.min_confidence ` +
      `${D.recipe.min_confidence} · clip_filter.drop_fraction ${D.recipe.drop_fraction} · run ${D.run}`;
  }

  function table(node, head, rows, total) {
    node.replaceChildren(el("tr", {}, ...head.map((h) => el("th", { text: h }))));
    for (const row of rows) node.append(el("tr", row.attrs || {}, ...row.cells.map((c) => el("td", c))));
    if (total) node.append(el("tr", { class: "total" }, ...total.map((c) => el("td", c))));
  }

  function statusTable() {
    const stages = D.status.remaining_after_stage, names = Object.keys(stages);
    const emotions = [...new Set(names.flatMap((s) => Object.keys(stages[s])))];
    table($("status-table"), ["emotion", ...names],
      emotions.map((e) => ({ cells: [{ text: e }, ...names.map((s) => ({ text: String(stages[s][e] || 0),
                                                                      "data-stage": s, "data-emotion": e }))] })),
      [{ text: "total" }, ...names.map((s) => ({ text: String(Object.values(stages[s]).reduce((a, b) => a + b, 0)),
                                                 "data-stage": s, "data-emotion": "total" }))]);
    table($("reasons-table"), ["stage", "reason", "n", "example"],
      D.status.reasons.map((r) => ({ cells: [{ text: r.stage }, { text: r.reason, class: "text" }, { text: String(r.n) },
                                             { text: r.example, class: "text" }] })));
    if (D.fetch) {
      $("fetch-box").hidden = false;
      table($("fetch-table"), ["status", "URLs"],
        Object.entries(D.fetch).map(([s, n]) => ({ cells: [{ text: s }, { text: String(n) }] })));
    }
  }

  function distribution() {
    const kept = EMO.map((e, k) => C.outcome.filter((o, i) => o === 0 && C.emotion[i] === k).length);
    const max = Math.max(1, ...kept), w = 380, rowH = 18;
    const chart = svg("svg", { width: w, height: rowH * EMO.length + 4, role: "img" });
    EMO.forEach((e, k) => {
      const y = k * rowH + 2, bar = ((w - 140) * kept[k]) / max;
      chart.append(svg("text", { x: 0, y: y + 12 }, e),
        svg("rect", { x: 90, y, width: Math.max(bar, 0.5), height: rowH - 4, fill: colour(e) }),
        svg("text", { x: 94 + bar, y: y + 12 }, String(kept[k])));
    });
    $("distribution").replaceChildren(chart);
  }

  const cutLines = new Map();  // emotion index -> the what-if cut line of its histogram

  function histograms() {
    const box = $("histograms"), bins = 20, w = 230, h = 110, pad = 18;
    const pool = [];  // records the CLIP filter ranked: kept, or dropped by it with a score
    for (let i = 0; i < N; i++) if (!Number.isNaN(score[i]) && (C.outcome[i] === 0 || OUT[C.outcome[i]] === "clip_filter")) pool.push(i);
    if (!pool.length) { box.textContent = "No record reached the CLIP filter."; return; }
    let lo = Infinity, hi = -Infinity;  // loops, not Math.min(...xs): 100,000 arguments overflow the stack
    for (const i of pool) { lo = Math.min(lo, score[i]); hi = Math.max(hi, score[i]); }
    if (hi <= lo) hi = lo + 1e-6;
    const bin = (s) => Math.min(bins - 1, Math.floor(((s - lo) / (hi - lo)) * bins));
    box.replaceChildren();
    const empty = [];
    EMO.forEach((e, k) => {
      const mine = pool.filter((i) => C.emotion[i] === k);
      if (!mine.length) { empty.push(e); return; }
      const kept = new Array(bins).fill(0), dropped = new Array(bins).fill(0);
      for (const i of mine) (C.outcome[i] === 0 ? kept : dropped)[bin(score[i])]++;
      const top = Math.max(1, ...kept.map((v, b) => v + dropped[b])), bw = (w - 2) / bins;
      const keptScores = mine.filter((i) => C.outcome[i] === 0).map((i) => score[i]);
      const cut = keptScores.reduce((a, s) => (Number.isNaN(a) || s < a ? s : a), NaN);
      const chart = svg("svg", { width: w, height: h + pad * 2, role: "img", "data-emotion": e });
      chart.append(svg("text", { x: 0, y: 12 }, `${e}: ${keptScores.length} kept, ${mine.length - keptScores.length} dropped`));
      for (let b = 0; b < bins; b++) {
        const hk = (h * kept[b]) / top, hd = (h * dropped[b]) / top, x = 1 + b * bw;
        chart.append(svg("rect", { x, y: pad + h - hk, width: bw - 1, height: hk, fill: colour(e) }),
          svg("rect", { x, y: pad + h - hk - hd, width: bw - 1, height: hd, fill: "var(--drop)" }));
      }
      if (!Number.isNaN(cut)) {
        const x = 1 + ((cut - lo) / (hi - lo)) * (w - 2);
        chart.append(svg("line", { x1: x, x2: x, y1: pad, y2: pad + h, stroke: "#000", "stroke-dasharray": "4 3",
                                   "data-cut": "run", "data-value": String(cut) }));
      }
      const whatIfCut = svg("line", { y1: pad, y2: pad + h, stroke: "#b42318", "stroke-width": 2, "data-cut": "whatif",
                                      visibility: "hidden" });
      chart.append(whatIfCut);
      cutLines.set(k, { line: whatIfCut, place: (s) => 1 + ((Math.min(Math.max(s, lo), hi) - lo) / (hi - lo)) * (w - 2) });
      chart.append(svg("text", { x: 0, y: h + pad * 2 - 2 }, fmt(lo, 3)),
        svg("text", { x: w, y: h + pad * 2 - 2, "text-anchor": "end" }, fmt(hi, 3)),
        svg("text", { x: w / 2, y: h + pad * 2 - 2, "text-anchor": "middle" }, Number.isNaN(cut) ? "no cut" : `cut ${fmt(cut, 4)}`));
      box.append(chart);
    });
    if (empty.length) box.append(el("p", { class: "note", text: "No record reached the CLIP filter: " + empty.join(", ") }));
  }

  // ------------------------------------------------------------------ what if
  const shellQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\"'\"'") + "'");

  function readSlider(name, max, strictMax) {
    const num = $(`wi-${name}-num`), text = num.value.trim(), x = Number(text);
    const ok = text !== "" && Number.isFinite(x) && x >= 0 && (strictMax ? x < max : x <= max);
    num.classList.toggle("invalid", !ok);
    return ok ? text : null;
  }

  function updateWhatIf() {
    const t = readSlider("conf", 1, false), f = readSlider("frac", 1, true);
    if (t === null || f === null) {
      $("wi-note").textContent = "classify.min_confidence must be in [0, 1] and clip_filter.drop_fraction in [0, 1).";
      return;
    }
    state.conf = t; state.frac = f;
    const res = whatIf(R, Number(t), Number(f));
    state.result = res;
    const rows = new Map();  // emotion -> counts
    const get = (e) => rows.get(e) || rows.set(e, { kept_now: 0, kept_new: 0, to_dropped: 0, to_kept: 0, pending: 0 }).get(e);
    EMO.forEach((e) => get(e));
    for (let i = 0; i < N; i++) {
      const row = get(emotionName(i)), now = C.outcome[i] === 0, next = res.outcome[i] === 0;
      row.kept_now += now; row.kept_new += next; row.to_dropped += now && !next; row.to_kept += !now && next;
      row.pending += res.pending[i];
    }
    const cols = ["kept_now", "kept_new", "to_dropped", "to_kept", "pending"];
    const cell = (e, c, v) => ({ text: String(v), "data-emotion": e, "data-col": c,
                                 class: c === "to_kept" && v ? "up" : c === "to_dropped" && v ? "down" : "" });
    const total = Object.fromEntries(cols.map((c) => [c, [...rows.values()].reduce((a, r) => a + r[c], 0)]));
    table($("whatif-table"), ["emotion", "kept now", "kept", "kept → dropped", "dropped → kept", "wait for a caption or score"],
      [...rows.entries()].map(([e, r]) => ({ attrs: { "data-emotion": e }, cells: [{ text: e }, ...cols.map((c) => cell(e, c, r[c]))] })),
      [{ text: "total" }, ...cols.map((c) => cell("total", c, total[c]))]);
    moveCuts(res.outcome);
    $("wi-command").textContent = `emocurate refilter ${shellQuote(D.run)} --set classify.min_confidence=${t} ` +
      `--set clip_filter.drop_fraction=${f}`;
    $("wi-note").textContent = total.pending
      ? `${total.pending} record(s) would have no caption or CLIP score yet: refilter drops them (not_captioned_yet / ` +
        "not_clip_scored_yet) until `emocurate build` runs again on this run folder and computes them."
      : "";
    if ($("f-outcome").value === "flip") filter();
  }

  function moveCuts(outcome) {
    // the what-if cut: the lowest score the what-if keeps, per emotion (red; the run's own cut stays dashed black)
    const low = new Map();
    for (const i of R.byScore) {
      if (outcome[i] === 0 && !low.has(C.emotion[i])) low.set(C.emotion[i], score[i]);  // byScore: lowest first
    }
    for (const [k, { line, place }] of cutLines) {
      const s = low.get(k);
      line.setAttribute("visibility", s === undefined ? "hidden" : "visible");
      line.setAttribute("data-value", s === undefined ? "" : String(s));
      if (s !== undefined) { line.setAttribute("x1", place(s)); line.setAttribute("x2", place(s)); }
    }
  }

  function initWhatIf() {
    for (const [name, value] of [["conf", state.conf], ["frac", state.frac]]) {
      const range = $(`wi-${name}`), num = $(`wi-${name}-num`);
      range.value = value; num.value = value;
      range.addEventListener("input", () => { num.value = range.value; updateWhatIf(); });
      num.addEventListener("input", () => { if (num.value.trim() !== "") range.value = num.value; updateWhatIf(); });
    }
    $("wi-reset").addEventListener("click", () => {
      for (const [name, value] of [["conf", D.recipe.min_confidence], ["frac", D.recipe.drop_fraction]]) {
        $(`wi-${name}`).value = String(value); $(`wi-${name}-num`).value = String(value);
      }
      updateWhatIf();
    });
    updateWhatIf();
  }

  // ------------------------------------------------------------------ gallery
  const orders = {};
  function order(name) {
    if (orders[name]) return orders[name];
    const byScore = D.by_score, scored = new Uint8Array(N);
    for (const i of byScore) scored[i] = 1;
    const unscored = [];
    for (let i = 0; i < N; i++) if (!scored[i]) unscored.push(i);
    if (name === "score-asc") orders[name] = byScore.concat(unscored);
    else if (name === "score-desc") orders[name] = byScore.slice().reverse().concat(unscored);
    else if (name === "input") orders[name] = Array.from({ length: N }, (_, i) => i);
    else {
      const have = [], none = [];
      for (let i = 0; i < N; i++) (Number.isNaN(conf[i]) ? none : have).push(i);
      have.sort((a, b) => conf[a] - conf[b] || a - b);
      orders[name] = (name === "conf-desc" ? have.reverse() : have).concat(none);
    }
    return orders[name];
  }

  let lowerCaptions = null;
  function filter() {
    const emotion = $("f-emotion").value, outcome = $("f-outcome").value, text = $("f-text").value.trim().toLowerCase();
    const lo = $("f-min").value.trim() === "" ? null : Number($("f-min").value);
    const hi = $("f-max").value.trim() === "" ? null : Number($("f-max").value);
    const emo = emotion === "all" ? null : emotion === NONE ? -1 : EMO.indexOf(emotion);
    if (text && !lowerCaptions) lowerCaptions = C.caption.map((c) => (c === null ? null : c.toLowerCase()));
    const flips = outcome === "flip" && state.result ? state.result.outcome : null;
    const out = [];
    for (const i of order($("f-sort").value)) {
      if (emo !== null && C.emotion[i] !== emo) continue;
      const o = C.outcome[i];
      if (outcome === "kept" ? o !== 0 : outcome === "dropped" ? o === 0 : outcome === "flip"
          ? !flips || (flips[i] === 0) === (o === 0) : outcome !== "all" && OUT[o] !== outcome) continue;
      if ((lo !== null || hi !== null) && (Number.isNaN(score[i]) || (lo !== null && score[i] < lo) || (hi !== null && score[i] > hi))) continue;
      if (text && (lowerCaptions[i] === null || !lowerCaptions[i].includes(text))) continue;
      out.push(i);
    }
    state.matches = out;
    state.page = 0;
    render();
  }

  function tile(i) {
    const o = C.outcome[i], e = emotionName(i);
    const image = C.thumb[i]
      ? el("img", { loading: "lazy", alt: "", src: `thumbs/${String(C.shard[i]).padStart(5, "0")}/${C.seq[i]}.jpg` })
      : el("div", { class: "noimg", text: "no image" });
    const src = (C.source[i] < 0 ? "" : D.sources[C.source[i]] + ":") + C.source_id[i];
    return el("div", { class: o === 0 ? "tile kept" : "tile", "data-i": String(i), "data-outcome": OUT[o] }, image,
      el("div", {}, el("b", { text: e }), ` · ${outcomeText(o)}`),
      el("div", { text: `confidence ${fmt(conf[i], 3)} · CLIP ${fmt(score[i], 4)}` }),
      C.reason[i] >= 0 ? el("div", { class: "why", text: D.reasons[C.reason[i]] }) : "",
      el("div", { class: "src", text: src }),
      C.caption[i] === null ? "" : el("p", { class: "cap", text: C.caption[i] }));
  }

  function render() {
    const size = Number($("f-page-size").value), pages = Math.max(1, Math.ceil(state.matches.length / size));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    const start = state.page * size;
    $("tiles").replaceChildren(...state.matches.slice(start, start + size).map(tile));
    $("match-count").textContent = `${state.matches.length} of ${N} records match`;
    $("page-info").textContent = `page ${state.page + 1} of ${pages}`;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function initGallery() {
    const emotions = $("f-emotion"), outcomes = $("f-outcome");
    emotions.append(el("option", { value: "all", text: "all" }), ...EMO.map((e) => el("option", { value: e, text: e })));
    if (C.emotion.some((k) => k < 0)) emotions.append(el("option", { value: NONE, text: NONE }));
    outcomes.append(el("option", { value: "all", text: "all" }), el("option", { value: "kept", text: "kept" }),
      el("option", { value: "dropped", text: "dropped (any stage)" }),
      ...OUT.slice(1).map((o) => el("option", { value: o, text: "dropped by " + o })),
      el("option", { value: "flip", text: "would flip (what if)" }));
    let timer = null;
    $("f-text").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(filter, 150); });
    $("f-text").addEventListener("change", () => { clearTimeout(timer); filter(); });  // Enter: search now
    for (const id of ["f-emotion", "f-outcome", "f-sort", "f-min", "f-max"]) $(id).addEventListener("change", filter);
    $("f-page-size").addEventListener("change", () => { state.page = 0; render(); });
    $("prev").addEventListener("click", () => { state.page--; render(); });
    $("next").addEventListener("click", () => { state.page++; render(); });
    filter();
  }

  summary();
  statusTable();
  distribution();
  histograms();
  initWhatIf();
  initGallery();
  document.body.dataset.ready = "1";  // tests wait for this
})();
