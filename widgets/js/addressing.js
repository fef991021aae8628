// A port of memlib.memory.addressing (Graves et al. 2014, section 3.3): the same equations, the same eps.
// M: the memory as a flat row-major (N*W) array; key (W); prev (N); s (S, odd) over offsets -(S-1)/2..(S-1)/2.
function address_pipeline(M, N, W, key, prev, beta, g, s, gamma) {
  const COSINE_EPS = 1e-8, SHARPEN_EPS = 1e-12;
  let key_norm = 0;
  for (let w = 0; w < W; w++) key_norm += key[w] * key[w];
  key_norm = Math.sqrt(key_norm);
  // K[k, M_i] = k . M_i / (||k|| ||M_i|| + eps)   (eq. 6)
  const similarity = new Array(N);
  for (let i = 0; i < N; i++) {
    let dot = 0, norm = 0;
    for (let w = 0; w < W; w++) { dot += key[w] * M[i * W + w]; norm += M[i * W + w] * M[i * W + w]; }
    similarity[i] = dot / (key_norm * Math.sqrt(norm) + COSINE_EPS);
  }
  // w^c(i) = exp(beta K_i) / sum_j exp(beta K_j)   (eq. 5; minus the max, as a softmax does, to stay finite)
  const top = Math.max(...similarity.map(k => beta * k));
  const e = similarity.map(k => Math.exp(beta * k - top));
  const total = e.reduce((a, b) => a + b, 0);
  const content = e.map(x => x / total);
  // w^g = g w^c + (1 - g) w_{t-1}   (eq. 7)
  const gated = content.map((c, i) => g * c + (1 - g) * prev[i]);
  // w~(i) = sum_j w^g(j) s(i - j), indices mod N   (eq. 8)
  const S = s.length, half = (S - 1) / 2;
  const shifted = new Array(N).fill(0);
  for (let i = 0; i < N; i++)
    for (let k = 0; k < S; k++) shifted[i] += gated[(((i - (k - half)) % N) + N) % N] * s[k];
  // w(i) = (w~(i) + eps)^gamma / sum_j (w~(j) + eps)^gamma   (eq. 9)
  const powered = shifted.map(x => Math.pow(x + SHARPEN_EPS, gamma));
  const norm = powered.reduce((a, b) => a + b, 0);
  const sharpened = powered.map(x => x / norm);
  return {similarity, content, gated, shifted, sharpened};
}
function shift_kernel(x) {  // the slider's shift in [-1, 1] -> mass on offsets -1, 0, +1
  return [Math.max(-x, 0), 1 - Math.abs(x), Math.max(x, 0)];
}
