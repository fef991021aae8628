// AttributionExplorer's selectors (widgets/attribution.py). Python twin: AttributionExplorer.view.
// Args: the sources, selects and models it reads and writes, PALETTE (256 colours, blue to red) and SERIES
// (the input series' line colours).
const md = meta.data;
const kind = md.kind[0], E = md.E[0], C = md.C[0], T = md.T[0], F = md.F[0];
const methods = md.methods[0], targets = md.targets[0], M = methods.length;
const m = Math.max(methods.indexOf(method.value), 0);
const c = Math.max(targets.indexOf(target.value), 0);
const e = Math.min(Math.max(parseInt(example.value) || 0, 0), E - 1);
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
  .replace(/"/g, "&quot;").replace(/'/g, "&#x27;");
const fmt = (x, d) => (x + 0).toFixed(d);
const signed = (x, d) => (x > 0 ? "+" : "") + fmt(x, d);
const color = (v, s) => PALETTE[Math.min(255, Math.max(0, Math.floor((v / s + 1) / 2 * 256)))];
function scaleOf(vals) {
  let b = 0;
  for (const v of vals) b = Math.max(b, Math.abs(v));
  return b > 0 ? b : 1;
}
const row_of = (mi) => Array.from(store.data.values[(mi * E + e) * C + c]);

const vals = row_of(m), scale = scaleOf(vals);
const dg = Math.min(8, Math.max(0, 2 - Math.floor(Math.log10(scale))));
const inp = inputs.data;
const tokens = kind === "text" ? inp.tokens[e] : [...Array(T).keys()].map((t) => `step ${t}`);

bars.data = {x: [...Array(T).keys()], value: vals, token: tokens};
mapper.low = -scale;
mapper.high = scale;

// Every method for this example and target, each row scaled to its own largest |attribution|.
const cx = [], cy = [], cv = [], craw = [], cm = [];
for (let mi = 0; mi < M; mi++) {
  const r = row_of(mi), s = scaleOf(r);
  for (let t = 0; t < T; t++) { cx.push(t); cy.push(mi); cv.push(r[t] / s); craw.push(r[t]); cm.push(methods[mi]); }
}
cells.data = {x: cx, y: cy, value: cv, raw: craw, method: cm};

if (kind === "text") {
  const chips = [];
  for (let t = 0; t < T; t++) {
    const v = vals[t], fg = Math.abs(v / scale) > 0.55 ? "#fff" : "#000";
    chips.push(`<span title="${fmt(v, dg)}" style="background:${color(v, scale)};color:${fg};` +
      `padding:1px 4px;margin:2px 1px;border-radius:3px;display:inline-block">${esc(tokens[t])}</span>`);
  }
  text.text = '<div style="line-height:1.9;font-size:95%">' + chips.join(" ") + "</div>";
} else {
  const flat = inp.series[e], xs = [], ys = [], cols = [];
  for (let f = 0; f < F; f++) {
    const y = [];
    for (let t = 0; t < T; t++) y.push(flat[t * F + f]);
    xs.push([...Array(T).keys()]); ys.push(y); cols.push(SERIES[f % SERIES.length]);
  }
  series.data = {xs: xs, ys: ys, color: cols};
}

// The caption (caption() in widgets/attribution.py writes the same).
let sum = 0, hi = 0, lo = 0;
for (let t = 0; t < T; t++) {
  sum += vals[t];
  if (vals[t] > vals[hi]) hi = t;
  if (vals[t] < vals[lo]) lo = t;
}
const name = (t) => kind === "text" ? `&quot;${esc(tokens[t])}&quot;` : `step ${t}`;
let cap = `<b>example ${e + 1} of ${E}</b>, ${esc(methods[m])}, target <b>${esc(targets[c])}</b>`;
const said = [];
if (inp.prediction[e] !== "") said.push(`prediction <b>${esc(inp.prediction[e])}</b>`);
if (inp.label[e] !== "") said.push(`label ${esc(inp.label[e])}`);
if (inp.output[e].length > 0) said.push(`output ${fmt(inp.output[e][c], dg)}`);
if (said.length > 0) cap += ": " + said.join(", ");
cap += `. Sum of attributions ${fmt(sum, dg)}; most positive ${name(hi)} (${signed(vals[hi], dg)}), ` +
  `most negative ${name(lo)} (${signed(vals[lo], dg)}).`;
caption.text = cap;
