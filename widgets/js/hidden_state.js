// HiddenStateExplorer's step slider (widgets/hidden_state.py). Python twin: HiddenStateExplorer._at_step.
// Args: slider, grid (the (D, T) image), state, cursor, curve (the running answer), span, div.
const t = Math.min(slider.value, grid.data.T[0]) - 1;  // a 1-step input keeps a 2-step slider
const img = grid.data.image[0];
const D = grid.data.D[0], T = grid.data.T[0];
const value = new Array(D);
for (let d = 0; d < D; d++) value[d] = img[d * T + t];
state.data = {unit: state.data.unit, value: value};
cursor.data = {step: [t + 1], readout: [curve.data.readout[t]]};
span.location = t + 1;
div.text = caption(t, curve.data);
function caption(t, c) {
  return `<b>step ${t + 1} of ${T}</b>: input ${c.input[t]}, running answer ${c.readout[t].toFixed(2)}, ` +
         `target ${c.target[t].toFixed(2)}`;
}
