// AttentionExplorer's selectors and pattern sliders (widgets/attention.py). Python twin: AttentionExplorer._view,
// _caption, pattern_allowed and memory_text. Args: the sources, widgets and models it reads and writes, and
// PATTERNS (pattern key -> label).
const tok = tokens.data.token, T = tok.length;
const ktok = key_tokens.data.token, S = ktok.length;  // self-attention: the same tokens, S = T
const cross = key_tokens.data.cross[0] === 1;
const store_d = store.data;
const L = Math.max(...store_d.layer) + 1, H = Math.max(...store_d.head) + 1;
const li = Math.min(Math.max(parseInt(layer.value) || 0, 0), L - 1);
const mean = head.value === "mean";
const hi = mean ? 0 : Math.min(Math.max(parseInt(head.value) || 0, 0), H - 1);
const q = Math.min(Math.max(query.value, 0), T - 1);
const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
  .replace(/'/g, "&#x27;");  // as Python's html.escape

// The chosen layer's map (T x S, row = query), one head or the mean of the heads.
const M = new Float64Array(T * S);
let heads = 0;
for (let r = 0; r < store_d.layer.length; r++) {
  if (store_d.layer[r] !== li || (!mean && store_d.head[r] !== hi)) continue;
  const w = store_d.weights[r];
  for (let c = 0; c < T * S; c++) M[c] += w[c];
  heads++;
}
for (let c = 0; c < T * S; c++) M[c] /= Math.max(heads, 1);
const row_w = Array.from(M.slice(q * S, (q + 1) * S));
let best = 0;
for (let j = 1; j < S; j++) if (row_w[j] > row_w[best]) best = j;
const who = mean ? `mean of ${H} heads` : `head ${hi + 1}`;
caption.text = `<b>layer ${li + 1}, ${who}</b>: query ${q + 1} &quot;${esc(tok[q])}&quot; attends most to ` +
  `key ${best + 1} &quot;${esc(ktok[best])}&quot; (${row_w[best].toFixed(2)}). ` +
  `Rows are queries, columns keys; click a row or move the query slider.`;
row_title.text = `the weights of query ${q + 1} "${tok[q]}" on each key`;
for (const box of boxes) { box.bottom = q - 0.5; box.top = q + 0.5; }
if (cross) {
  // Cross-attention: queries and keys are different sequences, so no pattern applies (see cross_text).
  let top = 0;
  for (let c = 0; c < T * S; c++) top = Math.max(top, M[c]);
  weights_view.data = {...weights_view.data, weight: Array.from(M)};
  row_view.data = {...row_view.data, weight: row_w, inside: row_w};
  row_y.end = 1.1 * Math.max(...row_w, 1e-6);
  weights_mapper.high = Math.max(top, 1e-6);
  return;
}
const pat = pattern.value;
// memlib's SlidingWindowAttention needs w >= 1; BigBird's one-block window is w = 0. Moving the value re-runs this.
const min_w = pat === "bigbird" ? 0 : 1;
window_s.start = min_w;
if (window_s.value < min_w) { window_s.value = min_w; return; }
const P = {window: window_s.value, n_global: global_s.value, n_random: random_s.value,
           block: parseInt(block.value), seed: seed_s.value, k: k_s.value, n: parseInt(n_select.value)};

// The pattern's mask, as memlib draws it (see pattern_allowed in widgets/attention.py).
const A = new Uint8Array(T * T);
let padded = T;
if (pat === "full" || pat === "linformer") A.fill(1);
else if (pat === "causal") {
  for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) A[i * T + j] = 1;
} else if (pat === "sliding_window") {
  for (let i = 0; i < T; i++) for (let j = 0; j < T; j++)
    A[i * T + j] = (Math.abs(i - j) <= P.window || i < P.n_global || j < P.n_global) ? 1 : 0;
} else {
  const b = P.block, nb = Math.ceil(T / b), r = P.window, g = Math.min(P.n_global, nb);
  padded = nb * b;
  const od = orders.data;
  let order = null;
  for (let k = 0; k < od.block.length; k++) if (od.block[k] === b && od.seed[k] === P.seed) order = od.order[k];
  const fixed = (qb, ob) => Math.abs(ob - qb) <= r || ob < g;
  const B = new Uint8Array(nb * nb);
  for (let qb = 0; qb < nb; qb++) {
    if (qb < g) { B.fill(1, qb * nb, (qb + 1) * nb); continue; }
    for (let ob = 0; ob < nb; ob++) if (fixed(qb, ob)) B[qb * nb + ob] = 1;
    let taken = 0;
    for (let t = 0; order !== null && t < nb - 1 && taken < P.n_random; t++) {
      const ob = order[qb * (nb - 1) + t];
      if (!fixed(qb, ob)) { B[qb * nb + ob] = 1; taken++; }
    }
  }
  for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) A[i * T + j] = B[Math.floor(i / b) * nb + Math.floor(j / b)];
}

// Renormalised inside the pattern: softmax over the allowed keys only. A fully blocked row gets zeros (memlib).
const shown = new Array(T * T), inside = new Array(T);
let outside = 0, rows = 0, top = 0, shown_top = 0;
for (let i = 0; i < T; i++) {
  let total = 0, kept = 0;
  for (let j = 0; j < T; j++) { total += M[i * T + j]; kept += A[i * T + j] * M[i * T + j]; }
  if (total > 0) { outside += 1 - kept / total; rows++; }
  for (let j = 0; j < T; j++) {
    const c = i * T + j;
    shown[c] = A[c] ? (kept > 0 ? M[c] / kept : 0) : NaN;
    top = Math.max(top, M[c]);
    if (A[c]) shown_top = Math.max(shown_top, shown[c]);
  }
}
weights_view.data = {...weights_view.data, weight: Array.from(M)};
mask_view.data = {...mask_view.data, allowed: Array.from(A), weight: shown};
const row_in = shown.slice(q * T, (q + 1) * T).map(v => isNaN(v) ? 0 : v);
row_view.data = {...row_view.data, weight: row_w, inside: row_in};
row_y.end = 1.1 * Math.max(...row_w, ...row_in, 1e-6);
weights_mapper.high = Math.max(top, 1e-6);
mask_mapper.high = Math.max(shown_top, 1e-6);

