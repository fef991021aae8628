// MemoryBudgetExplorer's controls (widgets/budget.py). Python twin: view() over memlib.hardware's estimate.
// Args: the sources, widgets and models it reads and writes, and the constants PARTS, PART_LABEL, PREC_LABEL,
// OPT_LABEL, MAX_BATCH and reserve (the GPU memory fraction kept back).
const KiB = 1024, MiB = 1048576, GiB = 1073741824;
const d = store.data;
const value = (o) => Array.isArray(o) ? o[0] : o;
let m = d.name.indexOf(model.value);
if (m < 0) m = 0;
const precisions = precision.options.map(value), optimizers = optimizer.options.map(value);
const p = Math.max(0, precisions.indexOf(precision.value)), o = Math.max(0, optimizers.indexOf(optimizer.value));
const K = d.n_lengths[m], xs = d.lengths[m].slice(0, K), b0 = d.example_batch[m];
// the length slider: the model's measured lengths (Bokeh needs end > start: clamp here)
const lo = xs[0], hi = xs[K - 1];
const end = Math.max(hi, lo + 1);
if (length.start !== lo || length.end !== end) { length.start = lo; length.end = end; }
length.disabled = K < 2;
const T = Math.min(Math.max(Math.round(length.value), lo), hi);
if (length.value !== T) length.value = T;  // runs this callback once more, with the same numbers
checkpoint.disabled = !d.checkpointable[m];
const c = (checkpoint.active && d.checkpointable[m]) ? 1 : 0;
const B = Math.min(Math.max(Math.round(batch.value === null ? 1 : batch.value), 1), MAX_BATCH);
if (batch.value !== B) batch.value = B;
// Python's round(): halves to even
const rhe = (x) => {
  const f = Math.floor(x), r = x - f;
  return r > 0.5 ? f + 1 : r < 0.5 ? f : (f % 2 === 0 ? f : f + 1);
};
const interp = (ys, t) => {
  let total = 0.0;
  for (let k = 0; k < K; k++) {
    let w = 1.0;
    for (let j = 0; j < K; j++) if (j !== k) w *= (t - xs[j]) / (xs[k] - xs[j]);
    total += w * ys[k];
  }
  return total;
};
const P = precisions.length, O = optimizers.length, KM = d.lengths[m].length;
const at = (field) => {
  const flat = d[field][m], base = (p * 2 + c) * KM;
  return Math.max(0, rhe(interp(flat.slice(base, base + K), T)));
};
const count = (field) => d[field][m][p * O + o];
const act0 = at("activations"), bw0 = at("backward_workspace");
const e0 = {parameters: count("parameters"), gradients: count("gradients"), optimizer_state: count("optimizer_state"),
            activations: act0, backward_workspace: bw0, step_workspace: count("step_workspace"),
            activations_fixed: Math.min(at("activations_fixed"), act0),
            backward_workspace_fixed: Math.min(at("backward_workspace_fixed"), bw0)};
// memlib.hardware.MemoryEstimate.at_batch, workspace and total
const atBatch = (b) => {
  const scale = b / b0;
  const a = e0.activations_fixed + rhe((e0.activations - e0.activations_fixed) * scale);
  const w = e0.backward_workspace_fixed + rhe((e0.backward_workspace - e0.backward_workspace_fixed) * scale);
  const ws = Math.max(w, e0.step_workspace - a, 0);
  return {parameters: e0.parameters, gradients: e0.gradients, optimizer_state: e0.optimizer_state,
          activations: a, workspace: ws, total: e0.parameters + e0.gradients + e0.optimizer_state + a + ws};
};
const e = atBatch(B);
const fmt = (x, n) => x.toFixed(n);
const bytes = (n) => n >= GiB ? `${fmt(n / GiB, 2)} GiB` : n >= MiB ? `${fmt(n / MiB, 2)} MiB` :
                     n >= KiB ? `${fmt(n / KiB, 1)} KiB` : `${Math.trunc(n)} B`;
