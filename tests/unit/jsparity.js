// Runs one explorer's JavaScript (a widgets/js file) under node, over a shim of the Bokeh objects it touches.
// Called by tests/unit/jsparity.py with a JSON payload on stdin:
//   code: the callback's body; args: its args (shims); cases: per run, the values to set first; read: a JS
//   expression over `a` (the args after the run) and `r` (what the code returned), giving one result per case.
// A shim is what BokehJS hands the callback: a model is a plain object with the properties it reads and writes (the
// same object wherever it appears: {"$ref": id} points into `models`), a source's numeric NumPy columns are typed
// arrays ({"$typed": "Float32Array", "values": [...]}), a dict of str keys is a plain object. NaN and infinities
// travel as JavaScript's own NaN and Infinity, both ways.
"use strict";
const text = require("fs").readFileSync(0, "utf8");
const input = (0, eval)(`(${text})`);  // Python's json.dumps writes NaN and Infinity, as JavaScript reads them

function decode(value, models, made) {
  if (Array.isArray(value)) return value.map((v) => decode(v, models, made));
  if (value === null || typeof value !== "object") return value;
  if ("$typed" in value) return globalThis[value.$typed].from(value.values);
  if ("$ref" in value) {
    const id = value.$ref;
    if (!made.has(id)) {
      const model = {};
      made.set(id, model);
      for (const [k, v] of Object.entries(models[id])) model[k] = decode(v, models, made);
    }
    return made.get(id);
  }
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = decode(v, models, made);
  return out;
}

function plain(key, value) {  // typed arrays as arrays; NaN and infinities marked for Python's json.loads
  if (ArrayBuffer.isView(value)) return Array.from(value);
  if (typeof value === "number" && !Number.isFinite(value)) return `@@${value}@@`;
  return value;
}

const names = Object.keys(input.args);
const extra = [...new Set(input.cases.flatMap((c) => Object.keys(c).filter((k) => !k.includes(".") && !names.includes(k))))];
const run = new Function(...names, ...extra, input.code);
const read = new Function("a", "r", `return (${input.read});`);
const out = [];
for (const c of input.cases) {
  const a = decode(input.args, input.models, new Map());  // a fresh page for every case
  for (const [key, value] of Object.entries(c)) {
    const [name, prop] = key.split(".");
    if (names.includes(name)) a[name][prop ?? "value"] = decode(value, input.models, new Map());
  }
  const r = run(...names.map((n) => a[n]), ...extra.map((k) => decode(c[k], input.models, new Map())));
  out.push(read(a, r));
}
process.stdout.write(JSON.stringify(out, plain).replace(/"@@(NaN|Infinity|-Infinity)@@"/g, "$1"));
