// CaptionExplorer's scene and word sliders (widgets/caption.py). Python twin: CaptionExplorer.view.
// Args: scene_slider, word_slider, store (one row per scene: image, weights (L x G), tokens, truth, cells,
// lengths, n_words), scene (the image), cells (the 3 x 3
// attention overlay), words (the caption under the image), div (the sentence about the chosen word), grid.
const S = store.data.lengths.length, G = grid * grid, P = grid * 8;
const s = Math.min(Math.max(scene_slider.value, 1), S) - 1;
const n = store.data.n_words[s];  // words the model wrote, <end> included
const w = Math.min(Math.max(word_slider.value, 1), n) - 1;
const pixels = store.data.image[s];
const image = new Float64Array(P * P);
for (let y = 0; y < P; y++) {  // Bokeh draws row 0 at the bottom: the scene's top row goes last
  for (let x = 0; x < P; x++) image[(P - 1 - y) * P + x] = pixels[y * P + x];
}
scene.data = {image: [image], x: [0], y: [0], dw: [P], dh: [P]};
const alpha = new Array(G), label = new Array(G);
for (let g = 0; g < G; g++) {
  const a = store.data.weights[s][w * G + g];
  alpha[g] = a;
  label[g] = a >= 0.05 ? a.toFixed(2) : "";
}
cells.data = {x: cells.data.x, y: cells.data.y, alpha: alpha, label: label};
const text = [], fill = [];
for (let k = 0; k < n; k++) {
  text.push(word(store.data.tokens[s][k]));
  fill.push(k === w ? "#d95f02" : "#bbbbbb");
}
words.data = {x: text.map((_, k) => k), text: text, fill: fill};
div.text = sentence(s, w, n, alpha);
function word(t) { return t === 10 ? "⟨end⟩" : String(t); }
function sentence(s, w, n, alpha) {
  const wrote = [], truth = [];
  for (let k = 0; k < n; k++) wrote.push(word(store.data.tokens[s][k]));
  for (let k = 0; k < store.data.lengths[s] - 1; k++) truth.push(String(store.data.truth[s][k]));
  let best = 0;
  for (let g = 1; g < G; g++) if (alpha[g] > alpha[best]) best = g;
  const where = `row ${Math.floor(best / grid) + 1}, column ${(best % grid) + 1}`;
  const drawn = store.data.cells[s][w];
  const verdict = drawn < 0 ? "" : drawn === best ? ": where that digit is drawn" : ": not where the digit is drawn";
  return `<b>Scene ${s + 1}</b>: the model wrote “${wrote.join(" ")}” (truth “${truth.join(" ")}”). ` +
         `Word ${w + 1}, “${wrote[w]}”: strongest weight ${alpha[best].toFixed(2)} on ${where}${verdict}.`;
}