// memlib.hardware.largest_batch, on this estimate
const grows = e0.activations - e0.activations_fixed + e0.backward_workspace - e0.backward_workspace_fixed > 0;
const largest = (usable) => {
  if (!grows) return null;
  const perSample = (e0.activations - e0.activations_fixed + e0.backward_workspace) / b0;
  const fixed = e0.parameters + e0.gradients + e0.optimizer_state + e0.activations_fixed;
  const guess = Math.max(1, Math.floor((usable - fixed) / perSample));
  const fitsAt = (b) => b === 0 || atBatch(b).total <= usable;
  let low, high;
  if (fitsAt(guess)) { low = guess; high = 2 * guess; } else { low = 0; high = guess; }
  while (fitsAt(high)) { low = high; high = 2 * high; }
  while (high - low > 1) { const mid = Math.floor((low + high) / 2); if (fitsAt(mid)) low = mid; else high = mid; }
  return low;
};
const g = gpus.data;
const lbs = g.usable.map(largest), fit = g.usable.map(u => e.total <= u);
// the stacked bar, in MiB
const bar = {y: ["estimate"]};
for (const k of PARTS) bar[k] = [e[k] / MiB];
bars.data = bar;
bar_x.start = 0;
bar_x.end = 1.08 * Math.max(e.total / MiB, 1e-6);
// largest batch per GPU, on a log axis
const top = Math.max(2, B, ...lbs.map(v => v === null ? 1 : v));
gpus.data = {...g, largest: lbs.map(v => v === null ? top * 10 : Math.max(v, 1)),
             label: lbs.map(v => v === null ? "any" : String(v)),
             color: fit.map(f => f ? "#1b7837" : "#b2182b")};
gpu_x.end = top * 30;
batch_line.location = B;
const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const measured = xs.includes(T);
const parts = PARTS.map(k => `${PART_LABEL[k]} ${bytes(e[k])}`).join(", ");
const how = measured ? "a measured length" : "between the measured lengths: interpolated";
const pr = precisions[p], op = optimizers[o];
caption.text = `<b>${esc(d.name[m])}</b> (${d.n_parameters[m]} weights), ${PREC_LABEL[pr] ?? pr}, ` +
  `${OPT_LABEL[op] ?? op}${c ? ", checkpointing" : ""}, batch ${B}, length ${T}: ` +
  `<b>${bytes(e.total)}</b> = ${parts}.<br><span style="color:#555">Estimated at batch ${b0} and lengths ` +
  `${xs.join(", ")} (${how}); other batches: scaled linearly from two measured batches.</span>` +
  (d.paths[m][p] ? `<br><span style="color:#555">Path: ${esc(d.paths[m][p].split("\n").join(" "))}</span>` : "");
let rows = "";
for (let i = 0; i < g.gpu.length; i++) {
  const mark = fit[i] ? '<span style="color:#1b7837">yes</span>' : '<span style="color:#b2182b">no</span>';
  rows += `<tr><td style="text-align:left">${esc(g.gpu[i])}</td><td>${bytes(g.memory[i])}</td><td>${mark}</td>` +
    `<td>${lbs[i] === null ? "any" : lbs[i]}</td>` +
    `<td>${bytes(g.ram_minimum[i])} / ${bytes(g.ram_recommended[i])}</td></tr>`;
}
table.text = '<table style="border-collapse:collapse;font-size:90%;text-align:right" cellpadding="3">' +
  '<tr><th style="text-align:left">GPU</th><th>memory</th>' +
  `<th>batch ${B} fits?</th><th>largest batch</th><th>host RAM: at least / better</th></tr>` + rows + "</table>" +
  `<p style="margin:0.3em 0 0 0;font-size:85%;color:#555">A GPU's usable memory is its memory less ` +
  `${fmt(100 * reserve, 0)}% (CUDA context, libraries, fragmentation). Host RAM: at least the ` +
  `GPU's memory, 25% more to be comfortable.</p>`;
