"""The DNC's temporal linkage as one C++ loop nest per step, for the compiled step on the CPU (issue 22).

One step of temporal linkage (Graves et al. 2016, Methods, "Temporal memory linkage") updates the link matrix and
reads it twice, and its gradient flows back through all three:

    L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p[j],  L_t[i, i] = 0      (memlib.memory.dnc.update_link)
    f[r] = L_t rw[r],  b[r] = L_t^T rw[r]                        (memlib.memory.dnc.directional_weightings)

Written as tensor operations, that is about five passes over the (B, N, N) link matrix forward and ten backward
(with their (B, N, N) temporaries): at B = 16 and N = 128 they took half of the DNC's compiled training step on copy.
The loops below do each direction in one pass over rows of the link matrix, four rows at a time (four independent
sums per loop, one pass over each read head's vector per four rows):

- :func:`linkage`: reads ``L_{t-1}`` once and writes ``L_t`` once, computing ``f`` and ``b`` from each row of ``L_t``
  while it is in the cache;
- :func:`linkage_backward`: reads the gradient of ``L_t`` and ``L_{t-1}`` once (recomputing each row of ``L_t``, which
  costs less than reading it) and writes the gradient of ``L_{t-1}`` once, adding the directional weightings'
  gradients on the way.

:mod:`memlib.memory.dnc` calls them through one custom operator inside ``torch.compile`` (the compiler calls it as it
is); eager, the DNC runs the readable tensor code, and tests/unit/test_dnc.py and test_fast_memory.py check both
against it. The source is compiled on first use with the compiler and flags inductor uses for its own kernels, and kept
in inductor's on-disk cache (about 2 s once per machine). Float32 and float64 on one thread (the benchmarks and pages
run the step on one); elsewhere (:func:`supports` says where) the operator runs the tensor code.

Shapes: ``B`` batch, ``N`` memory slots, ``R`` read heads.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import torch

SOURCE = r"""
// inductor compiles with -fno-tree-loop-vectorize (it vectorizes its kernels itself); these loops need the compiler's
#pragma GCC optimize("tree-loop-vectorize")
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t K = 4;  // rows of the link matrix per block

// L_t[i, :] = (1 - w[i] - w) o L_{t-1}[i, :] + w[i] p, L_t[i, i] = 0
template <typename T>
void link_row(const T* __restrict L, const T* __restrict p, const T* __restrict w, int64_t i, int64_t n,
              T* __restrict out) {
  const T wi = w[i];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = L[j] - wi * L[j] - w[j] * L[j] + wi * p[j];
  out[i] = 0;
}

// One head x = rw[r] over the block's rows L_t[i + k, :]: s[k] = L_t[i + k, :] . x (f[r, i + k]) and
// y += sum_k a[k] L_t[i + k, :] with a[k] = x[i + k] (b[r]); rows past the matrix are zeros with a[k] = 0
template <typename T>
void directional_block(const T* const* rows, const T* __restrict x, const T* a, int64_t n, T* __restrict y, T* s) {
  const T* __restrict r0 = rows[0];
  const T* __restrict r1 = rows[1];
  const T* __restrict r2 = rows[2];
  const T* __restrict r3 = rows[3];
  const T a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t j = 0; j < n; ++j) {
    const T xj = x[j];
    s0 += r0[j] * xj;
    s1 += r1[j] * xj;
    s2 += r2[j] * xj;
    s3 += r3[j] * xj;
    y[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j];
  }
  s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
}

