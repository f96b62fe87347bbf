// The per-task body of the fused meta-gradient CUDA kernel (kernels/cuda/fused_meta_gradient.cu),
// written once for the device and for a host emulation of one thread block
// (tests/cuda/fused_meta_gradient_emulation_test.cpp runs it on host threads against the tape, so the
// kernel's arithmetic, indexing and barriers are checked without a GPU). Math:
// docs/fused-meta-gradient.md; contract: kernels/fused_meta_gradient.h.
//
// A block context `Ctx` supplies tid(), threads(), sync() (a block barrier), sum(v) (a block-wide sum
// in a fixed order, returned to every thread; every thread must call it) and report_label(value,
// position, bound) (first error wins).
//
// Shared memory of a block, in elements of T; R = n rows (query rows pass through in chunks of R);
// ld(w) = w | 1 (odd row strides keep the rows of a column in distinct banks):
//   X      (R, ld(in))      the rows of the current pass (A_0)
//   per layer l = 0..L-1, o = sizes[l+1]:
//     Z_l  (R, ld(o))       z_l, the pre-activation (last layer: the model output)
//     D_l  (R, ld(o))       delta_l = dL/dz_l
//     RZ_l (R, ld(o))       R{z_l}
//     RD_l (R, ld(o))       R{delta_l}
//   per hidden layer l = 1..L-1, h = sizes[l]:
//     A_l  (R, ld(h))       a_l = f(z_{l-1})
//     E_l  (R, ld(h))       e_l = dL/da_l
//     RA_l (R, ld(h))       R{a_l} = f'(z_{l-1}) (.) R{z_{l-1}}
//   S1, S2 (stage_k, ld(widest output))  32-column chunks of W_l^T and U_l^T (block_gemm_nt)
// The parameters stay in global memory (workspace slots; L2- and L1-resident at these sizes); the
// products with W^T or U^T stage them through S1, S2 so that their global reads are coalesced, the
// products with W or U read rows of them directly (coalesced as they are).
//
// Workspace row of a task (elements of T, Layout::workspace_floats):
//   U        P              u_s = eta_s (.) v_{s+1}
//   scratch  2 P            the running theta of a forward sweep (ping-pong)
//   ckpt     (S - 1) P      theta at the first step of every segment but the last (S segments)
//   seg_th   seg P          theta_s of the steps of the segment being reversed
//   seg_st   seg St         per step of that segment: Z_l, D_l (n, sizes[l+1]) for every layer, then
//                           E_l (n, sizes[l]) for l = 1..L-1, unpadded
// seg = K when checkpoint_every = 1 (every step kept, nothing replayed), else min(checkpoint_every, K);
// S = ceil(K / seg). The last segment's states are kept by the forward sweep; every earlier segment
// is replayed once from its checkpoint. v_s = dF/dtheta_s accumulates in place in the task's
// grad_init row.
//
// Order of one task (phases separated by ctx.sync()):
//   zero v, grad_rates, grad_support_x, grad_query_x
//   forward sweep s = 0..K-1: inner_step (support forward, loss gradient, backward, theta_{s+1})
//   query pass at theta_K: losses[1], query_out, v = w_K grad L_Q, grad_query_x
//   reverse, segment by segment (last first): replay (not the last), then for s down the segment:
//     reverse_step: U = eta_s v, the rate gradients -<g_s, v_{s+1}>, v -= H_s U (second order:
//     R-forward, R at the loss, R-backward), grad_support_x -= R{e_0}; then the query pass at
//     theta_s when s >= 1 and w_s != 0
//   an out-of-range label anywhere: every output of the task is NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/fused_activation.h"
#include "kernels/fused_meta_gradient.h"

#if defined(__CUDACC__)
#define METATAPE_FMG_FN __device__ __forceinline__
#define METATAPE_FMG_UNROLL _Pragma("unroll")
#else
#define METATAPE_FMG_FN inline
#define METATAPE_FMG_UNROLL
#endif

