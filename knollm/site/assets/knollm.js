/* Knollm site JavaScript: explorer, pricing calculator, model detail view, SVG chart,
 * sortable tables. The project's own code, no dependencies, no CDN.
 *
 * Safety: every string that comes from the data is put into the page with
 * textContent / setAttribute (never innerHTML); links built from data only point
 * inside the site (ids are URL-encoded).
 *
 * window.Knollm.costPerRequest(prices, workload) is the same arithmetic as
 * knollm/query/cost.py::cost_per_request (tested against it in tests/test_browser_site.py).
 */
(function () {
  "use strict";

  var K = (window.Knollm = window.Knollm || {});

  // ------------------------------------------------------------------ cost (mirror of knollm/query/cost.py)
  /** The highest tier whose start is below the input tokens (null when none applies). */
  function tierFor(tiers, inTok) {
    if (!tiers) return null;
    for (var i = tiers.length - 1; i >= 0; i--) if (inTok > tiers[i].start) return tiers[i];
    return null;
  }

  /** USD for one request; prices in USD per 1M tokens; tiers as Model.price_tiers (optional);
   *  null when a needed price is unknown. */
  function costPerRequest(prices, w, tiers) {
    prices = prices || {};
    var t = tierFor(tiers, w.input_tokens || 0);
    if (t) {
      var merged = {};
      Object.keys(prices).forEach(function (k) { merged[k] = prices[k]; });
      Object.keys(t).forEach(function (k) { if (k !== "start") merged[k] = t[k]; });
      prices = merged;
    }
    var pin = prices.input, pout = prices.output, pcache = prices.cache_read;
    var inTok = w.input_tokens || 0, outTok = w.output_tokens || 0, cached = w.cached_tokens || 0;
    var fresh = inTok - cached;
    var total = 0.0;
    if (fresh > 0) {
      if (pin === null || pin === undefined) return null;
      total += fresh * pin;
    }
    if (cached > 0) {
      var p = pcache !== null && pcache !== undefined ? pcache : pin;
      if (p === null || p === undefined) return null;
      total += cached * p;
    }
    if (outTok > 0) {
      if (pout === null || pout === undefined) return null;
      total += outTok * pout;
    }
    total = total / 1000000;
    if (prices.request !== null && prices.request !== undefined) total += prices.request;
    return total;
  }

  /** True when workload w uses a price of row r marked suspect (such a cost never ranks;
   *  same rule as knollm.query.cost.suspect_prices). */
  function usesSuspect(ix, r, w) {
    var fl = ix.m.f[r], F = ix.flags;
    if (!(fl & (F.suspect_input | F.suspect_output | F.suspect_cache_read | F.suspect_request))) return false;
    var cached = w.cached_tokens || 0;
    return !!(((w.input_tokens || 0) - cached > 0 && (fl & F.suspect_input)) ||
              ((w.output_tokens || 0) > 0 && (fl & F.suspect_output)) ||
              (cached > 0 && (fl & F.suspect_cache_read)) || (fl & F.suspect_request));
  }
  K.usesSuspect = usesSuspect;

  /** The price fields workload w uses that the model's suspect map marks (same as
   *  knollm.query.cost.suspect_prices): an estimate using one is unknown, never a figure. */
  function suspectPrices(sus, w) {
    sus = sus || {};
    var cached = w.cached_tokens || 0;
    return [["input", (w.input_tokens || 0) - cached], ["output", w.output_tokens || 0], ["request", 1],
            ["cache_read", cached]].filter(function (u) { return u[1] > 0 && sus["prices." + u[0]]; })
      .map(function (u) { return u[0]; });
  }
  K.suspectPrices = suspectPrices;

  /** Cost of a workload (with .requests) on prices: {per_request, total, tier_start}; tiers as
   *  Model.price_tiers (the same costPerRequest as the calculator). */
  function estimate(prices, w, tiers) {
    var per = costPerRequest(prices, w, tiers), t = tierFor(tiers, w.input_tokens || 0);
    return { per_request: per, total: per === null ? null : per * (w.requests === undefined ? 1 : w.requests),
             tier_start: t ? t.start : null };
  }

  var SUFFIX = { "": 1, k: 1000, m: 1000000, b: 1000000000 };
  /** "1.5M", "200k", "1000" -> int; NaN when not a count (same grammar as knollm.query.cost.parse_count). */
  //  Commas only between groups of three digits ("1,5M" is NaN, not 15M); a fraction only where
  //  the suffix makes the count whole ("1.5M" yes, "2.5" / "0.4" / "1.0005k" NaN), as in Python.
  function parseCount(text) {
    if (typeof text === "number") return text >= 0 && isFinite(text) ? Math.floor(text) : NaN;
    var m = /^\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*([kKmMbB]?)\s*$/.exec(String(text).replace(/_/g, ""));
    if (!m) return NaN;
    var whole = m[1].replace(/,/g, ""), frac = (m[2] || ".").slice(1);
    if (whole.length + frac.length > 400) return NaN;  // too large, as parse_count
    var n = BigInt(whole + frac) * BigInt(SUFFIX[m[3].toLowerCase()]), d = BigInt(10) ** BigInt(frac.length);
    if (n % d !== BigInt(0)) return NaN;  // exact: no float rounding
    var v = Number(n / d);
    return isFinite(v) ? v : NaN;
  }

  /** FNV-1a (32 bit) of the key's UTF-8 bytes modulo n (same as knollm.site.data.bucket_of). */
  function bucketOf(key, n) {
    var bytes = new TextEncoder().encode(key);
    var h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) {
      h ^= bytes[i];
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h % (n || 128);
  }

  K.costPerRequest = costPerRequest;
  K.estimate = estimate;
  K.parseCount = parseCount;
  K.bucketOf = bucketOf;

  // ------------------------------------------------------------------ helpers
  var ROOT = (function () {
    var s = document.currentScript;
    var src = s && s.src ? s.src : "";
    var i = src.lastIndexOf("assets/knollm/knollm.js");
    return i >= 0 ? src.slice(0, i) : new URL("./", location.href).href;
  })();
  K.root = ROOT;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // A results table (thead + tbody) in a scrolling wrapper, followed by a "Show more" button.
  function resultsTable(root, id, onMore) {
    var wrap = el("div", { class: "kn-table-wrap" });
    var table = el("table", { class: "kn-table kn-models", id: id });
    var thead = el("thead"), tbody = el("tbody");
    table.appendChild(thead);
    table.appendChild(tbody);
    wrap.appendChild(table);
    root.appendChild(wrap);
    var more = el("button", { type: "button", class: "md-button", id: "kn-more" }, "Show more");
    more.addEventListener("click", onMore);
    root.appendChild(more);
    return { table: table, thead: thead, tbody: tbody, more: more };
  }

  var SVGNS = "http://www.w3.org/2000/svg";
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function fmtPrice(v) {
    if (v === null || v === undefined) return "?";
    if (v === 0) return "free";
    if (v < 0) return "?";
    if (v >= 100) return "$" + Math.round(v).toLocaleString("en-US");
    if (v >= 1) return "$" + v.toFixed(2).replace(/\.?0+$/, "");
    return "$" + v.toFixed(4).replace(/\.?0+$/, "");
  }
  function fmtTokens(v) {
    if (v === null || v === undefined) return "?";
    if (v >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (v >= 1000) return (v / 1000).toFixed(1).replace(/\.0$/, "") + "k";
    return String(v);
  }
  function fmtUSD(v) {
    if (v === null || v === undefined) return "?";
    if (v === 0) return "$0";
    if (v >= 1000) return "$" + v.toLocaleString("en-US", { maximumFractionDigits: 0 });
    if (v >= 0.1) return "$" + v.toFixed(2);
    if (v >= 0.01) return "$" + v.toFixed(4);
    return "$" + v.toPrecision(3);
  }
  K.fmtUSD = fmtUSD;
  /** A price field's value formatted by its unit (voc.priceUnit): per 1M tokens with fmtPrice,
   *  per request / image / second / pixel / 1M characters with fmtUSD (small amounts keep their digits). */
  function perTokenUnit(voc, f) { return ((voc && voc.priceUnit[f]) || "1M tokens") === "1M tokens"; }
  function fmtPriceField(voc, f, v) {
    if (v === null || v === undefined) return "?";
    return perTokenUnit(voc, f) ? fmtPrice(v) : fmtUSD(v);
  }
  K.fmtPriceField = fmtPriceField;

  function pageHref(ix, path, query) {
    var url = ix && ix.dirurls === false ? path + ".html" : path + "/";
    return ROOT + url + (query || "");
  }

  // ------------------------------------------------------------------ index
  var indexPromise = null;
  function loadIndex() {
    if (!indexPromise) {
      indexPromise = fetch(ROOT + "data/index.json")
        .then(function (r) {
          if (!r.ok) throw new Error("data/index.json: HTTP " + r.status);
          return r.json();
        })
        .then(prepare);
    }
    return indexPromise;
  }
  K.loadIndex = loadIndex;

  /** data/index-head.json: the first rows of the explorer's default view (null if absent). */
  function loadHead() {
    var inline = document.getElementById("kn-index-head");  // put into the explorer page by the plugin
    if (inline) {
      try { return Promise.resolve(prepare(JSON.parse(inline.textContent))); } catch (e) { /* fetch it instead */ }
    }
    return fetch(ROOT + "data/index-head.json")
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (h) { return h ? prepare(h) : null; })
      .catch(function () { return null; });
  }

  function prepare(ix) {
    var m = ix.m, n = m.i.length, P = ix.providers;
    var hay = new Array(n), keys = new Array(n), lname = new Array(n);
    for (var r = 0; r < n; r++) {
      var pid = m.p[r] >= 0 ? P[m.p[r]][0] : "?";
      keys[r] = pid + "/" + m.i[r];
      var nm = m.n[r] || m.i[r];
      lname[r] = nm.toLowerCase();
      hay[r] = (keys[r] + " " + (m.n[r] || "") + " " + (m.cn[r] >= 0 ? ix.canon[m.cn[r]][0] : (m.cs && m.cs[r]) || "")).toLowerCase();
    }
    var byName = new Array(n);
    for (r = 0; r < n; r++) byName[r] = r;
    byName.sort(function (a, b) {
      return lname[a] < lname[b] ? -1 : lname[a] > lname[b] ? 1 : keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0;
    });
    var pcount = new Array(P.length).fill(0);
    for (r = 0; r < n; r++) if (m.p[r] >= 0) pcount[m.p[r]]++;
    var pIndex = {};
    P.forEach(function (p, i) { pIndex[p[0]] = i; });
    ix.n = n; ix.hay = hay; ix.keys = keys; ix.lname = lname; ix.byName = byName; ix.pcount = pcount;
    ix.pIndex = pIndex;
    vocabOf(ix);
    return ix;
  }

  /** Labels, abbreviations and bits from the index's ``vocab`` (knollm/vocab.py): nothing hard-coded here. */
  function vocabOf(ix) {
    var v = (ix && ix.vocab) || { caps: [], prices: [], sources: [] };
    var out = { capLabel: {}, capAbbr: {}, capBit: {}, priceLabel: {}, priceUnit: {}, srcLabel: {},
                prices: v.prices.map(function (p) { return p.key; }) };
    v.caps.forEach(function (c) { out.capLabel[c.key] = c.label; out.capAbbr[c.key] = c.abbr; out.capBit[c.key] = c.bit; });
    v.prices.forEach(function (p) { out.priceLabel[p.key] = p.label; out.priceUnit[p.key] = p.unit; });
    v.sources.forEach(function (s) { out.srcLabel[s.key] = s.label; });
    if (ix) ix.voc = out;
    return out;
  }
  K.vocabOf = vocabOf;

  function pricesOf(ix, r) {
    var m = ix.m;
    return { input: m.pi[r], output: m.po[r], cache_read: m.pc[r], request: m.pr[r] };
  }
  K.pricesOf = pricesOf;

  // ------------------------------------------------------------------ state <-> URL
  var FACET_DEFAULTS = { s: "", p: [], cap: [], mod: [], ctx: 0, maxp: null, free: false, paid: false, ow: false,
                         dep: false, kind: "", sort: "", dir: "asc" };
  function readState(extra) {
    var sp = new URLSearchParams(location.search);
    var st = {};
    var defs = Object.assign({}, FACET_DEFAULTS, extra || {});
    Object.keys(defs).forEach(function (k) {
      var d = defs[k], v = sp.get(k);
      if (v === null) st[k] = Array.isArray(d) ? d.slice() : d;
      else if (Array.isArray(d)) st[k] = v ? v.split(",").filter(Boolean) : [];
      else if (typeof d === "boolean") st[k] = v === "1" || v === "true";
      else if (k === "maxp") st[k] = v === "" || isNaN(parseFloat(v)) ? null : parseFloat(v);
      else if (k === "ctx") st[k] = parseCount(v) || 0;
      else st[k] = v;
    });
    st._defs = defs;
    return st;
  }
  function writeState(st) {
    var sp = new URLSearchParams();
    Object.keys(st._defs).forEach(function (k) {
      var v = st[k], d = st._defs[k];
      if (Array.isArray(v)) { if (v.length) sp.set(k, v.join(",")); }
      else if (typeof d === "boolean") { if (v !== d) sp.set(k, v ? "1" : "0"); }
      else if (v !== null && v !== undefined && String(v) !== String(d === null ? "" : d) && v !== "") sp.set(k, String(v));
    });
    var qs = sp.toString();
    var url = location.pathname + (qs ? "?" + qs : "") + location.hash;
    try { history.replaceState(null, "", url); } catch (e) { /* file:// in some browsers */ }
    return qs;
  }
  K.readState = readState;
  var writeTimer = null;
  /** URL updates are debounced: Chrome throttles rapid history.replaceState calls. */
  function writeStateSoon(st) {
    if (writeTimer) clearTimeout(writeTimer);
    writeTimer = setTimeout(function () { writeTimer = null; writeState(st); }, 120);
  }

  // ------------------------------------------------------------------ filtering
  function bitsOf(names, list) {
    var b = 0;
    names.forEach(function (x) { var i = list.indexOf(x); if (i >= 0) b |= 1 << i; });
    return b;
  }
  function tokens(q) {
    return String(q || "").toLowerCase().replace(/\//g, " ").split(/\s+/).filter(Boolean);
  }
  /** OR-ed alternatives of a search text: split on "," "|" and the word "or"
   *  (same as knollm.query.filters.word_groups); each a list of words that must all occur. */
  function wordGroups(q) {
    return String(q || "").toLowerCase().split(/\s*(?:,|\||(?<![0-9A-Za-z_])or(?![0-9A-Za-z_]))\s*/)
      .map(tokens).filter(function (g) { return g.length; });
  }
  K.wordGroups = wordGroups;
  /** A paid offer: not free and a known input or output price above $0 (Filters.paid). */
  function isPaid(ix, r) {
    return !(ix.m.f[r] & ix.flags.free) && ((ix.m.pi[r] || 0) > 0 || (ix.m.po[r] || 0) > 0);
  }
  K.isPaid = isPaid;

  /** Row numbers matching the facets of st, in name order (Catalog.search semantics). */
  function filterRows(ix, st) {
    var m = ix.m, out = [];
    var groups = wordGroups(st.s), ng = groups.length;
    var pset = null;
    if (st.p.length) {
      pset = {};
      st.p.forEach(function (id) { if (ix.pIndex[id] !== undefined) pset[ix.pIndex[id]] = true; });
    }
    var capMask = 0, FL = ix.flags;
    st.cap.forEach(function (c) { capMask |= ix.voc.capBit[c] || 0; });
    var modMask = bitsOf(st.mod, ix.mods);
    var ctx = st.ctx || 0, maxp = st.maxp, kind = st.kind ? ix.kinds.indexOf(st.kind) : -1;
    var f = m.f, ct = m.ct, im = m.im, om = m.om, cx = m.cx, pi = m.pi, p = m.p, k = m.k, hay = ix.hay;
    var order = ix.byName;
    for (var j = 0; j < order.length; j++) {
      var r = order[j];
      var fl = f[r];
      if (!st.dep && (fl & FL.deprecated)) continue;
      if (pset && !pset[p[r]]) continue;
      if ((ct[r] & capMask) !== capMask) continue;
      if (modMask && ((im[r] | om[r]) & modMask) !== modMask) continue;
      // a suspect context never passes (Filters' rule); needs a suspect_context bit in the page data
      if (ctx && (!(cx[r] >= ctx) || (FL.suspect_context && (fl & FL.suspect_context)))) continue;
      // a suspect input price passes no price bound either (Filters' rule)
      if (maxp !== null && (pi[r] === null || pi[r] > maxp || (fl & FL.suspect_input))) continue;
      if (st.free && !(fl & FL.free)) continue;
      if (st.paid && !isPaid(ix, r)) continue;
      if (st.ow && !(fl & FL.open_weights)) continue;
      if (kind >= 0 && k[r] !== kind) continue;
      if (ng) {
        var h = hay[r], any = false;
        for (var g = 0; g < ng && !any; g++) {
          var words = groups[g], ok = true;
          for (var w = 0; w < words.length; w++) if (h.indexOf(words[w]) < 0) { ok = false; break; }
          any = ok;
        }
        if (!any) continue;
      }
      out.push(r);
    }
    return out;
  }
  K.filterRows = filterRows;

  function sortRows(ix, rows, col, dir, valueOf) {
    if (!col) return rows;
    var sign = dir === "desc" ? -1 : 1;
    var keys = ix.keys;
    var vals = {}, grp = {};
    var priceCol = col === "in" || col === "out" || col === "cache";
    rows.forEach(function (r) { vals[r] = valueOf(r, col); grp[r] = priceCol && !isPaid(ix, r) ? 1 : 0; });
    rows.sort(function (a, b) {
      var va = vals[a], vb = vals[b];
      var na = va === null || va === undefined, nb = vb === null || vb === undefined;
      // unknown (or suspect) last in either direction, after the $0 offers too
      if (na || nb) return na && nb ? (keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0) : na ? 1 : -1;
      if (grp[a] !== grp[b]) return grp[a] - grp[b];  // price sorts: paid offers first, $0 (free tiers) after
      if (va < vb) return -sign;
      if (va > vb) return sign;
      return keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0;
    });
    return rows;
  }

  // ------------------------------------------------------------------ facet panel
  var CTX_CHOICES = [0, 8000, 32000, 128000, 200000, 1000000];
  function checkboxList(ix, st, facet, items, onChange) {
    var box = el("div", { class: "kn-checks" });
    items.forEach(function (it) {
      var lab = el("label", { class: "kn-check" });
      var cb = el("input", { type: "checkbox", "data-facet": facet, value: it[0] });
      cb.checked = st[facet].indexOf(it[0]) >= 0;
      cb.addEventListener("change", function () {
        var cur = st[facet].filter(function (x) { return x !== it[0]; });
        if (cb.checked) cur.push(it[0]);
        st[facet] = cur;
        onChange();
      });
      lab.appendChild(cb);
      lab.appendChild(document.createTextNode(" " + it[1]));
      box.appendChild(lab);
    });
    return box;
  }

  /** A drop-down facet: a button that shows / hides its panel (not <details>: Material styles those). */
  function dropdown(id) {
    var box = el("div", { class: "kn-facet", id: id });
    var btn = el("button", { type: "button", class: "kn-facet-btn", "aria-expanded": "false" });
    var panel = el("div", { class: "kn-facet-panel", hidden: "" });
    btn.addEventListener("click", function () {
      var open = panel.hasAttribute("hidden");
      Array.prototype.forEach.call(document.querySelectorAll(".kn-facet-panel"), function (p) { p.setAttribute("hidden", ""); });
      Array.prototype.forEach.call(document.querySelectorAll(".kn-facet-btn"), function (b) { b.setAttribute("aria-expanded", "false"); });
      if (open) { panel.removeAttribute("hidden"); btn.setAttribute("aria-expanded", "true"); }
    });
    box.appendChild(btn);
    box.appendChild(panel);
    return { box: box, btn: btn, panel: panel };
  }
  document.addEventListener("click", function (e) {
    if (!e.target.closest || e.target.closest(".kn-facet")) return;
    Array.prototype.forEach.call(document.querySelectorAll(".kn-facet-panel"), function (p) { p.setAttribute("hidden", ""); });
  });

  function buildFacets(container, ix, st, onChange) {
    var wrap = el("div", { class: "kn-facets" });
    var q = el("input", { type: "search", id: "kn-q", placeholder: "Search " + ix.n.toLocaleString("en-US") +
                          " models (name, id, provider)…", autocomplete: "off", "aria-label": "Search models" });
    q.value = st.s;
    q.addEventListener("input", function () { st.s = q.value; onChange(); });
    wrap.appendChild(q);

    var row = el("div", { class: "kn-facet-row" });
    // providers
    var dp = dropdown("kn-f-providers"), sum = dp.btn;
    var pfilter = el("input", { type: "search", placeholder: "filter providers", class: "kn-pfilter" });
    dp.panel.appendChild(pfilter);
    var pitems = ix.providers.map(function (p, i) { return [p[0], p[1] + " (" + ix.pcount[i] + ")", ix.pcount[i]]; })
      .filter(function (x) { return x[2] > 0; })
      .sort(function (a, b) { return b[2] - a[2] || (a[0] < b[0] ? -1 : 1); });
    var plist = checkboxList(ix, st, "p", pitems, function () { setSummaries(); onChange(); });
    dp.panel.appendChild(plist);
    pfilter.addEventListener("input", function () {
      var t = pfilter.value.toLowerCase();
      Array.prototype.forEach.call(plist.children, function (lab) {
        lab.style.display = lab.textContent.toLowerCase().indexOf(t) >= 0 ? "" : "none";
      });
    });
    row.appendChild(dp.box);
    // capabilities
    var dc = dropdown("kn-f-caps"), scap = dc.btn;
    dc.panel.appendChild(checkboxList(ix, st, "cap", ix.caps.map(function (c) { return [c, ix.voc.capLabel[c] || c]; }),
      function () { setSummaries(); onChange(); }));
    row.appendChild(dc.box);
    // modalities
    var dm = dropdown("kn-f-mods"), smod = dm.btn;
    dm.panel.appendChild(checkboxList(ix, st, "mod", ix.mods.map(function (c) { return [c, c]; }),
      function () { setSummaries(); onChange(); }));
    row.appendChild(dm.box);

    function setSummaries() {
      sum.textContent = "Providers" + (st.p.length ? " (" + st.p.length + ")" : "") + " ▾";
      scap.textContent = "Capabilities" + (st.cap.length ? " (" + st.cap.length + ")" : "") + " ▾";
      smod.textContent = "Modalities" + (st.mod.length ? " (" + st.mod.length + ")" : "") + " ▾";
    }
    setSummaries();

    // min context
    var lctx = el("label", { class: "kn-field" }, "Min context ");
    var sctx = el("select", { id: "kn-ctx" });
    CTX_CHOICES.forEach(function (c) {
      var o = el("option", { value: String(c) }, c ? "≥ " + fmtTokens(c) : "any");
      sctx.appendChild(o);
    });
    if (CTX_CHOICES.indexOf(st.ctx) < 0 && st.ctx) sctx.appendChild(el("option", { value: String(st.ctx) }, "≥ " + fmtTokens(st.ctx)));
    sctx.value = String(st.ctx || 0);
    sctx.addEventListener("change", function () { st.ctx = parseInt(sctx.value, 10) || 0; onChange(); });
    lctx.appendChild(sctx);
    row.appendChild(lctx);
    // max price
    var lp = el("label", { class: "kn-field" }, "Max input $/1M ");
    var ip = el("input", { type: "number", min: "0", step: "any", id: "kn-maxp", placeholder: "any" });
    if (st.maxp !== null) ip.value = String(st.maxp);
    ip.addEventListener("input", function () {
      var v = parseFloat(ip.value);
      st.maxp = ip.value === "" || isNaN(v) ? null : v;
      onChange();
    });
    lp.appendChild(ip);
    row.appendChild(lp);
    // kind
    var lk = el("label", { class: "kn-field" }, "Kind ");
    var sk = el("select", { id: "kn-kind" });
    sk.appendChild(el("option", { value: "" }, "any"));
    ix.kinds.forEach(function (k) { sk.appendChild(el("option", { value: k }, k)); });
    sk.value = st.kind;
    sk.addEventListener("change", function () { st.kind = sk.value; onChange(); });
    lk.appendChild(sk);
    row.appendChild(lk);
    // toggles
    [["paid", "Paid only"], ["free", "Free only"], ["ow", "Open weights"], ["dep", "Show deprecated"]].forEach(function (t) {
      var lab = el("label", { class: "kn-check kn-toggle" });
      var cb = el("input", { type: "checkbox", id: "kn-" + t[0] });
      cb.checked = !!st[t[0]];
      cb.addEventListener("change", function () { st[t[0]] = cb.checked; onChange(); });
      lab.appendChild(cb);
      lab.appendChild(document.createTextNode(" " + t[1]));
      row.appendChild(lab);
    });
    var reset = el("a", { class: "kn-link", href: location.pathname, id: "kn-reset" }, "Reset");
    row.appendChild(reset);
    wrap.appendChild(row);
    container.appendChild(wrap);
    return wrap;
  }

  // ------------------------------------------------------------------ table helpers
  function modelCell(ix, r) {
    var td = el("td");
    var a = el("a", { href: pageHref(ix, "model", "?m=" + encodeURIComponent(ix.keys[r])) });
    a.appendChild(el("span", { class: "kn-mname" }, ix.m.n[r] || ix.m.i[r]));
    td.appendChild(a);
    if (ix.m.n[r]) td.appendChild(el("div", { class: "kn-dim kn-mid" }, ix.m.i[r]));
    var fl = ix.m.f[r];
    if (fl & ix.flags.free) td.appendChild(el("span", { class: "kn-badge kn-free" }, "free"));
    if (fl & ix.flags.open_weights) td.appendChild(el("span", { class: "kn-badge" }, "open"));
    if (fl & ix.flags.deprecated) td.appendChild(el("span", { class: "kn-badge kn-dep" }, "deprecated"));
    if (fl & ix.flags.suspect) {
      td.appendChild(el("span", { class: "kn-badge kn-suspect", title: "a value failed a plausibility check" },
                        "suspect"));
    }
    return td;
  }
  function providerCell(ix, r) {
    var td = el("td", { class: "kn-nowrap" });
    var p = ix.providers[ix.m.p[r]];
    if (p) td.appendChild(el("a", { href: pageHref(ix, "providers/" + encodeURIComponent(p[0])) }, p[1]));
    return td;
  }
  function capsCell(ix, r) {
    var td = el("td", { class: "kn-caps" });
    var b = ix.m.ct[r];
    ix.caps.forEach(function (c) {
      if (b & ix.voc.capBit[c]) td.appendChild(el("abbr", { title: ix.voc.capLabel[c] || c }, ix.voc.capAbbr[c] || "?"));
    });
    if (!b) td.textContent = "–";
    return td;
  }
  /** The prices, limits and capabilities cells of a model row (explorer, large provider table). */
  function modelNumbers(ix, r, tr) {
    var m = ix.m;
    tr.appendChild(numCell(fmtPrice(m.pi[r]), m.pi[r]));
    tr.appendChild(numCell(fmtPrice(m.po[r]), m.po[r]));
    tr.appendChild(numCell(fmtPrice(m.pc[r]), m.pc[r]));
    tr.appendChild(numCell(fmtTokens(m.cx[r]), m.cx[r]));
    tr.appendChild(numCell(fmtTokens(m.mo[r]), m.mo[r]));
    tr.appendChild(capsCell(ix, r));
  }
  function numCell(text, raw) {
    var td = el("td", { class: "kn-num" }, text);
    if (raw !== null && raw !== undefined) td.setAttribute("data-v", String(raw));
    return td;
  }

  function headerRow(cols, st, onSort) {
    var tr = el("tr");
    cols.forEach(function (c) {
      var th = el("th", { "data-col": c[0], class: c[2] ? "kn-num" : null });
      if (c[0]) {
        var b = el("button", { type: "button", class: "kn-sort" }, c[1]);
        if (st.sort === c[0]) b.textContent = c[1] + (st.dir === "desc" ? " ▼" : " ▲");
        b.addEventListener("click", function () { onSort(c[0]); });
        th.appendChild(b);
      } else th.textContent = c[1];
      tr.appendChild(th);
    });
    return tr;
  }

  /** The value a column sorts on; a suspect price or context is as good as unknown (sorts last,
   *  in both directions), as in the CLI's sorts (knollm.query.filters.known). */
  function colValue(ix) {
    var m = ix.m, F = ix.flags;
    function known(r, bit, v) { return bit && (m.f[r] & bit) ? null : v; }
    return function (r, col) {
      switch (col) {
        case "name": return ix.lname[r];
        case "provider": return ix.keys[r].toLowerCase();
        case "in": return known(r, F.suspect_input, m.pi[r]);
        case "out": return known(r, F.suspect_output, m.po[r]);
        case "cache": return known(r, F.suspect_cache_read, m.pc[r]);
        case "ctx": return known(r, F.suspect_context, m.cx[r]);
        case "maxout": return m.mo[r];
        case "date": return m.d[r];
        default: return null;
      }
    };
  }

  // ------------------------------------------------------------------ explorer
  var PAGE = 60;

  function initExplorer(root) {
    root.textContent = "Loading the model index…";
    var full = false;
    function go() {
      loadIndex().then(function (ix) { full = true; buildExplorer(root, ix); })
        .catch(function (e) { root.textContent = "Could not load the model index: " + e.message; });
    }
    if (!location.search) {
      // the default view: the first rows from the small head file, then the full index
      // (fetched after, so the two do not share a slow link)
      loadHead().then(function (h) {
        if (h && !full) buildExplorer(root, h);
        go();
      });
    } else go();
  }

  function buildExplorer(root, ix) {
    var prev = K.explorer && K.explorer.state;  // the head view's state (what was typed meanwhile)
    root.textContent = "";
    var st = prev || readState({ chart: false, sel: [] });
    var head = !!ix.head;
    var shown = PAGE;
    var facets = buildFacets(root, ix, st, function () { shown = PAGE; update(); });
    if (head) {
      Array.prototype.forEach.call(facets.querySelectorAll("input, select, button"), function (x) {
        if (x.id !== "kn-q") x.disabled = true;
      });
    }
    var status = el("p", { class: "kn-status", id: "kn-status", "aria-live": "polite" });
    root.appendChild(status);
    var tray = el("div", { class: "kn-tray", id: "kn-tray", hidden: "" });
    root.appendChild(tray);
    var rt = resultsTable(root, "kn-results", function () { shown += PAGE * 5; render(); });
    var thead = rt.thead, tbody = rt.tbody, more = rt.more;
    // the chart comes after the results, folded by default
    var chartBox = el("div", { class: "kn-chart-box", id: "kn-chart-box" });
    var chartBtn = el("button", { type: "button", class: "kn-facet-btn", id: "kn-chart-toggle", "aria-expanded": "false" });
    chartBox.appendChild(chartBtn);
    var chart = el("div", { class: "kn-chart", id: "kn-chart" });
    chartBox.appendChild(chart);
    root.appendChild(chartBox);
    var cols = [["name", "Model"], ["provider", "Provider"], ["in", "Input $/1M", 1], ["out", "Output $/1M", 1],
                ["cache", "Cache read $/1M", 1], ["ctx", "Context", 1], ["maxout", "Max output", 1],
                ["", "Capabilities"], ["date", "Released"]];
    var valueOf = colValue(ix);
    var rows = [];
    var anyNote = "";
    var chartTimer = null;

    function setChart() {
      chartBtn.textContent = (st.chart ? "▾ Hide" : "▸ Show") + " the chart: input price vs context window";
      chartBtn.setAttribute("aria-expanded", st.chart ? "true" : "false");
      chart.hidden = !st.chart;
    }
    chartBtn.addEventListener("click", function () { st.chart = !st.chart; setChart(); writeStateSoon(st); drawChart(); });
    setChart();
    function drawChart() {
      if (chartTimer) clearTimeout(chartTimer);
      if (!st.chart || head) { chart.textContent = ""; return; }
      chartTimer = setTimeout(function () { chartTimer = null; drawScatter(chart, ix, rows); }, 150);
    }

    function onSort(col) {
      if (head) return;
      if (st.sort === col) st.dir = st.dir === "asc" ? "desc" : "asc";
      else { st.sort = col; st.dir = col === "ctx" || col === "date" || col === "maxout" ? "desc" : "asc"; }
      update();
    }

    function toggleSel(key, on) {
      st.sel = st.sel.filter(function (k) { return k !== key; });
      if (on) st.sel.push(key);
      renderTray();
      writeStateSoon(st);
    }
    function renderTray() {
      tray.textContent = "";
      if (!st.sel.length) { tray.setAttribute("hidden", ""); return; }
      tray.removeAttribute("hidden");
      tray.appendChild(el("span", { class: "kn-tray-n" }, st.sel.length + " selected: "));
      st.sel.forEach(function (k) { tray.appendChild(el("code", { class: "kn-tray-item" }, k)); });
      tray.appendChild(el("a", { class: "md-button md-button--primary", id: "kn-compare-link",
                                 href: pageHref(ix, "compare", "?m=" + st.sel.map(encodeURIComponent).join(",")) },
                         "Compare side by side"));
      var clr = el("button", { type: "button", class: "kn-facet-btn", id: "kn-tray-clear" }, "Clear");
      clr.addEventListener("click", function () { st.sel = []; renderTray(); render(); writeStateSoon(st); });
      tray.appendChild(clr);
    }

    function render() {
      var frag = document.createDocumentFragment();
      var m = ix.m;
      var lim = Math.min(shown, rows.length);
      for (var j = 0; j < lim; j++) {
        var r = rows[j];
        var tr = el("tr", { "data-key": ix.keys[r] });
        var mc = modelCell(ix, r);
        var cb = el("input", { type: "checkbox", class: "kn-sel", title: "select to compare", "aria-label": "select " + ix.keys[r] });
        cb.checked = st.sel.indexOf(ix.keys[r]) >= 0;
        cb.addEventListener("change", (function (key, box) { return function () { toggleSel(key, box.checked); }; })(ix.keys[r], cb));
        mc.insertBefore(cb, mc.firstChild);
        tr.appendChild(mc);
        tr.appendChild(providerCell(ix, r));
        modelNumbers(ix, r, tr);
        tr.appendChild(el("td", { class: "kn-dim kn-nowrap" }, m.d[r] || ""));
        frag.appendChild(tr);
      }
      tbody.textContent = "";
      tbody.appendChild(frag);
      thead.textContent = "";
      thead.appendChild(headerRow(cols, st, onSort));
      more.style.display = rows.length > lim && !head ? "" : "none";
      if (head) {
        status.textContent = "The first " + lim + " of " + ix.count.toLocaleString("en-US") +
          " models; loading the full index to search and filter…";
        return;
      }
      status.textContent = anyNote + rows.length.toLocaleString("en-US") + " of " + ix.n.toLocaleString("en-US") +
        " models" + (rows.length > lim ? " (showing " + lim + ")" : "") +
        (st.sort === "in" || st.sort === "out" || st.sort === "cache" ? "; paid offers first, $0 offers after" : "");
    }

    function update() {
      var t0 = performance.now();
      if (head) { rows = filterRows(ix, st); render(); return; }
      rows = filterRows(ix, st);
      anyNote = "";
      var words = tokens(st.s);
      if (!rows.length && words.length > 1 && wordGroups(st.s).length === 1) {
        // no model has every word: show the models matching any of them (OR), and say so
        rows = filterRows(ix, Object.assign({}, st, { s: words.join(",") }));
        if (rows.length) anyNote = "No model matches all of these words; showing models that match any of them " +
          "(separate alternatives with commas: gpt-4o, claude). ";
      }
      sortRows(ix, rows, st.sort, st.dir, valueOf);
      render();
      var t1 = performance.now();
      K.lastRenderMs = t1 - t0;
      K.lastCount = rows.length;
      writeStateSoon(st);
      drawChart();
    }
    K.explorer = { update: update, state: st, rows: function () { return rows; }, head: head };
    renderTray();
    update();
    root.setAttribute(head ? "data-head" : "data-ready", "1");
    if (!head) root.removeAttribute("data-head");
  }

  // ------------------------------------------------------------------ SVG scatter chart
  function drawScatter(box, ix, rows) {
    var W = 860, H = 380, L = 64, R = 16, T = 14, B = 46;
    var m = ix.m, pts = [], MAXP = 2500;
    for (var j = 0; j < rows.length && pts.length < MAXP; j++) {
      var r = rows[j];
      if (m.cx[r] > 0 && m.pi[r] > 0) pts.push(r);
    }
    box.textContent = "";
    if (!pts.length) { box.appendChild(el("p", { class: "kn-dim" }, "No filtered model has both a known context window and a paid input price.")); return; }
    var xs = pts.map(function (r) { return Math.log10(m.cx[r]); }), ys = pts.map(function (r) { return Math.log10(m.pi[r]); });
    var x0 = Math.floor(Math.min.apply(null, xs)), x1 = Math.ceil(Math.max.apply(null, xs));
    var y0 = Math.floor(Math.min.apply(null, ys)), y1 = Math.ceil(Math.max.apply(null, ys));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) y1 = y0 + 1;
    function X(v) { return L + (v - x0) / (x1 - x0) * (W - L - R); }
    function Y(v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); }
    var svg = sv("svg", { viewBox: "0 0 " + W + " " + H, class: "kn-svg", role: "img",
                          "aria-label": "Input price versus context window" });
    var g = sv("g", { class: "kn-axis" });
    for (var xv = x0; xv <= x1; xv++) {
      g.appendChild(sv("line", { x1: X(xv), x2: X(xv), y1: T, y2: H - B, class: "kn-grid" }));
      g.appendChild(sv("text", { x: X(xv), y: H - B + 16, "text-anchor": "middle" }, fmtTokens(Math.pow(10, xv))));
    }
    for (var yv = y0; yv <= y1; yv++) {
      g.appendChild(sv("line", { x1: L, x2: W - R, y1: Y(yv), y2: Y(yv), class: "kn-grid" }));
      g.appendChild(sv("text", { x: L - 6, y: Y(yv) + 4, "text-anchor": "end" }, fmtPrice(Math.pow(10, yv))));
    }
    g.appendChild(sv("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", class: "kn-axis-title" },
                     "context window (tokens, log scale)"));
    g.appendChild(sv("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", class: "kn-axis-title",
                               transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" }, "input $ / 1M tokens (log)"));
    svg.appendChild(g);
    var dots = sv("g", { class: "kn-dots" });
    for (j = 0; j < pts.length; j++) {
      r = pts[j];
      var a = sv("a", { href: pageHref(ix, "model", "?m=" + encodeURIComponent(ix.keys[r])) });
      var c = sv("circle", { cx: X(xs[j]).toFixed(1), cy: Y(ys[j]).toFixed(1), r: 3.2,
                             class: (m.ct[r] & ix.voc.capBit.tools) ? "kn-dot kn-dot-tools" : "kn-dot" });
      c.appendChild(sv("title", {}, (m.n[r] || m.i[r]) + " — " + ix.providers[m.p[r]][1] + ": " +
                       fmtPrice(m.pi[r]) + " in / " + fmtPrice(m.po[r]) + " out, " + fmtTokens(m.cx[r]) + " context"));
      a.appendChild(c);
      dots.appendChild(a);
    }
    svg.appendChild(dots);
    box.appendChild(svg);
    var note = pts.length + " models plotted" + (rows.length > pts.length ? " (of " + rows.length +
      " filtered; models without a paid input price or context are left out" + (pts.length >= MAXP ? ", first " + MAXP + " in table order" : "") + ")" : "") +
      ". Filled dots: tool calling known supported. Click a dot for the model.";
    box.appendChild(el("p", { class: "kn-dim kn-chart-note" }, note));
  }
  K.drawScatter = drawScatter;

  // ------------------------------------------------------------------ calculator
  function drawBars(box, ix, allRows, costs) {
    box.textContent = "";
    var rows = allRows.filter(function (r) { return costs[r] > 0; });
    var n = Math.min(12, rows.length);
    if (!n) return;
    box.appendChild(el("p", { class: "kn-chart-title" }, "Cheapest paid models for this workload, per month" +
      (rows.length < allRows.length ? " (" + (allRows.length - rows.length) + " free models not shown)" : "")));
    var W = 860, rowH = 22, L = 300, R = 90, H = n * rowH + 8;
    var max = costs[rows[n - 1]] || 1;
    var svg = sv("svg", { viewBox: "0 0 " + W + " " + H, class: "kn-svg kn-bars", role: "img",
                          "aria-label": "Monthly cost of the cheapest models" });
    for (var j = 0; j < n; j++) {
      var r = rows[j], y = 4 + j * rowH, w = Math.max(1, (costs[r] / max) * (W - L - R));
      svg.appendChild(sv("text", { x: L - 8, y: y + 15, "text-anchor": "end" },
                         (ix.m.n[r] || ix.m.i[r]) + " · " + ix.providers[ix.m.p[r]][1]));
      svg.appendChild(sv("rect", { x: L, y: y + 3, width: w.toFixed(1), height: rowH - 7, class: "kn-bar" }));
      svg.appendChild(sv("text", { x: L + w + 6, y: y + 15 }, fmtUSD(costs[r])));
    }
    box.appendChild(svg);
  }

  function initCalculator(root) {
    root.textContent = "Loading the model index…";
    loadIndex().then(function (ix) {
      root.textContent = "";
      // defaults: chat models, paid offers (free tiers would all cost $0 and come first)
      var st = readState({ "in": "2000", out: "500", cache: "0", req: "10000", kind: "chat", paid: true });
      var shown = PAGE;
      var wl = el("div", { class: "kn-workload" });
      var inputs = {};
      [["in", "Input tokens / request"], ["cache", "…of which cached"], ["out", "Output tokens / request"],
       ["req", "Requests / month"]].forEach(function (f) {
        var lab = el("label", { class: "kn-field" }, f[1] + " ");
        var inp = el("input", { type: "text", id: "kn-w-" + f[0], inputmode: "numeric", value: st[f[0]] });
        inp.addEventListener("input", function () { st[f[0]] = inp.value.trim(); shown = PAGE; update(); });
        inputs[f[0]] = inp;
        lab.appendChild(inp);
        wl.appendChild(lab);
      });
      root.appendChild(wl);
      var werr = el("p", { class: "kn-error", id: "kn-w-error" });
      root.appendChild(werr);
      buildFacets(root, ix, st, function () { shown = PAGE; update(); });
      var status = el("p", { class: "kn-status", id: "kn-status", "aria-live": "polite" });
      root.appendChild(status);
      var bars = el("div", { class: "kn-chart", id: "kn-bars" });
      root.appendChild(bars);
      var rt = resultsTable(root, "kn-costs", function () { shown += PAGE * 5; update(); });
      var table = rt.table, thead = rt.thead, tbody = rt.tbody, more = rt.more;
      var cols = [["", "#"], ["name", "Model"], ["provider", "Provider"], ["", "Per request", 1],
                  ["", "Per month", 1], ["in", "Input $/1M", 1], ["out", "Output $/1M", 1],
                  ["cache", "Cache read $/1M", 1], ["ctx", "Context", 1]];

      function workload() {
        var w = { input_tokens: parseCount(st["in"]), output_tokens: parseCount(st.out),
                  cached_tokens: parseCount(st.cache || "0"), requests: parseCount(st.req) };
        var bad = Object.keys(w).filter(function (k) { return isNaN(w[k]); });
        if (bad.length) return { error: "Not a token count: use e.g. 1500, 200k, 1.5M." };
        if (w.cached_tokens > w.input_tokens) return { error: "Cached tokens cannot exceed input tokens." };
        return w;
      }

      function onSort(col) {
        if (st.sort === col) st.dir = st.dir === "asc" ? "desc" : "asc";
        else { st.sort = col; st.dir = col === "ctx" ? "desc" : "asc"; }
        update();
      }

      function update() {
        var t0 = performance.now();
        var w = workload();
        werr.textContent = w.error || "";
        var rows = [], costs = {}, per = {};
        var unknown = 0, hiddenFree = 0;
        if (!w.error) {
          var cand = filterRows(ix, st);
          if (st.paid) hiddenFree = filterRows(ix, Object.assign({}, st, { paid: false })).length - cand.length;
          for (var j = 0; j < cand.length; j++) {
            var r = cand[j];
            var c = usesSuspect(ix, r, w) ? null : costPerRequest(pricesOf(ix, r), w, ix.m.tr ? ix.m.tr[r] : null);
            if (c === null) { unknown++; continue; }
            per[r] = c;
            costs[r] = c * w.requests;
            rows.push(r);
          }
          var keys = ix.keys;
          // (total, per request, key) as knollm.query.cost.cost_rows: with 0 requests every total is $0
          rows.sort(function (a, b) {
            return costs[a] - costs[b] || per[a] - per[b] || (keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0);
          });
          if (st.sort) sortRows(ix, rows, st.sort, st.dir, colValue(ix));
        }
        var frag = document.createDocumentFragment(), m = ix.m;
        var lim = Math.min(shown, rows.length);
        for (j = 0; j < lim; j++) {
          r = rows[j];
          var tr = el("tr", { "data-key": ix.keys[r] });
          tr.appendChild(el("td", { class: "kn-dim" }, String(j + 1)));
          tr.appendChild(modelCell(ix, r));
          tr.appendChild(providerCell(ix, r));
          var tdp = numCell(fmtUSD(per[r]), per[r]);
          tdp.className = "kn-num kn-per";
          tr.appendChild(tdp);
          var tdm = numCell(fmtUSD(costs[r]), costs[r]);
          tdm.className = "kn-num kn-total";
          tr.appendChild(tdm);
          tr.appendChild(numCell(fmtPrice(m.pi[r]), m.pi[r]));
          tr.appendChild(numCell(fmtPrice(m.po[r]), m.po[r]));
          tr.appendChild(numCell(fmtPrice(m.pc[r]), m.pc[r]));
          tr.appendChild(numCell(fmtTokens(m.cx[r]), m.cx[r]));
          frag.appendChild(tr);
        }
        tbody.textContent = "";
        tbody.appendChild(frag);
        thead.textContent = "";
        thead.appendChild(headerRow(cols, st, onSort));
        more.style.display = rows.length > lim ? "" : "none";
        status.textContent = w.error ? "" : rows.length.toLocaleString("en-US") + " models priced for this workload" +
          (unknown ? "; " + unknown.toLocaleString("en-US") + " more match but have an unknown price" : "") +
          (hiddenFree > 0 ? "; " + hiddenFree.toLocaleString("en-US") + " $0 / unpriced offers hidden (untick Paid only)" : "") +
          (st.kind ? "; kind: " + st.kind + " (change it under Kind)" : "") +
          ". Cheapest first; cached tokens use the cache-read price when known, else the input price.";
        K.lastRenderMs = performance.now() - t0;
        writeStateSoon(st);
        if (!st.sort) drawBars(bars, ix, rows, costs); else bars.textContent = "";
      }
      K.calculator = { update: update, state: st };
      update();
      root.setAttribute("data-ready", "1");
    }).catch(function (e) { root.textContent = "Could not load the model index: " + e.message; });
  }

  // ------------------------------------------------------------------ model detail
  function initModel(root) {
    var key = new URLSearchParams(location.search).get("m");
    if (!key) { root.textContent = "No model given: open a model from the explorer or a provider page."; return; }
    root.textContent = "Loading " + key + "…";
    var b = bucketOf(key, 128);
    Promise.all([
      fetch(ROOT + "data/models/" + b + ".json").then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }),
      loadIndex().catch(function () { return null; })
    ]).then(function (res) {
      var models = res[0], ix = res[1], mo = null;
      for (var i = 0; i < models.length; i++) if (models[i].key === key) { mo = models[i]; break; }
      root.textContent = "";
      if (!mo) { root.appendChild(el("p", null, "Unknown model: " + key)); return; }
      renderModel(root, mo, ix);
      root.setAttribute("data-ready", "1");
    }).catch(function (e) { root.textContent = "Could not load the model: " + e.message; });
  }

  /** "Owned by": an API placeholder ("system", "organization_owner", ...) is not an owner. */
  function ownerRow(mo, ix, src) {
    var ph = (ix && ix.vocab && ix.vocab.placeholder_owners) || ["system", "organization_owner", "unknown", "user", "custom"];
    var o = mo.owned_by;
    if (!o || ph.indexOf(String(o).toLowerCase()) >= 0) return ["Owned by", "unknown (not given by the provider)", null];
    return ["Owned by", o, src.owned_by];
  }

  function renderModel(root, mo, ix) {
    var src = mo.sources || {};
    var voc = ix ? ix.voc : vocabOf(null);  // no index: keys stand in for labels
    var pname = mo.provider;
    if (ix && ix.pIndex[mo.provider] !== undefined) pname = ix.providers[ix.pIndex[mo.provider]][1];
    document.title = (mo.name || mo.id) + " (" + pname + ") - Knollm";
    var h = document.querySelector("article h1") || el("h1");
    h.textContent = mo.name || mo.id;
    if (!h.parentNode) root.appendChild(h);
    var sub = el("p", { class: "kn-lead" });
    sub.appendChild(el("code", null, mo.key));
    sub.appendChild(document.createTextNode(" · served by "));
    sub.appendChild(el("a", { href: pageHref(ix, "providers/" + encodeURIComponent(mo.provider)), id: "kn-provider-link" }, pname));
    sub.appendChild(document.createTextNode(" · "));
    var bucket = bucketOf(mo.key, (ix && ix.buckets) || 128);
    sub.appendChild(el("a", { href: ROOT + "data/models/" + bucket + ".json", id: "kn-raw-record",
                              title: "this model's full record, every field with its source (in a file of ~1% of the models)" },
                       "raw record (JSON)"));
    sub.appendChild(document.createTextNode(" · "));
    sub.appendChild(el("a", { href: pageHref(ix, "compare", "?m=" + encodeURIComponent(mo.key)) }, "compare with…"));
    root.appendChild(sub);
    var methodology = pageHref(ix, "methodology") + "#sources-of-values";
    if (mo.description) root.appendChild(el("p", { class: "kn-desc" }, mo.description));

    function section(title, rows) {
      root.appendChild(el("h2", null, title));
      var t = el("table", { class: "kn-facts" }), tb = el("tbody");
      rows.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("th", null, r[0]));
        var td = el("td");
        if (r[1] instanceof Node) td.appendChild(r[1]); else td.textContent = r[1];
        if (r[2]) td.appendChild(el("a", { class: "kn-src-label", href: methodology,
                                           title: "source of this value: how sources are ranked" }, voc.srcLabel[r[2]] || r[2]));
        tr.appendChild(td);
        tb.appendChild(tr);
      });
      t.appendChild(tb);
      root.appendChild(t);
    }
    var pr = mo.prices || {};
    var sus = mo.suspect || {}, checks = (ix && ix.vocab && ix.vocab.suspect) || {};
    function susText(path) {  // a value kept but failed a plausibility check
      return sus[path] ? " ⚠ suspect: " + (checks[sus[path]] || sus[path]) : "";
    }
    var core = { input: 1, output: 1, cache_read: 1, cache_write: 1 };
    function priceLabel(f) {  // "Per input image ($/image)"; per-1M-token fields keep the section's unit
      return (voc.priceLabel[f] || f) + (perTokenUnit(voc, f) ? "" : " ($/" + (voc.priceUnit[f] || "unit") + ")");
    }
    section("Prices (USD per 1M tokens)", (voc.prices.length ? voc.prices : Object.keys(pr)).filter(function (f) {
      return core[f] || (pr[f] !== null && pr[f] !== undefined);  // other dimensions only where known
    }).map(function (f) {
      var v = pr[f];
      return [priceLabel(f), v === null || v === undefined ? "unknown" : fmtPriceField(voc, f, v) + susText("prices." + f),
              v === null || v === undefined ? null : src["prices." + f]];
    }).concat((mo.price_tiers || []).map(function (t) {
      // each tier field formatted by its own unit, as the base rows are (a per-second price is not "$0")
      return ["Above " + t.start.toLocaleString("en-US") + " input tokens", Object.keys(t).filter(function (k) {
        return k !== "start";
      }).map(function (k) { return priceLabel(k) + " " + fmtPriceField(voc, k, t[k]); }).join(", "), src.price_tiers];
    })).concat([["Free", mo.free ? "yes" : "no", null], ["Variable pricing", mo.variable_pricing ? "yes" : "no", null]]));
    var alts = mo.alternatives || {};
    if (Object.keys(alts).length) {
      section("Other sources' values", Object.keys(alts).sort().map(function (path) {
        return [path, Object.keys(alts[path]).map(function (s) {
          var v = alts[path][s];
          return (voc.srcLabel[s] || s) + ": " + (v === null ? "unknown" : String(v));
        }).join("; "), null];
      }));
    }
    section("Limits", [
      ["Context window", mo.context_window ? mo.context_window.toLocaleString("en-US") + " tokens" + susText("context_window") : "unknown", src.context_window],
      ["Max output", mo.max_output ? mo.max_output.toLocaleString("en-US") + " tokens" + susText("max_output") : "unknown", src.max_output],
      ["Input modalities", (mo.input_modalities || []).join(", ") || "unknown", src.input_modalities],
      ["Output modalities", (mo.output_modalities || []).join(", ") || "unknown", src.output_modalities]
    ]);
    var caps = mo.capabilities || {};
    section("Capabilities", Object.keys(caps).map(function (c) {
      var v = caps[c];
      return [voc.capLabel[c] || c, v === true ? "yes" : v === false ? "no" : "unknown", v === null ? null : src["capabilities." + c]];
    }));
    section("About", [
      ["Kind", mo.kind || "?", null],
      ["Canonical model", mo.canonical_id, null],
      ["Family", mo.family || "?", null],
      ownerRow(mo, ix, src),
      ["Open weights", mo.open_weights === true ? "yes" : mo.open_weights === false ? "no" : "unknown", src.open_weights],
      ["Deprecated", mo.deprecated ? "yes" : mo.deprecated === false ? "no" : "not known to be", src.deprecated],
      ["Release date", mo.release_date || "?", src.release_date],
      ["Created (provider)", mo.created || "?", src.created],
      ["Quantization", mo.quantization || "?", src.quantization],
      ["Listed by", (mo.origin || []).join(", "), null],
      ["Registry matches", Object.keys(mo.joins || {}).map(function (k) { return k + ": " + mo.joins[k]; }).join(", ") || "none", null],
      ["Data flags", (mo.flags || []).join(", ") || "none", null]
    ]);
    var calc = el("a", { class: "md-button", href: pageHref(ix, "calculator", "?s=" + encodeURIComponent(mo.key)) }, "Cost calculator");
    root.appendChild(el("p")).appendChild(calc);
    if (ix) {
      var r0 = -1;
      for (var r = 0; r < ix.n; r++) if (ix.keys[r] === mo.key) { r0 = r; break; }
      var cn = r0 >= 0 ? ix.m.cn[r0] : -1;
      if (cn >= 0) {
        var others = [];
        for (r = 0; r < ix.n; r++) if (ix.m.cn[r] === cn) others.push(r);
        others.sort(function (a, b) {
          var pa = ix.m.pi[a], pb = ix.m.pi[b];
          var ua = pa === null || ix.m.po[a] === null, ub = pb === null || ix.m.po[b] === null;
          if (ua !== ub) return ua ? 1 : -1;
          var fa = isPaid(ix, a) ? 0 : 1, fb = isPaid(ix, b) ? 0 : 1;  // paid offers first, $0 after
          if (fa !== fb) return fa - fb;
          return ((pa || 0) + (ix.m.po[a] || 0)) - ((pb || 0) + (ix.m.po[b] || 0));
        });
        root.appendChild(el("h2", null, "Same model elsewhere (" + others.length + " offers)"));
        var p = el("p");
        p.appendChild(el("a", { href: pageHref(ix, "canonical/" + encodeURIComponent(ix.canon[cn][1])) },
                         "Compare all providers of " + ix.canon[cn][0]));
        root.appendChild(p);
        var t = el("table", { class: "kn-table" }), tb = el("tbody");
        var hr = el("tr");
        ["Provider", "Model", "Input $/1M", "Output $/1M", "Context"].forEach(function (x) { hr.appendChild(el("th", null, x)); });
        var th = el("thead"); th.appendChild(hr); t.appendChild(th);
        others.forEach(function (r) {
          var tr = el("tr");
          if (r === r0) tr.className = "kn-current";
          tr.appendChild(providerCell(ix, r));
          tr.appendChild(modelCell(ix, r));
          tr.appendChild(numCell(fmtPrice(ix.m.pi[r])));
          tr.appendChild(numCell(fmtPrice(ix.m.po[r])));
          tr.appendChild(numCell(fmtTokens(ix.m.cx[r])));
          tb.appendChild(tr);
        });
        t.appendChild(tb);
        root.appendChild(t);
      }
    }
  }

  // ------------------------------------------------------------------ sortable static tables
  function makeSortable(table) {
    var ths = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(ths, function (th, col) {
      th.classList.add("kn-sortable-th");
      th.setAttribute("title", "Sort");
      th.addEventListener("click", function () {
        var tbody = table.tBodies[0];
        var dir = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
        Array.prototype.forEach.call(ths, function (x) { x.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var sign = dir === "asc" ? 1 : -1;
        var rows = Array.prototype.slice.call(tbody.rows);
        var keyed = rows.map(function (tr) {
          var td = tr.cells[col];
          var raw = td ? (td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : td.textContent.trim()) : "";
          var num = raw !== "" && !isNaN(Number(raw)) ? Number(raw) : null;
          return { tr: tr, num: num, txt: raw.toLowerCase(), empty: raw === "" || raw === "?" };
        });
        keyed.sort(function (a, b) {
          if (a.empty !== b.empty) return a.empty ? 1 : -1;
          if (a.num !== null && b.num !== null) return (a.num - b.num) * sign;
          return (a.txt < b.txt ? -1 : a.txt > b.txt ? 1 : 0) * sign;
        });
        var frag = document.createDocumentFragment();
        keyed.forEach(function (k) { frag.appendChild(k.tr); });
        tbody.appendChild(frag);
      });
    });
  }

  // ------------------------------------------------------------------ resolving a typed model
  /** Row of a key, bare id or canonical id: the same rule as knollm.query.index.Index.resolve
   *  (current first, then the maker's own offer, then the cheapest paid, $0 after, unknown last).
   *  Returns {row, note} or {error, suggestions}. */
  function resolveRef(ix, ref) {
    var low = String(ref).toLowerCase(), m = ix.m, hits = [], r;
    for (r = 0; r < ix.n; r++) if (ix.keys[r] === ref) return { row: r, note: null };
    for (r = 0; r < ix.n; r++) if (ix.keys[r].toLowerCase() === low || m.i[r].toLowerCase() === low) hits.push(r);
    if (!hits.length) {
      var c = -1;
      for (var j = 0; j < ix.canon.length; j++) if (ix.canon[j][0].toLowerCase() === low) { c = j; break; }
      if (c >= 0) for (r = 0; r < ix.n; r++) if (m.cn[r] === c) hits.push(r);
    }
    if (!hits.length) return { error: "unknown model: " + ref, suggestions: suggestRows(ix, ref) };
    if (hits.length === 1) return { row: hits[0], note: null };
    function rank(r) {
      var unknown = m.pi[r] === null || m.po[r] === null;
      return [m.f[r] & ix.flags.deprecated ? 1 : 0, m.f[r] & ix.flags.first_party ? 0 : 1, unknown ? 1 : 0,
              isPaid(ix, r) ? 0 : 1, (m.pi[r] || 0) + (m.po[r] || 0)];
    }
    hits.sort(function (a, b) {
      var ra = rank(a), rb = rank(b);
      for (var i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
      return ix.keys[a] < ix.keys[b] ? -1 : ix.keys[a] > ix.keys[b] ? 1 : 0;
    });
    var best = hits[0];
    var why = m.f[best] & ix.flags.first_party ? "the first-party offer" : isPaid(ix, best) ? "the cheapest paid offer" : "the cheapest known offer";
    return { row: best, note: ref + " → " + ix.keys[best] + " (" + why + " of " + hits.length + ")" };
  }
  K.resolveRef = resolveRef;

  /** Up to n rows whose key, id, name or canonical id contains every word of q, exact matches first. */
  function suggestRows(ix, q, n) {
    var st = Object.assign({}, FACET_DEFAULTS, { s: q, p: [], cap: [], mod: [] });
    var rows = filterRows(ix, st), low = String(q).toLowerCase().trim();
    var m = ix.m;
    function score(r) {
      var id = m.i[r].toLowerCase(), nm = (m.n[r] || "").toLowerCase();
      var exact = id === low || nm === low || ix.keys[r].toLowerCase() === low ? 0 : id.indexOf(low) === 0 || nm.indexOf(low) === 0 ? 1 : 2;
      return exact * 2 + (m.f[r] & ix.flags.first_party ? 0 : 1);
    }
    var sc = {};
    rows.forEach(function (r) { sc[r] = score(r); });
    rows.sort(function (a, b) { return sc[a] - sc[b] || (ix.lname[a] < ix.lname[b] ? -1 : ix.lname[a] > ix.lname[b] ? 1 : 0); });
    return rows.slice(0, n || 8);
  }
  K.suggestRows = suggestRows;

  // ------------------------------------------------------------------ compare page
  function getPath(o, path) {
    var v = o;
    path.split(".").forEach(function (p) { v = v && typeof v === "object" ? v[p] : undefined; });
    return v === undefined ? null : v;
  }
  function fmtField(ix, path, v) {
    if (v === null || v === undefined) return "?";
    if (path.indexOf("prices.") === 0) return fmtPriceField(ix.voc, path.slice(7), v);  // by the field's unit
    if (path === "context_window" || path === "max_output") return Number(v).toLocaleString("en-US");
    if (path === "provider" && ix.pIndex[v] !== undefined) return ix.providers[ix.pIndex[v]][1];
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (Array.isArray(v)) return v.join(", ") || "–";
    return String(v);
  }
  function fieldLabel(ix, path) {
    var parts = path.split(".");
    if (parts[0] === "prices") return (ix.voc.priceLabel[parts[1]] || parts[1]) +
      (parts[1] === "request" ? " ($)" : perTokenUnit(ix.voc, parts[1]) ? " $/1M" : " $/" + (ix.voc.priceUnit[parts[1]] || "unit"));
    if (parts[0] === "capabilities") return ix.voc.capLabel[parts[1]] || parts[1];
    return path.replace(/_/g, " ");
  }
  function fetchModels(keys, buckets) {
    var byB = {};
    keys.forEach(function (k) { byB[bucketOf(k, buckets)] = true; });
    return Promise.all(Object.keys(byB).map(function (b) {
      return fetch(ROOT + "data/models/" + b + ".json").then(function (r) {
        if (!r.ok) throw new Error("data/models/" + b + ".json: HTTP " + r.status);
        return r.json();
      });
    })).then(function (lists) {
      var out = {};
      lists.forEach(function (l) { l.forEach(function (mo) { out[mo.key] = mo; }); });
      return out;
    });
  }

  function initCompare(root) {
    root.textContent = "Loading the model index…";
    loadIndex().then(function (ix) {
      root.textContent = "";
      var st = readState({ m: [], "in": "2000", out: "500", req: "10000" });
      var voc = ix.voc, fields = (ix.vocab && ix.vocab.compare) || [];
      var susChecks = (ix.vocab && ix.vocab.suspect) || {};
      var methodology = pageHref(ix, "methodology") + "#sources-of-values";
      // the picker
      var pick = el("div", { class: "kn-picker" });
      var q = el("input", { type: "search", id: "kn-cmp-q", autocomplete: "off",
                            placeholder: "Add a model: id, name or canonical id (e.g. gpt-4o)", "aria-label": "Add a model" });
      var sug = el("ul", { class: "kn-suggest", id: "kn-cmp-suggest" });
      pick.appendChild(q);
      pick.appendChild(sug);
      root.appendChild(pick);
      var wl = el("div", { class: "kn-workload" });
      [["in", "Input tokens / request"], ["out", "Output tokens / request"], ["req", "Requests / month"]].forEach(function (f) {
        var lab = el("label", { class: "kn-field" }, f[1] + " ");
        var inp = el("input", { type: "text", id: "kn-cmp-" + f[0], inputmode: "numeric", value: st[f[0]] });
        inp.addEventListener("input", function () { st[f[0]] = inp.value.trim(); draw(); });
        lab.appendChild(inp);
        wl.appendChild(lab);
      });
      root.appendChild(wl);
      var notes = el("div", { class: "kn-status", id: "kn-cmp-notes", "aria-live": "polite" });
      root.appendChild(notes);
      var wrap = el("div", { class: "kn-table-wrap" });
      var table = el("table", { class: "kn-table kn-compare", id: "kn-cmp" });
      wrap.appendChild(table);
      root.appendChild(wrap);
      var models = {};

      function add(ref) {
        if (!ref) return;
        if (st.m.indexOf(ref) < 0) st.m.push(ref);
        q.value = "";
        sug.textContent = "";
        load();
      }
      q.addEventListener("input", function () {
        sug.textContent = "";
        if (q.value.trim().length < 2) return;
        suggestRows(ix, q.value, 8).forEach(function (r) {
          var li = el("li");
          var b = el("button", { type: "button", "data-key": ix.keys[r] }, (ix.m.n[r] || ix.m.i[r]) + " · " + ix.providers[ix.m.p[r]][1]);
          b.appendChild(el("span", { class: "kn-dim" }, " " + ix.keys[r]));
          b.addEventListener("click", function () { add(ix.keys[r]); });
          li.appendChild(b);
          sug.appendChild(li);
        });
      });
      q.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); add(q.value.trim()); } });

      function resolved() {
        return st.m.map(function (ref) { var x = resolveRef(ix, ref); x.ref = ref; return x; });
      }
      function load() {
        var res = resolved(), keys = res.filter(function (x) { return x.row !== undefined; }).map(function (x) { return ix.keys[x.row]; });
        fetchModels(keys.filter(function (k) { return !models[k]; }), ix.buckets || 128).then(function (got) {
          Object.assign(models, got);
          draw();
          root.setAttribute("data-ready", "1");
        }).catch(function (e) { notes.textContent = "Could not load the models: " + e.message; });
      }

      function draw() {
        writeStateSoon(st);
        var res = resolved();
        notes.textContent = "";
        res.forEach(function (x) {
          if (x.note) notes.appendChild(el("p", { class: "kn-note" }, x.note));
          if (x.error) {
            var p = el("p", { class: "kn-error" }, x.error + (x.suggestions.length ? "; did you mean: " : ""));
            x.suggestions.slice(0, 5).forEach(function (r) {
              var b = el("button", { type: "button", class: "kn-link-btn" }, ix.keys[r]);
              b.addEventListener("click", function () { st.m = st.m.map(function (y) { return y === x.ref ? ix.keys[r] : y; }); load(); });
              p.appendChild(b);
            });
            notes.appendChild(p);
          }
        });
        var cols = res.filter(function (x) { return x.row !== undefined && models[ix.keys[x.row]]; });
        table.textContent = "";
        if (!cols.length) {
          notes.appendChild(el("p", null, "Add models above, or pick them in the explorer (checkboxes, then Compare)."));
          return;
        }
        var thead = el("thead"), hr = el("tr");
        hr.appendChild(el("th", null, "Field"));
        cols.forEach(function (x) {
          var key = ix.keys[x.row];
          var th = el("th", { "data-key": key });
          th.appendChild(el("a", { href: pageHref(ix, "model", "?m=" + encodeURIComponent(key)) }, ix.m.n[x.row] || ix.m.i[x.row]));
          th.appendChild(el("div", { class: "kn-dim kn-mid" }, key));
          var rm = el("button", { type: "button", class: "kn-link-btn", title: "remove" }, "remove");
          rm.addEventListener("click", function () { st.m = st.m.filter(function (y) { return y !== x.ref; }); draw(); });
          th.appendChild(rm);
          hr.appendChild(th);
        });
        thead.appendChild(hr);
        table.appendChild(thead);
        var tb = el("tbody");
        fields.forEach(function (f) {
          var tr = el("tr", { "data-field": f });
          tr.appendChild(el("th", null, fieldLabel(ix, f)));
          cols.forEach(function (x) {
            var mo = models[ix.keys[x.row]], v = getPath(mo, f);
            var td = el("td", { "data-v": JSON.stringify(v) }, fmtField(ix, f, v));
            var chk = v === null ? null : (mo.suspect || {})[f];
            if (chk) {  // kept but failed a plausibility check: marked as on the model page
              td.setAttribute("data-suspect", chk);
              td.appendChild(el("span", { class: "kn-suspect", title: "a value that failed a plausibility check" },
                                " ⚠ suspect: " + (susChecks[chk] || chk)));
            }
            var s = v === null ? null : (mo.sources || {})[f];
            if (s) td.appendChild(el("a", { class: "kn-src-label", href: methodology, title: "source of this value" }, voc.srcLabel[s] || s));
            tr.appendChild(td);
          });
          tb.appendChild(tr);
        });
        var w = { input_tokens: parseCount(st["in"]), output_tokens: parseCount(st.out), cached_tokens: 0, requests: parseCount(st.req) };
        var ok = !isNaN(w.input_tokens) && !isNaN(w.output_tokens) && !isNaN(w.requests);
        [["per_request", "Cost per request"], ["total", "Cost per month"]].forEach(function (c) {
          var tr = el("tr", { "data-field": "cost." + c[0], class: "kn-cost-row" });
          tr.appendChild(el("th", null, c[1] + (ok ? " (" + w.input_tokens.toLocaleString("en-US") + " in, " +
                                                 w.output_tokens.toLocaleString("en-US") + " out" + (c[0] === "total" ? ", " + w.requests.toLocaleString("en-US") + " requests" : "") + ")" : "")));
          cols.forEach(function (x) {
            var mo = models[ix.keys[x.row]];
            // the calculator's cost function, with the model's price tiers; an estimate that uses a
            // suspect price is unknown (as knollm cost / knollm compare), never a figure
            var sp = ok ? suspectPrices(mo.suspect, w) : [];
            var e = ok && !sp.length ? estimate(mo.prices, w, mo.price_tiers) : { per_request: null, total: null, tier_start: null };
            var td = el("td", { "data-v": JSON.stringify(e[c[0]]), class: "kn-num" },
                        sp.length ? "unknown (suspect price)" : fmtUSD(e[c[0]]));
            if (sp.length) {
              td.setAttribute("data-suspect", sp.join(","));
              td.setAttribute("title", "uses a suspect price: " + sp.join(", "));
            } else if (e.tier_start !== null && e[c[0]] !== null) {
              td.setAttribute("data-tier", String(e.tier_start));
              td.appendChild(el("div", { class: "kn-dim" }, "tier >" + e.tier_start.toLocaleString("en-US") + " in"));
            }
            tr.appendChild(td);
          });
          tb.appendChild(tr);
        });
        table.appendChild(tb);
      }
      K.compare = { state: st, add: add };
      load();
    }).catch(function (e) { root.textContent = "Could not load the model index: " + e.message; });
  }

  // ------------------------------------------------------------------ large provider table (client side)
  function initProviderTable(box) {
    var pid = box.getAttribute("data-provider");
    loadIndex().then(function (ix) {
      var pi = ix.pIndex[pid];
      if (pi === undefined) return;
      var m = ix.m, all = [];
      for (var r = 0; r < ix.n; r++) if (m.p[r] === pi) all.push(r);
      // the order of knollm.site.render.default_order_key: current chat first, deprecated / unpriced last
      var chat = ix.kinds.indexOf("chat");
      function key(r) {
        var f = m.f[r];
        return [f & ix.flags.deprecated ? 1 : 0, m.pi[r] === null && m.po[r] === null && !(f & ix.flags.free) ? 1 : 0,
                m.k[r] === chat ? 0 : 1, f & ix.flags.registry_only ? 1 : 0];
      }
      var ks = {};
      all.forEach(function (r) { ks[r] = key(r); });
      all.sort(function (a, b) {
        for (var i = 0; i < 4; i++) if (ks[a][i] !== ks[b][i]) return ks[a][i] - ks[b][i];
        return ix.lname[a] < ix.lname[b] ? -1 : ix.lname[a] > ix.lname[b] ? 1 : (m.i[a] < m.i[b] ? -1 : m.i[a] > m.i[b] ? 1 : 0);
      });
      var SIZE = 100, page = 0, rows = all;
      box.textContent = "";
      var bar = el("div", { class: "kn-facet-row" });
      var q = el("input", { type: "search", class: "kn-ptable-q", placeholder: "Filter these " + all.length.toLocaleString("en-US") + " models",
                            "aria-label": "Filter models" });
      var prev = el("button", { type: "button", class: "kn-facet-btn kn-prev" }, "‹ Previous");
      var next = el("button", { type: "button", class: "kn-facet-btn kn-next" }, "Next ›");
      var info = el("span", { class: "kn-status kn-page-info" });
      [q, prev, info, next].forEach(function (x) { bar.appendChild(x); });
      box.appendChild(bar);
      var wrap = el("div", { class: "kn-table-wrap" });
      var table = el("table", { class: "kn-table kn-models" });
      var thead = el("thead"), tbody = el("tbody"), hr = el("tr");
      ["Model", "Input $/1M", "Output $/1M", "Cache read $/1M", "Context", "Max output", "Capabilities"].forEach(function (h, i) {
        hr.appendChild(el("th", { class: i && i < 6 ? "kn-num" : null }, h));
      });
      thead.appendChild(hr);
      table.appendChild(thead);
      table.appendChild(tbody);
      wrap.appendChild(table);
      box.appendChild(wrap);
      function draw() {
        var pages = Math.max(1, Math.ceil(rows.length / SIZE));
        page = Math.min(page, pages - 1);
        tbody.textContent = "";
        var frag = document.createDocumentFragment();
        rows.slice(page * SIZE, page * SIZE + SIZE).forEach(function (r) {
          var tr = el("tr", { "data-key": ix.keys[r] });
          tr.appendChild(modelCell(ix, r));
          modelNumbers(ix, r, tr);
          frag.appendChild(tr);
        });
        tbody.appendChild(frag);
        info.textContent = rows.length.toLocaleString("en-US") + " models · page " + (page + 1) + " of " + pages;
        prev.disabled = page === 0;
        next.disabled = page >= pages - 1;
      }
      q.addEventListener("input", function () {
        var groups = wordGroups(q.value);
        rows = !groups.length ? all : all.filter(function (r) {
          return groups.some(function (g) { return g.every(function (w) { return ix.hay[r].indexOf(w) >= 0; }); });
        });
        page = 0;
        draw();
      });
      prev.addEventListener("click", function () { page--; draw(); });
      next.addEventListener("click", function () { page++; draw(); });
      draw();
      box.setAttribute("data-ready", "1");
    }).catch(function () { /* the static first rows stay */ });
  }

  // ------------------------------------------------------------------ header search: models too
  function initHeaderSearch() {
    var input = document.querySelector("input.md-search__input");
    var result = document.querySelector(".md-search-result");
    if (!input || !result) return;
    var box = el("div", { id: "kn-search-models", class: "kn-search-models" });
    result.insertBefore(box, result.firstChild);
    var timer = null;
    input.addEventListener("input", function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(function () {
        var q = input.value.trim();
        if (q.length < 2) { box.textContent = ""; return; }
        loadIndex().then(function (ix) {
          if (input.value.trim() !== q) return;
          box.textContent = "";
          var rows = suggestRows(ix, q, 8);
          if (!rows.length) return;
          box.appendChild(el("p", { class: "kn-search-head" }, "Models"));
          var ul = el("ul");
          rows.forEach(function (r) {
            var li = el("li");
            var a = el("a", { href: pageHref(ix, "model", "?m=" + encodeURIComponent(ix.keys[r])) });
            a.appendChild(el("b", null, ix.m.n[r] || ix.m.i[r]));
            a.appendChild(el("span", { class: "kn-dim" }, " · " + ix.providers[ix.m.p[r]][1] + " · " + ix.keys[r]));
            li.appendChild(a);
            ul.appendChild(li);
          });
          box.appendChild(ul);
          var all = el("a", { class: "kn-search-all", href: pageHref(ix, "explorer", "?s=" + encodeURIComponent(q)) }, "All matching models in the explorer ›");
          box.appendChild(all);
        });
      }, 120);
    });
  }

  // ------------------------------------------------------------------ active tab for pages outside the nav
  function markTab() {
    if (document.querySelector(".md-tabs__item--active")) return;
    var rel = location.href.slice(ROOT.length).split(/[?#]/)[0];
    var section = /^(model|compare|canonical)(\/|\.html)/.test(rel) ? "explorer" : /^providers\//.test(rel) ? "providers" : null;
    if (!section) return;
    Array.prototype.forEach.call(document.querySelectorAll(".md-tabs__link"), function (a) {
      var href = a.href.slice(ROOT.length);
      if (href.indexOf(section + "/") === 0 || href.indexOf(section + ".html") === 0 || href.indexOf(section + "/index.html") === 0) {
        a.parentNode.classList.add("md-tabs__item--active");
        a.setAttribute("aria-current", "page");
      }
    });
  }

  // ------------------------------------------------------------------ boot
  function boot() {
    var x = document.getElementById("kn-explorer");
    if (x) initExplorer(x);
    var c = document.getElementById("kn-calculator");
    if (c) initCalculator(c);
    var d = document.getElementById("kn-model");
    if (d) initModel(d);
    var cm = document.getElementById("kn-compare");
    if (cm) initCompare(cm);
    Array.prototype.forEach.call(document.querySelectorAll(".kn-ptable[data-provider]"), initProviderTable);
    initHeaderSearch();
    markTab();
    Array.prototype.forEach.call(document.querySelectorAll("table.kn-sortable"), makeSortable);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