// One head backward over the block: g[k] = h[k] + a[k] x + c[k] z (the gradient of L_t[i + k, :] from f[r, i + k]
// and b[r], with a[k] = df[r, i + k], c[k] = rw[r, i + k], z = db[r], added to the gradient so far h[k]: L_t's own for
// the first head, read where it lies instead of copied first; g[k] itself after it); y += sum_k a[k] L_t[i + k, :]
// (drw[r] from f); s[k] = z . L_t[i + k, :] (drw[r, i + k] from b)
template <typename T>
void directional_block_backward(const T* const* rows, const T* const* h, T* const* g, const T* __restrict x,
                                const T* __restrict z, const T* a, const T* c, int64_t n, T* __restrict y, T* s) {
  const T* __restrict r0 = rows[0];
  const T* __restrict r1 = rows[1];
  const T* __restrict r2 = rows[2];
  const T* __restrict r3 = rows[3];
  const T *h0 = h[0], *h1 = h[1], *h2 = h[2], *h3 = h[3];  // g's rows or rows of their own: each j reads, then writes
  T *g0 = g[0], *g1 = g[1], *g2 = g[2], *g3 = g[3];
  const T a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
  const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t j = 0; j < n; ++j) {
    const T xj = x[j], zj = z[j];
    g0[j] = h0[j] + (a0 * xj + c0 * zj);
    g1[j] = h1[j] + (a1 * xj + c1 * zj);
    g2[j] = h2[j] + (a2 * xj + c2 * zj);
    g3[j] = h3[j] + (a3 * xj + c3 * zj);
    y[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j];
    s0 += zj * r0[j];
    s1 += zj * r1[j];
    s2 += zj * r2[j];
    s3 += zj * r3[j];
  }
  s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
}

// Through the update, for the block's total gradients g[k] of L_t[i + k, :] (zero on the diagonal):
// dL_{t-1}[i, j] = (1 - w[i] - w[j]) g[i, j]; dp[j] += sum_i w[i] g[i, j];
// dw[j] -= sum_i g[i, j] L_{t-1}[i, j] (w as w[j]); s[k] = g[k] . (p - L_{t-1}[i + k, :]) (w as w[i])
template <typename T>
void link_block_backward(T* const* g, const T* const* L, const T* __restrict p, const T* __restrict w,
                         const T* wk, int64_t n, T* __restrict dp, T* __restrict dw, T* s) {
  T* __restrict g0 = g[0];
  T* __restrict g1 = g[1];
  T* __restrict g2 = g[2];
  T* __restrict g3 = g[3];
  const T* __restrict L0 = L[0];
  const T* __restrict L1 = L[1];
  const T* __restrict L2 = L[2];
  const T* __restrict L3 = L[3];
  const T w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3];
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t j = 0; j < n; ++j) {
    const T h0 = g0[j], h1 = g1[j], h2 = g2[j], h3 = g3[j];
    s0 += h0 * (p[j] - L0[j]);
    s1 += h1 * (p[j] - L1[j]);
    s2 += h2 * (p[j] - L2[j]);
    s3 += h3 * (p[j] - L3[j]);
    dp[j] += w0 * h0 + w1 * h1 + w2 * h2 + w3 * h3;
    dw[j] -= h0 * L0[j] + h1 * L1[j] + h2 * L2[j] + h3 * L3[j];
    g0[j] = h0 - w0 * h0 - w[j] * h0;
    g1[j] = h1 - w1 * h1 - w[j] * h1;
    g2[j] = h2 - w2 * h2 - w[j] * h2;
    g3[j] = h3 - w3 * h3 - w[j] * h3;
  }
  s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
}

template <typename T>
void forward(const T* link, const T* precedence, const T* write, const T* read, int64_t B, int64_t N, int64_t R,
             T* out_link, T* out_forward, T* out_backward) {
  const std::vector<T> zeros(N, T(0));
  std::memset(out_backward, 0, sizeof(T) * B * R * N);
  for (int64_t b = 0; b < B; ++b) {
    const T *L = link + b * N * N, *p = precedence + b * N, *w = write + b * N, *rw = read + b * R * N;
    T *Lt = out_link + b * N * N, *f = out_forward + b * R * N, *bw = out_backward + b * R * N;
    for (int64_t i = 0; i < N; i += K) {
      const int64_t valid = std::min(K, N - i);
      const T* rows[K];
      for (int64_t k = 0; k < K; ++k) {
        rows[k] = k < valid ? Lt + (i + k) * N : zeros.data();
        if (k < valid) link_row(L + (i + k) * N, p, w, i + k, N, Lt + (i + k) * N);
      }
      for (int64_t r = 0; r < R; ++r) {
        const T* x = rw + r * N;
        T a[K], s[K];
        for (int64_t k = 0; k < K; ++k) a[k] = k < valid ? x[i + k] : T(0);
        directional_block(rows, x, a, N, bw + r * N, s);
        for (int64_t k = 0; k < valid; ++k) f[r * N + i + k] = s[k];
      }
    }
  }
}

