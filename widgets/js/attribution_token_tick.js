// The bars' x labels (CustomJSTickFormatter): the token at each position. Args: bars (the bars' source).
const t = bars.data.token; return t[tick] === undefined ? "" : t[tick];
