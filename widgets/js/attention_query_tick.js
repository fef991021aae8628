// The query axis's labels (CustomJSTickFormatter): step and token. Args: tokens (a source with a token column).
const t = tokens.data.token; return `${tick + 1} "${t[tick] === undefined ? "" : t[tick]}"`;