namespace metatape::kernels::fmg {

constexpr int max_layers = fused_max_sizes - 1;
constexpr int max_steps = 64;  // query weights travel in the kernel's parameters
constexpr int stage_k = 32;    // columns of a weight matrix staged per chunk (block_gemm_nt)

struct Layout {
  int layers = 0;
  int sizes[fused_max_sizes] = {};
  int ld[fused_max_sizes] = {};  // ld[l] = sizes[l] | 1: the padded row stride of width sizes[l]
  int w_off[max_layers] = {};    // W_l in the flat parameter row; b_l at w_off[l] + sizes[l+1] * sizes[l]
  int params = 0;
  int rate_count = 0;  // R of grad_rates (0 with scalar rates)
  int n = 0, m = 0, rows = 0;
  int steps = 0, seg = 0, segments = 0;
  int activation = 0, loss = 0, rates = 0, fault = 0;
  bool second_order = true, input_grads = false, shared_init = true, query_out = false;
  double lr = 0.0;
  double query_weights[max_steps] = {};  // w_s at [s - 1]
  // Shared memory (element offsets).
  int act_off[max_layers] = {};                         // A_l; act_off[0] is X
  int e_off[max_layers] = {}, ra_off[max_layers] = {};  // l = 1..L-1
  int z_off[max_layers] = {}, d_off[max_layers] = {}, rz_off[max_layers] = {}, rd_off[max_layers] = {};
  int stage_off = 0, stage_ld = 0;  // two (stage_k, stage_ld) staging buffers, stage_ld = widest output | 1
  long long shared_floats = 0;
  // Workspace (element offsets within a task's row).
  long long u_off = 0, scratch_off = 0, ckpt_off = 0, seg_th_off = 0, seg_st_off = 0, state_floats = 0;
  long long sz_off[max_layers] = {}, sd_off[max_layers] = {}, se_off[max_layers] = {};  // within a state
  long long workspace_floats = 0;
  long long workspace_stride = 0;  // elements between task rows (>= workspace_floats)
};

// Empty when the config is one the kernel's layout can describe, else what is wrong (before any limit
// of the device).
inline std::string config_problem(const FusedMetaGradientConfig& c, std::int64_t n, std::int64_t m) {
  const std::string op = "fused_meta_gradient: ";
  if (c.sizes.size() < 2 || c.sizes.size() > static_cast<std::size_t>(fused_max_sizes)) {
    return op + "needs 2.." + std::to_string(fused_max_sizes) + " layer sizes (in, hidden..., out), got " +
           std::to_string(c.sizes.size());
  }
  for (auto s : c.sizes) {
    if (s <= 0) return op + "layer sizes must be positive, got " + std::to_string(s);
  }
  if (c.steps < 1) return op + "steps must be >= 1, got " + std::to_string(c.steps);
  if (c.checkpoint_every < 1) {
    return op + "checkpoint_every must be >= 1, got " + std::to_string(c.checkpoint_every);
  }
  if (!c.query_weights.empty() && c.query_weights.size() != static_cast<std::size_t>(c.steps)) {
    return op + "query_weights has " + std::to_string(c.query_weights.size()) + " entries, steps is " +
           std::to_string(c.steps) + " (give one weight per inner step, or none)";
  }
  if (n < 1 || m < 1) {
    return op + "needs at least one support and one query row, got " + std::to_string(n) + " and " + std::to_string(m);
  }
  return {};
}

// The kernel's layout for a valid config (config_problem empty). Sizes are computed in 64 bits; the
// caller checks them against the int32 and device limits (kernels/cuda/fused_meta_gradient.cu).
inline Layout make_layout(const FusedMetaGradientConfig& c, std::int64_t n, std::int64_t m, bool shared_init,
                          bool query_out) {
  Layout p;
  p.layers = static_cast<int>(c.sizes.size()) - 1;
  const int L = p.layers;
  std::int64_t flat = 0;
  for (int l = 0; l <= L; ++l) {
    p.sizes[l] = static_cast<int>(c.sizes[static_cast<std::size_t>(l)]);
    p.ld[l] = p.sizes[l] | 1;
  }
  for (int l = 0; l < L; ++l) {
    p.w_off[l] = static_cast<int>(flat);
    flat += c.sizes[static_cast<std::size_t>(l) + 1] * (c.sizes[static_cast<std::size_t>(l)] + 1);
  }
  p.params = static_cast<int>(flat);
  p.n = static_cast<int>(n);
  p.m = static_cast<int>(m);
  p.rows = p.n;
  p.steps = c.steps;
  p.seg = c.checkpoint_every == 1 ? c.steps : (c.checkpoint_every < c.steps ? c.checkpoint_every : c.steps);
  p.segments = (p.steps + p.seg - 1) / p.seg;
  p.activation = static_cast<int>(c.activation);
  p.loss = static_cast<int>(c.loss);
  p.rates = static_cast<int>(c.rates);
  p.fault = static_cast<int>(c.fault);
  p.second_order = c.second_order;
  p.input_grads = c.input_grads;
  p.shared_init = shared_init;
  p.query_out = query_out;
  p.lr = c.lr;
  p.rate_count = c.rates == FusedRates::per_tensor_step ? 2 * L * c.steps
                 : c.rates == FusedRates::per_parameter ? p.params
                                                        : 0;
  for (int s = 0; s < c.steps && s < max_steps; ++s) {
    p.query_weights[s] =
        c.query_weights.empty() ? (s + 1 == c.steps ? 1.0 : 0.0) : c.query_weights[static_cast<std::size_t>(s)];
  }
  // Shared memory.
  const std::int64_t R = p.rows;
  std::int64_t at = 0;
  p.act_off[0] = 0;
  at += R * p.ld[0];
  for (int l = 0; l < L; ++l) {
    const std::int64_t o = p.ld[l + 1];
    p.z_off[l] = static_cast<int>(at);
    at += R * o;
    p.d_off[l] = static_cast<int>(at);
    at += R * o;
    p.rz_off[l] = static_cast<int>(at);
    at += R * o;
    p.rd_off[l] = static_cast<int>(at);
    at += R * o;
  }
  for (int l = 1; l < L; ++l) {
    const std::int64_t h = p.ld[l];
    p.act_off[l] = static_cast<int>(at);
    at += R * h;
    p.e_off[l] = static_cast<int>(at);
    at += R * h;
    p.ra_off[l] = static_cast<int>(at);
    at += R * h;
  }
  int widest = 0;
  for (int l = 0; l < L; ++l) widest = p.sizes[l + 1] > widest ? p.sizes[l + 1] : widest;
  p.stage_ld = widest | 1;
  p.stage_off = static_cast<int>(at);
  at += 2LL * stage_k * p.stage_ld;
  p.shared_floats = at;
  // Workspace.
  std::int64_t st = 0;
  for (int l = 0; l < L; ++l) {
    p.sz_off[l] = st;
    st += n * p.sizes[l + 1];
    p.sd_off[l] = st;
    st += n * p.sizes[l + 1];
  }
  for (int l = 1; l < L; ++l) {
    p.se_off[l] = st;
    st += n * p.sizes[l];
  }
  p.state_floats = st;
  std::int64_t w = 0;
  p.u_off = w;
  w += flat;
  p.scratch_off = w;
  w += 2 * flat;
  p.ckpt_off = w;
  w += static_cast<std::int64_t>(p.segments - 1) * flat;
  p.seg_th_off = w;
  w += static_cast<std::int64_t>(p.seg) * flat;
  p.seg_st_off = w;
  w += static_cast<std::int64_t>(p.seg) * st;
  p.workspace_floats = w;
  p.workspace_stride = w;
  return p;
}

// Every pointer is the whole tensor (all tasks); null where the contract allows it.
template <class T>
struct Pointers {
  const T* init = nullptr;
  const T* rates = nullptr;
  const T* support_x = nullptr;
  const std::int64_t* support_labels = nullptr;  // cross-entropy
  const T* support_targets = nullptr;            // mse
  const T* query_x = nullptr;
  const std::int64_t* query_labels = nullptr;
  const T* query_targets = nullptr;
  T* grad_init = nullptr;
  T* grad_rates = nullptr;
  T* grad_support_x = nullptr;
  T* grad_query_x = nullptr;
  T* losses = nullptr;
  T* query_out = nullptr;
  T* workspace = nullptr;
};

METATAPE_FMG_FN float fmg_exp(float x) { return ::expf(x); }
METATAPE_FMG_FN double fmg_exp(double x) { return ::exp(x); }
METATAPE_FMG_FN float fmg_log(float x) { return ::logf(x); }
METATAPE_FMG_FN double fmg_log(double x) { return ::log(x); }
template <class T>
METATAPE_FMG_FN T fmg_nan() {
  return static_cast<T>(NAN);
}
METATAPE_FMG_FN int fmg_min(int a, int b) { return a < b ? a : b; }

// C (M x N) = sum_k a1(m, k) b1(k, n) [K1 terms] + sum_k a2(m, k) b2(k, n) [K2 terms], handed to
// epi(m, n, value) once per element. A thread owns a TM x TN tile of interleaved rows and columns
// (rows tm, tm + mq, ...; columns tn, tn + nq, ...). Each element is summed in a fixed order by one
// thread (deterministic). No synchronisation inside.
template <int TM, int TN, class T, class Ctx, class A1, class B1, class A2, class B2, class Epi>
METATAPE_FMG_FN void block_gemm2(Ctx& ctx, int M, int N, int K1, A1 a1, B1 b1, int K2, A2 a2, B2 b2, Epi epi) {
  if (M <= 0 || N <= 0) return;
  const int mq = (M + TM - 1) / TM, nq = (N + TN - 1) / TN;
  for (int tile = ctx.tid(); tile < mq * nq; tile += ctx.threads()) {
    const int tm = tile / nq, tn = tile % nq;
    int ms[TM], ns[TN];
    METATAPE_FMG_UNROLL
    for (int i = 0; i < TM; ++i) ms[i] = fmg_min(tm + i * mq, M - 1);
    METATAPE_FMG_UNROLL
    for (int j = 0; j < TN; ++j) ns[j] = fmg_min(tn + j * nq, N - 1);
    T acc[TM][TN];
    METATAPE_FMG_UNROLL
    for (int i = 0; i < TM; ++i) {
      METATAPE_FMG_UNROLL
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    }
    for (int k = 0; k < K1; ++k) {
      T av[TM], bv[TN];
      METATAPE_FMG_UNROLL
      for (int i = 0; i < TM; ++i) av[i] = a1(ms[i], k);
      METATAPE_FMG_UNROLL
      for (int j = 0; j < TN; ++j) bv[j] = b1(k, ns[j]);
      METATAPE_FMG_UNROLL
      for (int i = 0; i < TM; ++i) {
        METATAPE_FMG_UNROLL
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
    for (int k = 0; k < K2; ++k) {
      T av[TM], bv[TN];
      METATAPE_FMG_UNROLL
      for (int i = 0; i < TM; ++i) av[i] = a2(ms[i], k);
      METATAPE_FMG_UNROLL
      for (int j = 0; j < TN; ++j) bv[j] = b2(k, ns[j]);
      METATAPE_FMG_UNROLL
      for (int i = 0; i < TM; ++i) {
        METATAPE_FMG_UNROLL
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
    METATAPE_FMG_UNROLL
    for (int i = 0; i < TM; ++i) {
      const int m = tm + i * mq;
      if (m >= M) continue;
      METATAPE_FMG_UNROLL
      for (int j = 0; j < TN; ++j) {
        const int n = tn + j * nq;
        if (n < N) epi(m, n, acc[i][j]);
      }
    }
  }
}

template <int TM, int TN, class T, class Ctx, class A, class B, class Epi>
METATAPE_FMG_FN void block_gemm(Ctx& ctx, int M, int N, int K, A a, B b, Epi epi) {
  block_gemm2<TM, TN, T>(ctx, M, N, K, a, b, 0, a, b, epi);
}

// C (M x N) = sum_k a1[m lda + k] b1[n K + k] (when a1) + sum_k a2[m lda + k] b2[n K + k] (when a2),
// handed to epi(m, n, value): A in shared memory, B an (N, K) row-major matrix in global memory (a
// weight: C = A B^T). B is staged through shared memory (s1, s2: stage_k rows of stride ldb >= N | 1,
// transposed) in chunks of stage_k columns, read coalesced; the inner loop reads shared memory only.
// Tiles as block_gemm2, the k order fixed (deterministic). Every thread of the block must call it:
// it has barriers inside, and ends after one (s1, s2 may be reused at once).
template <int TM, int TN, class T, class Ctx, class Epi>
METATAPE_FMG_FN void block_gemm_nt(Ctx& ctx, int M, int N, int K, const T* a1, const T* b1, const T* a2, const T* b2,
                                   int lda, T* s1, T* s2, int ldb, Epi epi) {
  if (M <= 0 || N <= 0) return;
  const int mq = (M + TM - 1) / TM, nq = (N + TN - 1) / TN;
  const int tiles = mq * nq;
  const int rounds = (tiles + ctx.threads() - 1) / ctx.threads();
  for (int round = 0; round < rounds; ++round) {
    const int tile = round * ctx.threads() + ctx.tid();
    const bool active = tile < tiles;
    const int tm = active ? tile / nq : 0, tn = active ? tile % nq : 0;
    int ms[TM], ns[TN];
    METATAPE_FMG_UNROLL
    for (int i = 0; i < TM; ++i) ms[i] = fmg_min(tm + i * mq, M - 1);
    METATAPE_FMG_UNROLL
    for (int j = 0; j < TN; ++j) ns[j] = fmg_min(tn + j * nq, N - 1);
    T acc[TM][TN];
    METATAPE_FMG_UNROLL
    for (int i = 0; i < TM; ++i) {
      METATAPE_FMG_UNROLL
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    }
    for (int k0 = 0; k0 < K; k0 += stage_k) {
      const int kc = fmg_min(stage_k, K - k0);
      ctx.sync();  // the previous chunk (or the caller's last use of s1, s2) is done
      for (int idx = ctx.tid(); idx < N * kc; idx += ctx.threads()) {
        const int n = idx / kc, kk = idx % kc;
        if (a1) s1[kk * ldb + n] = b1[n * K + k0 + kk];
        if (a2) s2[kk * ldb + n] = b2[n * K + k0 + kk];
      }
      ctx.sync();
      if (!active) continue;
      if (a1) {
        for (int kk = 0; kk < kc; ++kk) {
          T av[TM], bv[TN];
          METATAPE_FMG_UNROLL
          for (int i = 0; i < TM; ++i) av[i] = a1[ms[i] * lda + k0 + kk];
          METATAPE_FMG_UNROLL
          for (int j = 0; j < TN; ++j) bv[j] = s1[kk * ldb + ns[j]];
          METATAPE_FMG_UNROLL
          for (int i = 0; i < TM; ++i) {
            METATAPE_FMG_UNROLL
            for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
          }
        }
      }
      if (a2) {
        for (int kk = 0; kk < kc; ++kk) {
          T av[TM], bv[TN];
          METATAPE_FMG_UNROLL
          for (int i = 0; i < TM; ++i) av[i] = a2[ms[i] * lda + k0 + kk];
          METATAPE_FMG_UNROLL
          for (int j = 0; j < TN; ++j) bv[j] = s2[kk * ldb + ns[j]];
          METATAPE_FMG_UNROLL
          for (int i = 0; i < TM; ++i) {
            METATAPE_FMG_UNROLL
            for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
          }
        }
      }
    }
    if (active) {
      METATAPE_FMG_UNROLL
      for (int i = 0; i < TM; ++i) {
        const int m = tm + i * mq;
        if (m >= M) continue;
        METATAPE_FMG_UNROLL
        for (int j = 0; j < TN; ++j) {
          const int n = tn + j * nq;
          if (n < N) epi(m, n, acc[i][j]);
        }
      }
    }
  }
  ctx.sync();
}

// epi(j, sum over r < rows of a(r, j)) for j < N, each column summed in row order by one thread.
template <class T, class Ctx, class A, class Epi>
METATAPE_FMG_FN void block_colsum(Ctx& ctx, int rows, int N, A a, Epi epi) {
  for (int j = ctx.tid(); j < N; j += ctx.threads()) {
    T s = T(0);
    for (int r = 0; r < rows; ++r) s += a(r, j);
    epi(j, s);
  }
}

template <class T, class Ctx>
class TaskRun {
 public:
  METATAPE_FMG_FN TaskRun(const Layout& layout, Ctx& ctx, const Pointers<T>& g, T* sm, long long task)
      : p_(layout), ctx_(ctx), g_(g), sm_(sm), task_(task) {
    const long long P = p_.params, n = p_.n, m = p_.m, in = p_.sizes[0], out = p_.sizes[p_.layers];
    theta0_ = g_.init + (p_.shared_init ? 0 : task * P);
    v_ = g_.grad_init + task * P;
    ws_ = g_.workspace + task * p_.workspace_stride;
    gr_ = g_.grad_rates ? g_.grad_rates + task * p_.rate_count : nullptr;
    sx_ = g_.support_x + task * n * in;
    qx_ = g_.query_x + task * m * in;
    sl_ = g_.support_labels ? g_.support_labels + task * n : nullptr;
    ql_ = g_.query_labels ? g_.query_labels + task * m : nullptr;
    st_ = g_.support_targets ? g_.support_targets + task * n * out : nullptr;
    qt_ = g_.query_targets ? g_.query_targets + task * m * out : nullptr;
    gsx_ = p_.input_grads ? g_.grad_support_x + task * n * in : nullptr;
    gqx_ = p_.input_grads ? g_.grad_query_x + task * m * in : nullptr;
    qout_ = p_.query_out ? g_.query_out + task * m * out : nullptr;
  }

  METATAPE_FMG_FN void run() {
    const int K = p_.steps, P = p_.params;
    fill(v_, P, T(0));
    if (gr_) fill(gr_, p_.rate_count, T(0));
    if (gsx_) fill(gsx_, p_.n * p_.sizes[0], T(0));
    if (gqx_) fill(gqx_, p_.m * p_.sizes[0], T(0));
    ctx_.sync();

    // Forward sweep.
    const int last0 = (p_.segments - 1) * p_.seg;
    const T* cur = theta0_;
    for (int s = 0; s < K; ++s) {
      if (s % p_.seg == 0 && s < last0) copy(cur, ckpt(s / p_.seg), P);
      if (s >= last0) copy(cur, seg_theta(s - last0), P);
      T* dst = scratch((s + 1) & 1);
      inner_step(s, cur, dst, s >= last0 ? seg_state(s - last0) : nullptr, s == 0);
      cur = dst;
    }
    query_pass(cur, static_cast<T>(p_.query_weights[K - 1]), true);

    // Reverse, segment by segment.
    for (int j = p_.segments - 1; j >= 0; --j) {
      const int a = j * p_.seg;
      const int b = fmg_min(a + p_.seg, K);
      if (j < p_.segments - 1) {
        const T* th = ckpt(j);
        for (int s = a; s < b; ++s) {
          copy(th, seg_theta(s - a), P);
          T* dst = s + 1 < b ? scratch((s + 1) & 1) : nullptr;
          inner_step(s, th, dst, seg_state(s - a), false);
          th = dst;
        }
      }
      for (int s = b - 1; s >= a; --s) {
        reverse_step(s, seg_theta(s - a), seg_state(s - a));
        const T w = static_cast<T>(p_.query_weights[s > 0 ? s - 1 : 0]);
        if (s >= 1 && w != T(0)) query_pass(seg_theta(s - a), w, false);
      }
    }

    // An out-of-range label anywhere: every output of the task is NaN.
    const T bad = ctx_.sum(bad_ ? T(1) : T(0));
    if (bad != T(0)) {
      const T nan = fmg_nan<T>();
      fill(v_, P, nan);
      if (gr_) fill(gr_, p_.rate_count, nan);
      if (gsx_) fill(gsx_, p_.n * p_.sizes[0], nan);
      if (gqx_) fill(gqx_, p_.m * p_.sizes[0], nan);
      if (qout_) fill(qout_, p_.m * p_.sizes[p_.layers], nan);
      if (ctx_.tid() == 0) {
        g_.losses[task_ * 2] = nan;
        g_.losses[task_ * 2 + 1] = nan;
      }
    }
  }

 private:
  const Layout& p_;
  Ctx& ctx_;
  Pointers<T> g_;
  T* sm_;
  long long task_;
  const T* theta0_;
  T* v_;
  T* ws_;
  T* gr_;
  const T *sx_, *qx_;
  const std::int64_t *sl_, *ql_;
  const T *st_, *qt_;
  T *gsx_, *gqx_, *qout_;
  bool bad_ = false;  // this thread saw an out-of-range label

  METATAPE_FMG_FN T* ckpt(int j) const { return ws_ + p_.ckpt_off + static_cast<long long>(j) * p_.params; }
  METATAPE_FMG_FN T* seg_theta(int i) const { return ws_ + p_.seg_th_off + static_cast<long long>(i) * p_.params; }
  METATAPE_FMG_FN T* seg_state(int i) const {
    return ws_ + p_.seg_st_off + static_cast<long long>(i) * p_.state_floats;
  }
  METATAPE_FMG_FN T* scratch(int i) const { return ws_ + p_.scratch_off + static_cast<long long>(i) * p_.params; }
  METATAPE_FMG_FN T* u() const { return ws_ + p_.u_off; }
  METATAPE_FMG_FN T* stage(int i) const { return sm_ + p_.stage_off + i * stage_k * p_.stage_ld; }

  METATAPE_FMG_FN void fill(T* dst, int count, T value) {
    for (int i = ctx_.tid(); i < count; i += ctx_.threads()) dst[i] = value;
  }
  METATAPE_FMG_FN void copy(const T* src, T* dst, int count) {
    for (int i = ctx_.tid(); i < count; i += ctx_.threads()) dst[i] = src[i];
  }

  // eta_s of parameter `idx` (layer l, weight or bias).
  METATAPE_FMG_FN T eta(int l, int bias, int s, int idx) const {
    if (p_.rates == static_cast<int>(FusedRates::per_tensor_step)) return g_.rates[(2 * l + bias) * p_.steps + s];
    if (p_.rates == static_cast<int>(FusedRates::per_parameter)) return g_.rates[idx];
    return static_cast<T>(p_.lr);
  }

  METATAPE_FMG_FN ActivationValues<T> act(T z) const {
    return activation_values<T>(static_cast<FusedActivation>(p_.activation), z);
  }

  // `count` rows of the input (unpadded, row-major) into X. No barrier.
  METATAPE_FMG_FN void load_x(const T* src, int count) {
    const int in = p_.sizes[0], ld = p_.ld[0];
    T* x = sm_ + p_.act_off[0];
    for (int i = ctx_.tid(); i < count * in; i += ctx_.threads()) x[(i / in) * ld + i % in] = src[i];
  }

  // Z_l and A_{l+1} for `count` rows of X at parameters th. A barrier after every layer.
  METATAPE_FMG_FN void forward(const T* th, int count) {
    for (int l = 0; l < p_.layers; ++l) {
      const int in = p_.sizes[l], out = p_.sizes[l + 1], lda = p_.ld[l], ldz = p_.ld[l + 1];
      const T* w = th + p_.w_off[l];
      const T* bias = w + out * in;
      const T* a = sm_ + p_.act_off[l];
      T* z = sm_ + p_.z_off[l];
      T* an = l + 1 < p_.layers ? sm_ + p_.act_off[l + 1] : nullptr;
      const auto fa = static_cast<FusedActivation>(p_.activation);
      block_gemm_nt<4, 2, T>(ctx_, count, out, in, a, w, nullptr, nullptr, lda, stage(0), stage(1), p_.stage_ld,
                             [=](int r, int j, T v) {
                               const T zz = v + bias[j];
                               z[r * ldz + j] = zz;
                               if (an) an[r * ldz + j] = activation_values<T>(fa, zz).f;
                             });
    }
  }

  // D_{L-1} = weight * dL/do for `count` rows starting at row `row0` of a pass over `total` rows
  // (labels / targets of that pass); adds the rows' loss terms to `loss`; writes the outputs to
  // `qout` when given. Ends with a barrier.
  METATAPE_FMG_FN void output_delta(int count, int row0, int total, const std::int64_t* labels, const T* targets,
                                    T weight, T& loss, T* qout, long long position0) {
    const int L = p_.layers, out = p_.sizes[L], ldo = p_.ld[L];
    const T* z = sm_ + p_.z_off[L - 1];
    T* d = sm_ + p_.d_off[L - 1];
    if (p_.loss == static_cast<int>(FusedLoss::cross_entropy)) {
      const T scale = weight / static_cast<T>(total);
      for (int r = ctx_.tid(); r < count; r += ctx_.threads()) {
        const T* o = z + r * ldo;
        T* dr = d + r * ldo;
        if (qout) {
          for (int c = 0; c < out; ++c) qout[static_cast<long long>(row0 + r) * out + c] = o[c];
        }
        const std::int64_t label = labels[row0 + r];
        if (label < 0 || label >= out) {
          ctx_.report_label(static_cast<long long>(label), position0 + row0 + r, out);
          bad_ = true;
          for (int c = 0; c < out; ++c) dr[c] = fmg_nan<T>();
          loss += fmg_nan<T>();
          continue;
        }
        T mx = o[0];
        for (int c = 1; c < out; ++c) mx = o[c] > mx ? o[c] : mx;
        T sum = T(0);
        for (int c = 0; c < out; ++c) sum += fmg_exp(o[c] - mx);
        const T inv = T(1) / sum;
        // -log softmax(o)[y] = log sum - (o_y - max)
        loss += fmg_log(sum) - (o[label] - mx);
        for (int c = 0; c < out; ++c) {
          dr[c] = (fmg_exp(o[c] - mx) * inv - (c == label ? T(1) : T(0))) * scale;
        }
      }
    } else {
      const T scale = weight * T(2) / static_cast<T>(static_cast<long long>(total) * out);
      for (int i = ctx_.tid(); i < count * out; i += ctx_.threads()) {
        const int r = i / out, c = i % out;
        const T o = z[r * ldo + c];
        if (qout) qout[static_cast<long long>(row0 + r) * out + c] = o;
        const T diff = o - targets[static_cast<long long>(row0 + r) * out + c];
        loss += diff * diff;
        d[r * ldo + c] = scale * diff;
      }
    }
    ctx_.sync();
  }

  // E_l = D_l W_l and D_{l-1} = E_l (.) f'(z_{l-1}) for l = L-1..1. Barrier after every layer.
  METATAPE_FMG_FN void backward(const T* th, int count) {
    const auto fa = static_cast<FusedActivation>(p_.activation);
    for (int l = p_.layers - 1; l >= 1; --l) {
      const int in = p_.sizes[l], out = p_.sizes[l + 1], ldi = p_.ld[l], ldo = p_.ld[l + 1];
      const T* w = th + p_.w_off[l];
      const T* dl = sm_ + p_.d_off[l];
      const T* zp = sm_ + p_.z_off[l - 1];
      T* e = sm_ + p_.e_off[l];
      T* dp = sm_ + p_.d_off[l - 1];
      block_gemm<4, 2, T>(
          ctx_, count, in, out, [=](int r, int j) { return dl[r * ldo + j]; },
          [=](int j, int k) { return w[j * in + k]; },
          [=](int r, int k, T v) {
            e[r * ldi + k] = v;
            dp[r * ldi + k] = v * activation_values<T>(fa, zp[r * ldi + k]).d1;
          });
      ctx_.sync();
    }
  }

  // epi(idx, bias, g) for every parameter of layer l, g = (D_l^T A_l)(j, k) or colsum(D_l)(j), over
  // `count` rows. No barrier.
  template <class Epi>
  METATAPE_FMG_FN void layer_grad(int l, int count, Epi epi) {
    const int in = p_.sizes[l], out = p_.sizes[l + 1], lda = p_.ld[l], ldo = p_.ld[l + 1], w0 = p_.w_off[l];
    const T* dl = sm_ + p_.d_off[l];
    const T* a = sm_ + p_.act_off[l];
    block_gemm<4, 4, T>(
        ctx_, out, in, count, [=](int j, int r) { return dl[r * ldo + j]; },
        [=](int r, int k) { return a[r * lda + k]; }, [&](int j, int k, T g) { epi(w0 + j * in + k, 0, g); });
    block_colsum<T>(
        ctx_, count, out, [=](int r, int j) { return dl[r * ldo + j]; },
        [&](int j, T g) { epi(w0 + out * in + j, 1, g); });
  }

  // One inner SGD step on the support rows at theta_s = th: dst = th - eta_s (.) g_s (when dst),
  // Z, D, E into `state` (when given), losses[0] = L_S(th) (when loss0). Ends with a barrier.
  METATAPE_FMG_FN void inner_step(int s, const T* th, T* dst, T* state, bool loss0) {
    load_x(sx_, p_.n);
    ctx_.sync();
    forward(th, p_.n);
    T loss = T(0);
    output_delta(p_.n, 0, p_.n, sl_, st_, T(1), loss, nullptr, task_ * p_.n);
    if (loss0) {
      const T total = ctx_.sum(loss);
      if (ctx_.tid() == 0) g_.losses[task_ * 2] = total / loss_count(p_.n);
    }
    backward(th, p_.n);
    if (dst) {
      for (int l = 0; l < p_.layers; ++l) {
        layer_grad(l, p_.n, [&](int idx, int bias, T g) { dst[idx] = th[idx] - eta(l, bias, s, idx) * g; });
      }
    }
    if (state) {
      for (int l = 0; l < p_.layers; ++l) {
        const int o = p_.sizes[l + 1];
        save(sm_ + p_.z_off[l], p_.ld[l + 1], state + p_.sz_off[l], o);
        save(sm_ + p_.d_off[l], p_.ld[l + 1], state + p_.sd_off[l], o);
      }
      for (int l = 1; l < p_.layers; ++l) save(sm_ + p_.e_off[l], p_.ld[l], state + p_.se_off[l], p_.sizes[l]);
    }
    ctx_.sync();
  }

  METATAPE_FMG_FN T loss_count(int rows) const {
    return p_.loss == static_cast<int>(FusedLoss::cross_entropy)
               ? static_cast<T>(rows)
               : static_cast<T>(static_cast<long long>(rows) * p_.sizes[p_.layers]);
  }

  // n rows of width `width`: padded shared (stride ld) <-> unpadded workspace. No barrier.
  METATAPE_FMG_FN void save(const T* src, int ld, T* dst, int width) {
    for (int i = ctx_.tid(); i < p_.n * width; i += ctx_.threads()) dst[i] = src[(i / width) * ld + i % width];
  }
  METATAPE_FMG_FN void restore(const T* src, T* dst, int ld, int width) {
    for (int i = ctx_.tid(); i < p_.n * width; i += ctx_.threads()) dst[(i / width) * ld + i % width] = src[i];
  }

  // Forward (and, when weight != 0, backward) over the query rows at th, in chunks of R rows:
  // v += weight grad L_Q(th), grad_query_x += weight e_0; final: losses[1] and query_out.
  METATAPE_FMG_FN void query_pass(const T* th, T weight, bool final_pass) {
    const int L = p_.layers, R = p_.rows, in = p_.sizes[0];
    T loss = T(0);
    for (int row0 = 0; row0 < p_.m; row0 += R) {
      const int count = fmg_min(R, p_.m - row0);
      load_x(qx_ + static_cast<long long>(row0) * in, count);
      ctx_.sync();
      forward(th, count);
      output_delta(count, row0, p_.m, ql_, qt_, weight, loss, final_pass ? qout_ : nullptr, task_ * p_.m);
      if (weight == T(0)) continue;
      backward(th, count);
      for (int l = 0; l < L; ++l) {
        T* v = v_;
        layer_grad(l, count, [&](int idx, int, T g) { v[idx] += g; });
      }
      if (gqx_) {
        const int out0 = p_.sizes[1], ldo = p_.ld[1];
        const T* d0 = sm_ + p_.d_off[0];
        const T* w = th + p_.w_off[0];
        T* gq = gqx_ + static_cast<long long>(row0) * in;
        block_gemm<4, 2, T>(
            ctx_, count, in, out0, [=](int r, int j) { return d0[r * ldo + j]; },
            [=](int j, int k) { return w[j * in + k]; }, [=](int r, int k, T e) { gq[r * in + k] += e; });
      }
      ctx_.sync();
    }
    if (final_pass) {
      const T total = ctx_.sum(loss);
      if (ctx_.tid() == 0) g_.losses[task_ * 2 + 1] = total / loss_count(p_.m);
    }
  }

  // The reverse of inner step s at theta_s = th with its saved support state: the rate gradients,
  // then (second order) v -= H_s (eta_s (.) v) and grad_support_x -= R{e_0}. Ends with a barrier.
  METATAPE_FMG_FN void reverse_step(int s, const T* th, const T* state) {
    const int L = p_.layers, n = p_.n;
    const auto fa = static_cast<FusedActivation>(p_.activation);
    T* v = v_;
    T* uu = u();
    // Restore X, Z_l, D_l, E_l; A_l = f(z_{l-1}).
    load_x(sx_, n);
    for (int l = 0; l < L; ++l) {
      restore(state + p_.sz_off[l], sm_ + p_.z_off[l], p_.ld[l + 1], p_.sizes[l + 1]);
      restore(state + p_.sd_off[l], sm_ + p_.d_off[l], p_.ld[l + 1], p_.sizes[l + 1]);
    }
    for (int l = 1; l < L; ++l) {
      restore(state + p_.se_off[l], sm_ + p_.e_off[l], p_.ld[l], p_.sizes[l]);
      const int h = p_.sizes[l], ld = p_.ld[l];
      const T* zs = state + p_.sz_off[l - 1];
      T* a = sm_ + p_.act_off[l];
      for (int i = ctx_.tid(); i < n * h; i += ctx_.threads()) a[(i / h) * ld + i % h] = act(zs[i]).f;
    }
    // U = eta_s (.) v_{s+1} (second order only).
    if (p_.second_order) {
      for (int l = 0; l < L; ++l) {
        const int in = p_.sizes[l], out = p_.sizes[l + 1], w0 = p_.w_off[l];
        for (int i = ctx_.tid(); i < out * (in + 1); i += ctx_.threads()) {
          const int idx = w0 + i;
          uu[idx] = eta(l, i >= out * in ? 1 : 0, s, idx) * v[idx];
        }
      }
    }
    ctx_.sync();
    // dF/deta_s = -g_s (.) v_{s+1}: per parameter summed over steps, per tensor summed over the tensor.
    const bool rate_grads =
        gr_ != nullptr && p_.fault != static_cast<int>(FusedMetaGradientConfig::Fault::drop_rate_gradient);
    if (rate_grads && p_.rates == static_cast<int>(FusedRates::per_parameter)) {
      T* gr = gr_;
      for (int l = 0; l < L; ++l) layer_grad(l, n, [&](int idx, int, T g) { gr[idx] -= g * v[idx]; });
      ctx_.sync();
    } else if (rate_grads && p_.rates == static_cast<int>(FusedRates::per_tensor_step)) {
      for (int l = 0; l < L; ++l) {
        T pw = T(0), pb = T(0);
        layer_grad(l, n, [&](int idx, int bias, T g) { (bias ? pb : pw) += g * v[idx]; });
        const T sw = ctx_.sum(pw);
        const T sb = ctx_.sum(pb);
        if (ctx_.tid() == 0) {
          gr_[(2 * l) * p_.steps + s] = -sw;
          gr_[(2 * l + 1) * p_.steps + s] = -sb;
        }
      }
      // ctx.sum ends with a barrier: v is read by every thread before the HVP below writes it.
    }
    if (!p_.second_order) return;

    // R-forward: R{z_l} = R{a_l} W_l^T + a_l U_l^T + ub_l, R{a_{l+1}} = f'(z_l) (.) R{z_l}.
    for (int l = 0; l < L; ++l) {
      const int in = p_.sizes[l], out = p_.sizes[l + 1], lda = p_.ld[l], ldz = p_.ld[l + 1];
      const T* w = th + p_.w_off[l];
      const T* ul = uu + p_.w_off[l];
      const T* ub = ul + out * in;
      const T* a = sm_ + p_.act_off[l];
      const T* ra = l > 0 ? sm_ + p_.ra_off[l] : nullptr;
      const T* z = sm_ + p_.z_off[l];
      T* rz = sm_ + p_.rz_off[l];
      T* ran = l + 1 < L ? sm_ + p_.ra_off[l + 1] : nullptr;
      block_gemm_nt<4, 2, T>(ctx_, n, out, in, ra, w, a, ul, lda, stage(0), stage(1), p_.stage_ld,
                             [=](int r, int j, T val) {
                               const T rzz = val + ub[j];
                               rz[r * ldz + j] = rzz;
                               if (ran) ran[r * ldz + j] = activation_values<T>(fa, z[r * ldz + j]).d1 * rzz;
                             });
    }
    // R at the loss.
    {
      const int out = p_.sizes[L], ldo = p_.ld[L];
      const T* z = sm_ + p_.z_off[L - 1];
      const T* rz = sm_ + p_.rz_off[L - 1];
      T* rd = sm_ + p_.rd_off[L - 1];
      if (p_.loss == static_cast<int>(FusedLoss::cross_entropy)) {
        // R{delta} = (p (.) R{o} - p (p . R{o})) / n, row by row.
        const T inv_n = T(1) / static_cast<T>(n);
        for (int r = ctx_.tid(); r < n; r += ctx_.threads()) {
          const T* o = z + r * ldo;
          const T* ro = rz + r * ldo;
          T mx = o[0];
          for (int c = 1; c < out; ++c) mx = o[c] > mx ? o[c] : mx;
          T sum = T(0);
          for (int c = 0; c < out; ++c) sum += fmg_exp(o[c] - mx);
          const T inv = T(1) / sum;
          T dot = T(0);
          for (int c = 0; c < out; ++c) dot += fmg_exp(o[c] - mx) * inv * ro[c];
          for (int c = 0; c < out; ++c) rd[r * ldo + c] = fmg_exp(o[c] - mx) * inv * (ro[c] - dot) * inv_n;
        }
      } else {
        const T scale = T(2) / static_cast<T>(static_cast<long long>(n) * out);
        for (int i = ctx_.tid(); i < n * out; i += ctx_.threads()) {
          const int r = i / out, c = i % out;
          rd[r * ldo + c] = scale * rz[r * ldo + c];
        }
      }
      ctx_.sync();
    }
    // R-backward, l = L-1..0: v -= (R{delta_l}^T a_l + delta_l^T R{a_l}, colsum R{delta_l});
    // R{e_l} = R{delta_l} W_l + delta_l U_l; R{delta_{l-1}} = R{e_l} f'(z_{l-1}) + e_l f''(z_{l-1}) R{z_{l-1}};
    // at l = 0 with input gradients: grad_support_x -= R{e_0}.
    const bool drop_term = p_.fault == static_cast<int>(FusedMetaGradientConfig::Fault::drop_hessian_term);
    for (int l = L - 1; l >= 0; --l) {
      const int in = p_.sizes[l], out = p_.sizes[l + 1], lda = p_.ld[l], ldo = p_.ld[l + 1], w0 = p_.w_off[l];
      const T* w = th + w0;
      const T* ul = uu + w0;
      const T* a = sm_ + p_.act_off[l];
      const T* ra = l > 0 ? sm_ + p_.ra_off[l] : nullptr;
      const T* dl = sm_ + p_.d_off[l];
      const T* rdl = sm_ + p_.rd_off[l];
      block_gemm2<4, 4, T>(
          ctx_, out, in, n, [=](int j, int r) { return rdl[r * ldo + j]; },
          [=](int r, int k) { return a[r * lda + k]; }, (l > 0 && !drop_term) ? n : 0,
          [=](int j, int r) { return dl[r * ldo + j]; }, [=](int r, int k) { return ra[r * lda + k]; },
          [=](int j, int k, T val) { v[w0 + j * in + k] -= val; });
      block_colsum<T>(
          ctx_, n, out, [=](int r, int j) { return rdl[r * ldo + j]; },
          [=](int j, T val) { v[w0 + out * in + j] -= val; });
      if (l > 0) {
        const T* zp = sm_ + p_.z_off[l - 1];
        const T* rzp = sm_ + p_.rz_off[l - 1];
        const T* e = sm_ + p_.e_off[l];
        T* rdp = sm_ + p_.rd_off[l - 1];
        block_gemm2<4, 2, T>(
            ctx_, n, in, out, [=](int r, int j) { return rdl[r * ldo + j]; },
            [=](int j, int k) { return w[j * in + k]; }, out, [=](int r, int j) { return dl[r * ldo + j]; },
            [=](int j, int k) { return ul[j * in + k]; },
            [=](int r, int k, T re) {
              const ActivationValues<T> f = activation_values<T>(fa, zp[r * lda + k]);
              rdp[r * lda + k] = re * f.d1 + e[r * lda + k] * f.d2 * rzp[r * lda + k];
            });
      } else if (gsx_) {
        T* gs = gsx_;
        block_gemm2<4, 2, T>(
            ctx_, n, in, out, [=](int r, int j) { return rdl[r * ldo + j]; },
            [=](int j, int k) { return w[j * in + k]; }, out, [=](int r, int j) { return dl[r * ldo + j]; },
            [=](int j, int k) { return ul[j * in + k]; }, [=](int r, int k, T re) { gs[r * in + k] -= re; });
      }
      ctx_.sync();
    }
  }
};

}  // namespace metatape::kernels::fmg
