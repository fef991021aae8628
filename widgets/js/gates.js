// GateExplorer's variant, step and unit controls (widgets/gates.py). Python twin: GateExplorer._view and _caption.
// Args: the store, widgets and models it reads and writes, and the constants GATES, SYMBOL, TITLE, COLOR,
// KEEP (each kind's keep-gate letter) and CHANNEL_COLOR.
const d = store.data;
let v = d.variant.indexOf(select.value);
if (v < 0) v = 0;
const kind = d.kind[v], T = d.T[v], H = d.H[v], m = d.marked[v];
// Bokeh needs end > start, so a 1-step input gets a 2-step slider: clamp here.
const t = Math.min(Math.max(time.value, 1), T) - 1;
const u = Math.min(Math.max(unit.value, 0), H - 1);
const steps = Array.from({length: T}, (_, k) => k + 1);
if (filter.group !== d.variant[v]) {
  filter.group = d.variant[v];
  lstm_block.visible = kind === "lstm";
  gru_block.visible = kind === "gru";
  bars_range.factors = GATES[kind].map(g => SYMBOL[kind][g]);
  for (const s of mark_spans) s.location = m + 1;
  const chans = d.line_channels[v], x = d.input_lines[v];
  inputs.data = {xs: chans.map(() => steps), ys: chans.map((_, c) => Array.from(x.slice(c * T, (c + 1) * T))),
                 channel: chans, color: chans.map((_, c) => CHANNEL_COLOR[c])};
}
for (const s of time_spans) s.location = t + 1;
for (const b of unit_boxes) { b.bottom = u - 0.5; b.top = u + 0.5; }
const gates = GATES[kind];
const row = (name) => {  // unit u's row of a (H, T) image
  const img = d[name][v], out = new Array(T);
  for (let k = 0; k < T; k++) out[k] = img[u * T + k];
  return out;
};
const rows = gates.map(row);
bars.data = {gate: gates.map(g => SYMBOL[kind][g]), name: gates.map(g => TITLE[kind][g]),
             value: rows.map(r => r[t]), color: gates.map(g => COLOR[g])};
lines.data = {xs: gates.map(() => steps), ys: rows, gate: gates.map(g => TITLE[kind][g]),
              color: gates.map(g => COLOR[g])};
const bound = 1.05 * Math.max(1, ...rows.map(r => Math.max(...r.map(Math.abs))));
bars_y.start = -bound;
bars_y.end = bound;
const r = row("retention");
retention.data = {step: steps, retention: r};
cursor.data = {step: [t + 1], retention: [r[t]]};
const hl = d.half_life[v];
const med = d.median_half_life[v];
const fmt = (h) => isFinite(h) ? `${h} step${h === 1 ? "" : "s"}` : `over ${T - 1 - m} steps (not reached)`;
const label = labels.data.label, lv = labels.data.variant, ls = labels.data.step;
let token = "";
const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
  .replace(/'/g, "&#x27;");  // as Python's html.escape
for (let k = 0; k < label.length; k++) {
  if (lv[k] === d.variant[v] && ls[k] === t + 1) token = ` &quot;${esc(label[k])}&quot;`;
}
const values = gates.map((g, k) => `${SYMBOL[kind][g]} ${rows[k][t].toFixed(2)}`).join(", ");
const kept = t < m ? "(before the mark)" : r[t].toFixed(2);
caption.text = `<b>${esc(d.variant[v])}</b>: step ${t + 1} of ${T}${token}, unit ${u}: ${values}<br>` +
  `Kept at step ${t + 1} of what unit ${u} held at the marked step ${m + 1}: ${kept}` +
  ` (rₜ = ∏ ${KEEP[kind]}ₛ over the steps since the mark). Half-life of unit ${u}: ${fmt(hl[u])};` +
  ` median over ${H} units: ${fmt(med)}.`;