// Linformer: the chosen head's queries x projected keys (the mean of the heads, or the one traced head).
const lin = pat === "linformer";
const ld = lin_store.data;
if (lin && ld.weights.length > 0) {
  const Hl = ld.weights.length, K = ld.k[0], m = new Float64Array(T * K);
  const use = (mean || Hl === 1) ? [...Array(Hl).keys()] : [Math.min(hi, Hl - 1)];
  for (const h of use) for (let c = 0; c < T * K; c++) m[c] += ld.weights[h][c] / use.length;
  lin_view.data = {...lin_view.data, weight: Array.from(m)};
}
mask_fig.visible = !lin;
lin_panel.visible = lin && ld.weights.length > 0;
lin_missing.visible = lin && ld.weights.length === 0;

// Which sliders this pattern reads, and what they mean for it.
const bb = pat === "bigbird";
window_s.visible = global_s.visible = bb || pat === "sliding_window";
random_s.visible = block.visible = seed_s.visible = bb;
k_s.visible = lin;
window_s.title = bb ? "window (blocks)" : "window w (tokens)";
global_s.title = bb ? "global blocks" : "global tokens";

// The memory report (memory_text in widgets/attention.py writes the same).
let allowed = 0;
for (let c = 0; c < T * T; c++) allowed += A[c];
if (lin) allowed = T * Math.min(P.k, T);
memory.text = memoryText(pat, T, allowed, P, rows > 0 && pat !== "full" && !lin ? outside / rows : null, padded);

function fmtInt(x) { return Math.round(x).toLocaleString("en-US"); }
function pct(a, b) { return `${(100 * a / b).toFixed(1)}%`; }
function fmtBytes(c) {
  if (c < 1024) return `${Math.floor(c)} B`;
  for (const u of ["KiB", "MiB", "GiB", "TiB"]) {
    c /= 1024;
    if (c < 1024 || u === "TiB") return `${c.toFixed(1)} ${u}`;
  }
}
function pairs(pat, n, P) {
  if (pat === "full") return n * n;
  if (pat === "causal") return n * (n + 1) / 2;
  if (pat === "linformer") return n * Math.min(P.k, n);
  if (pat === "sliding_window") {
    const m = n - Math.min(P.n_global, n), w = P.window;
    const band = w >= m - 1 ? m * m : m * (2 * w + 1) - w * (w + 1);
    return n * n - m * m + band;
  }
  const b = P.block, nb = n / b, r = P.window, g = Math.min(P.n_global, nb);
  let blocks = g * nb;
  for (let qb = g; qb < nb; qb++) {
    const win = Math.min(qb + r, nb - 1) - Math.max(qb - r, 0) + 1;
    let extra = 0;
    for (let o = 0; o < g; o++) if (Math.abs(o - qb) > r) extra++;
    blocks += win + extra + Math.min(P.n_random, nb - win - extra);
  }
  return blocks * b * b;
}
function memoryText(pat, T, allowed, P, outside, padded) {
  const n = P.n, label = PATTERNS[pat];
  let head;
  if (pat === "linformer") {
    head = `<b>${label}</b>, k = ${P.k}: ${T} queries x ${Math.min(P.k, T)} projected keys = ${fmtInt(allowed)} ` +
      `scores (${pct(allowed, T * T)} of T\u00b2 = ${fmtInt(T * T)}) for these ${T} tokens: ` +
      `${fmtBytes(4 * allowed)} of float32 scores per head.`;
  } else {
    head = `<b>${label}</b>: ${fmtInt(allowed)} of ${fmtInt(T * T)} query-key pairs allowed ` +
      `(${pct(allowed, T * T)} of T\u00b2) for these ${T} tokens: ${fmtBytes(4 * allowed)} of float32 scores ` +
      "per head.";
  }
  const p = pairs(pat, n, P);
  const at_n = `At n = ${fmtInt(n)} tokens: ${fmtInt(p)} scores (${pct(p, n * n)} of n\u00b2): ` +
    `${fmtBytes(4 * p)} per head and sequence, against ${fmtBytes(4 * n * n)} for full attention.`;
  let note = "";
  if (pat === "linformer") {
    note = `Linformer blocks no pair: E (k \u00d7 n) mixes all n keys into k = ${P.k} slots, so the ` +
      `scores grow as n \u00d7 k, and E and F add 2 \u00d7 k \u00d7 n = ${fmtInt(2 * P.k * n)} parameters.`;
  } else if (pat === "causal") {
    note = "A dense kernel still computes all n\u00b2 scores and zeroes the future; only kernels that skip " +
      "blocked tiles save the other half.";
  }
  if (padded !== T)
    note += ` T = ${T} is padded to ${padded} (a multiple of the block size ${P.block}), as memlib requires.`;
  if (outside !== null)
    note += ` The left map puts ${(100 * outside).toFixed(1)}% of its weight outside the pattern ` +
      "(mean over queries); the right map renormalises what is left.";
  return `${head}<br>${at_n}<br>${note.trim()}`;
}