template <typename T>
void backward(const T* grad_link, const T* grad_forward, const T* grad_backward, const T* link, const T* precedence,
              const T* write, const T* read, int64_t B, int64_t N, int64_t R, T* out_link, T* out_precedence,
              T* out_write, T* out_read) {
  std::vector<T> rows_buffer(K * N), spare(K * N, T(0));  // L_t's rows of a block; zero rows past the matrix
  std::memset(out_precedence, 0, sizeof(T) * B * N);
  std::memset(out_write, 0, sizeof(T) * B * N);
  std::memset(out_read, 0, sizeof(T) * B * R * N);
  for (int64_t b = 0; b < B; ++b) {
    const T *L = link + b * N * N, *p = precedence + b * N, *w = write + b * N, *rw = read + b * R * N;
    const T *G = grad_link + b * N * N, *gf = grad_forward + b * R * N, *gb = grad_backward + b * R * N;
    T *dL = out_link + b * N * N, *dp = out_precedence + b * N, *dw = out_write + b * N, *drw = out_read + b * R * N;
    for (int64_t i = 0; i < N; i += K) {
      const int64_t valid = std::min(K, N - i);
      const T *rows[K], *Lk[K], *Gk[K];
      T *g[K], wk[K], s[K];
      for (int64_t k = 0; k < K; ++k) {
        T* row = rows_buffer.data() + k * N;
        rows[k] = row;
        Lk[k] = k < valid ? L + (i + k) * N : spare.data() + k * N;
        g[k] = k < valid ? dL + (i + k) * N : spare.data() + k * N;
        Gk[k] = k < valid ? G + (i + k) * N : g[k];
        wk[k] = k < valid ? w[i + k] : T(0);
        if (k < valid) {
          link_row(L + (i + k) * N, p, w, i + k, N, row);  // L_t[i + k, :] again: cheaper than reading it back
          if (R == 0) std::memcpy(g[k], Gk[k], sizeof(T) * N);  // else the first head's pass reads Gk[k]
        } else {
          std::memset(row, 0, sizeof(T) * N);
        }
      }
      for (int64_t r = 0; r < R; ++r) {
        const T* x = rw + r * N;
        T a[K], c[K];
        for (int64_t k = 0; k < K; ++k) {
          a[k] = k < valid ? gf[r * N + i + k] : T(0);
          c[k] = k < valid ? x[i + k] : T(0);
        }
        const T* const* h = r == 0 ? Gk : static_cast<const T* const*>(g);
        directional_block_backward(rows, h, g, x, gb + r * N, a, c, N, drw + r * N, s);
        for (int64_t k = 0; k < valid; ++k) drw[r * N + i + k] += s[k];
      }
      for (int64_t k = 0; k < valid; ++k) g[k][i + k] = 0;  // L_t[i, i] = 0: no gradient flows through it
      link_block_backward(g, Lk, p, w, wk, N, dp, dw, s);
      for (int64_t k = 0; k < valid; ++k) dw[i + k] += s[k];
    }
  }
}

}  // namespace

