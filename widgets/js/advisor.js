// AdvisorExplorer's selectors (widgets/advisor.py). Python twin: view() (caption, table, bars, budget line).
// Args: store (the prepared grid), the selects seq, dep, mem, lat, the models it writes, and the constants
// CHOSEN, FEASIBLE, REJECTED (bar colours) and TABLE_HEAD (the table's opening HTML).
const d = store.data;
const col = (name) => d[name][0];
const S = col("seq_lens").length, D = col("dependency_ranges").length, B = col("memory_budgets").length;
const L = col("latencies").length, labels = col("labels"), M = labels.length;
const pick = (w, n) => Math.min(Math.max(parseInt(w.value) || 0, 0), n - 1);
const s = pick(seq, S), dd = pick(dep, D), b = pick(mem, B), l = pick(lat, L);
const esc = (x) => String(x).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
  .replace(/"/g, "&quot;");
const strings = col("strings");
const sm = (name, m) => col(name)[s * M + m];
const T = col("seq_lens")[s], batch = col("batch")[0];
const question = `Dependencies up to ${col("dependency_ranges")[dd]} steps; memory budget: ` +
  `${esc(col("memory_budgets_labels")[b])} (one training step of ${batch} sequences); latency limit: ` +
  `${esc(col("latencies_labels")[l])} (one sequence).`;
// cell_advice: each model's checks, in advise's order (dependency, training time, memory, latency)
const bad = col("invalid")[s * D + dd], valid = bad < 0;
const feasible = [], reasons = [];
for (let m = 0; m < M; m++) {
  const at = {dependency: dd * M + m, step_ms: s * M + m, peak_mib: (s * B + b) * M + m,
              latency_ms: (s * L + l) * M + m};
  const checks = ["dependency", "step_ms", "peak_mib", "latency_ms"].map(
    (c) => [Boolean(col(`${c}_ok`)[at[c]]), strings[col(`${c}_check`)[at[c]]]]);
  const failed = checks.filter((x) => !x[0]).map((x) => x[1]);
  feasible.push(valid && failed.length === 0);
  reasons.push(failed.length ? failed : checks.map((x) => x[1]));
}
const ranked = [...Array(M).keys()].filter((m) => feasible[m]).sort((i, j) => sm("rank", i) - sm("rank", j));
const order = valid ? ranked.concat([...Array(M).keys()].filter((m) => !feasible[m])) : [];
const c = ranked.length ? ranked[0] : -1;
let text;
if (!valid) {
  text = `<b>No advice</b>: ${esc(strings[bad])}`;
} else if (c >= 0) {
  text = `<b>Choose ${esc(labels[c])}</b> at T=${T}: the fastest to train of ${ranked.length} ` +
    `feasible; a training step takes ${esc(sm("step_ms_text", c))}.`;
} else {
  text = `<b>No model meets every constraint</b> at T=${T}: each one's reasons are below.`;
}
caption.text = text + `<br><span style="color:#555">${question}</span>`;
let rows = "";
for (const m of order) {
  const name = m === c ? `<b>${esc(labels[m])}</b>` : esc(labels[m]);
  const mark = feasible[m] ? `<span style="color:${CHOSEN}">yes</span>` :
    `<span style="color:${REJECTED}">no</span>`;
  rows += `<tr><td>${name}</td><td>${mark}</td><td>${esc(sm("peak_mib_text", m))}</td>` +
    `<td>${esc(sm("latency_ms_text", m))}</td><td>${esc(sm("step_ms_text", m))}</td>` +
    `<td>${esc(reasons[m].join("; "))}</td></tr>`;
}
table.text = TABLE_HEAD + rows + "</table>";
// the bars: predicted peak memory at T (unknown: no bar), the budget as a line (none: no limit)
const bottom = y.start;
const top = [], color = [], hatch = [], label = [];
for (let m = 0; m < M; m++) {
  const v = sm("peak_mib", m);
  top.push(v > 0 ? v : bottom);
  color.push(m === c ? CHOSEN : feasible[m] ? FEASIBLE : REJECTED);
  hatch.push(col("extrapolated")[(s * M + m) * 3 + 1] ? "/" : " ");
  label.push(v > 0 ? sm("peak_mib_label", m) : "not measured");
}
bars.data = {x: col("factors"), top: top, color: color, hatch: hatch, text: label};
const budget = col("memory_budgets")[b];
budget_line.location = budget > 0 ? budget : null;
