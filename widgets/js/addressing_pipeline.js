// AddressingPipeline's sliders (widgets/memory.py), run after addressing.js: the five stages of one NTM address.
// Python twin: memlib.memory.addressing through AddressingPipeline.prepare and AddressingPipeline.caption.
// Args: setup (memory, key, previous, N, W), the sliders beta, g, shift, gamma, and the sources it fills.
const d = setup.data;
const N = d.N[0], W = d.W[0];
const s = shift_kernel(shift.value);
const out = address_pipeline(d.memory[0], N, W, d.key[0], d.previous[0], beta.value, g.value, s, gamma.value);
const slots = content.data.slot;
inputs.data = {slot: slots, similarity: out.similarity, previous: inputs.data.previous};
kernel.data = {offset: kernel.data.offset, s: s};
content.data = {slot: slots, weight: out.content};
gated.data = {slot: slots, weight: out.gated};
shifted.data = {slot: slots, weight: out.shifted};
sharpened.data = {slot: slots, weight: out.sharpened};
const focus = (w) => {
  let b = 0;
  for (let i = 1; i < w.length; i++) if (w[i] > w[b]) b = i;
  return `slot ${b} (${w[b].toFixed(2)})`;
};
caption.text = `Focus after each stage: content ${focus(out.content)}, gated ${focus(out.gated)}, ` +
  `shifted ${focus(out.shifted)}, sharpened ${focus(out.sharpened)}.`;