#define LINKAGE(T)                                                                                                   \
  extern "C" void linkage_##T(const T* link, const T* precedence, const T* write, const T* read, int64_t B,         \
                              int64_t N, int64_t R, T* out_link, T* out_forward, T* out_backward) {                 \
    forward(link, precedence, write, read, B, N, R, out_link, out_forward, out_backward);                          \
  }                                                                                                                  \
  extern "C" void linkage_backward_##T(const T* grad_link, const T* grad_forward, const T* grad_backward,          \
                                       const T* link, const T* precedence, const T* write, const T* read, int64_t B, \
                                       int64_t N, int64_t R, T* out_link, T* out_precedence, T* out_write,          \
                                       T* out_read) {                                                                \
    backward(grad_link, grad_forward, grad_backward, link, precedence, write, read, B, N, R, out_link,              \
             out_precedence, out_write, out_read);                                                                  \
  }
LINKAGE(float)
LINKAGE(double)
"""

_C_TYPES = {torch.float32: "float", torch.float64: "double"}
_library: Any = None  # the loaded kernels; False where they could not be compiled


def _load() -> Any:
    """The compiled kernels (compiled on first use, then from inductor's cache), or False with one printed line."""
    global _library
    if _library is None:
        try:
            from torch._inductor.codecache import CppCodeCache  # inductor's compiler, flags and on-disk cache

            _library = CppCodeCache.load(SOURCE)
        except Exception as error:  # noqa: BLE001 - any failure of the toolchain means: run the tensor code
            _library = False
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"memlib: the DNC's linkage loops did not compile ({reason}); running its tensor code",
                  file=sys.stderr)
    return _library


def supports(link: torch.Tensor) -> bool:
    """Whether :func:`linkage` and :func:`linkage_backward` run for tensors like ``link`` (CPU, float32 or float64,
    and the loops compiled)."""
    return link.device.type == "cpu" and link.dtype in _C_TYPES and bool(_load())


def _call(name: str, inputs: tuple[torch.Tensor, ...], sizes: tuple[int, ...], outputs: tuple[torch.Tensor, ...]):
    # the C signature: input pointers, sizes (int64), output pointers; every tensor contiguous, of one dtype
    function = getattr(_library, f"{name}_{_C_TYPES[inputs[0].dtype]}")
    function(
        *(ctypes.c_void_p(t.data_ptr()) for t in inputs),
        *map(ctypes.c_int64, sizes),
        *(ctypes.c_void_p(t.data_ptr()) for t in outputs),
    )


def linkage(
    link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor, read_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``L_{t-1}`` (B, N, N), ``p_{t-1}`` (B, N), ``w^w_t`` (B, N), ``w^r_{t-1}`` (B, R, N) -> (``L_t``, forward,
    backward), each (B, N, N), (B, R, N), (B, R, N): :func:`memlib.memory.dnc.update_link`, then
    :func:`memlib.memory.dnc.directional_weightings` of its result. Only where :func:`supports` says so."""
    B, R, N = read_weights.shape
    inputs = tuple(t.contiguous() for t in (link, precedence, write_weights, read_weights))
    outputs = (torch.empty_like(inputs[0]), torch.empty_like(inputs[3]), torch.empty_like(inputs[3]))
    _call("linkage", inputs, (B, N, R), outputs)
    return outputs


def linkage_backward(
    grad_link: torch.Tensor,
    grad_forward: torch.Tensor,
    grad_backward: torch.Tensor,
    link: torch.Tensor,
    precedence: torch.Tensor,
    write_weights: torch.Tensor,
    read_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`linkage`'s inputs (link, precedence, write_weights, read_weights) for those of its three
    values (``grad_link`` (B, N, N), ``grad_forward`` and ``grad_backward`` (B, R, N)), given its inputs."""
    B, R, N = read_weights.shape
    inputs = tuple(
        t.contiguous() for t in (grad_link, grad_forward, grad_backward, link, precedence, write_weights, read_weights)
    )
    outputs = tuple(torch.empty_like(t) for t in inputs[3:])
    _call("linkage_backward", inputs, (B, N, R), outputs)
    return outputs
