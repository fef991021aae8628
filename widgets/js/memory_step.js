// MemoryExplorer's step slider (widgets/memory.py). Python twin: MemoryExplorer._at_step and MemoryExplorer.caption.
// Args: store (the trace), slider, the *_at_step sources, spans and caption.
const d = store.data;
const kind = d.kind[0], T = d.T[0], N = d.N[0], W = d.W[0], R = d.R[0];
// Bokeh needs end > start, so a 1-step sequence gets a 2-step slider: clamp here.
const t = Math.min(Math.max(slider.value, 1), T) - 1;
const take = (a, start, n) => {
  const out = new Array(n);
  for (let k = 0; k < n; k++) out[k] = a[start + k];
  return out;
};
const argmax = (a) => { let best = 0; for (let k = 1; k < a.length; k++) if (a[k] > a[best]) best = k; return best; };
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const f2 = (x) => x.toFixed(2);
memory_at_step.data = {...memory_at_step.data, value: take(d.memory[0], t * N * W, N * W)};
const write = take(d.write_weights[0], t * N, N);
const reads = [];
for (let r = 0; r < R; r++) reads.push(take(d.read_weights[0], (t * R + r) * N, N));
weights_at_step.data = {...weights_at_step.data, weight: [write, ...reads].flat()};
for (const s of spans) s.location = t + 1;
let text = `<b>step ${t + 1} of ${T}</b>. Write head: slot ${argmax(write)} (weight ${f2(write[argmax(write)])})`;
if (kind === "ntm") {
  const erase = take(d.erase[0], t * W, W), add = take(d.add[0], t * W, W);
  erase_add_at_step.data = {...erase_add_at_step.data, erase: erase, add: add};
  text += `, erase mean ${f2(mean(erase))}, add mean ${f2(mean(add))}.`;
} else {
  const usage = take(d.usage[0], t * N, N), alloc = take(d.allocation[0], t * N, N);
  usage_at_step.data = {...usage_at_step.data, usage: usage, allocation: alloc};
  link_at_step.data = {...link_at_step.data, value: take(d.link[0], t * N * N, N * N)};
  const wg = d.write_gate[0][t], ag = d.allocation_gate[0][t];
  if (!isNaN(wg)) text += `, write gate ${f2(wg)}`;
  if (!isNaN(ag)) text += `, allocation gate ${f2(ag)}`;
  text += `. Allocation points at slot ${argmax(alloc)} (${f2(alloc[argmax(alloc)])}); ` +
          `${usage.filter(u => u > 0.5).length} of ${N} slots more than half used.`;
}
for (let r = 0; r < R; r++) {
  const w = reads[r];
  text += `<br>Read head ${r + 1}: slot ${argmax(w)} (weight ${f2(w[argmax(w)])})`;
  if (kind === "dnc") {
    const m = take(d.read_modes[0], (t * R + r) * 3, 3);
    text += `, modes backward ${f2(m[0])} / content ${f2(m[1])} / forward ${f2(m[2])}`;
    const fg = d.free_gates[0][t * R + r];
    if (!isNaN(fg)) text += `, free gate ${f2(fg)}`;
  }
  text += ".";
}
caption.text = text;
