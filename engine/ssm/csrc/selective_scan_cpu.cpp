// Fused CPU selective scan (Mamba-1 recurrence) for engine/ssm/cpu_kernel.py.
//
// Semantics (docs SCAN.md section 1, prepared inputs: no bias, softplus, D or z):
//   h_{-1} = 0,  h_t = a_t * h_{t-1} + delta_t * u_t * B_t,  a_t = exp(delta_t * A)  (0 at a reset)
//   y_t    = sum_n C_t * h_t
// Layouts, all contiguous, n padded to NP (a multiple of 16) with A = B = C = 0 in the padding:
//   delta, u, y, gy, gdelta, gu : (b, d, l)
//   A                           : (d, NP)
//   Bt, Ct, gBt, gCt            : (b, g, l, NP)   (time-major so the inner n loop is contiguous)
//   reset                       : (b, l) bool, optional
//   ck                          : (b*d, nc-1, NP) state entering chunks 1..nc-1 of Q steps
//                                                 (chunk 0 starts from h = 0)
// The forward walks each (b, d) lane through a time tile with the state in registers, parallel
// over lanes, computing exp once per element. The backward walks time tiles in reverse; per tile
// it is parallel over work items (batch block, group, channel slice), so the gB/gC sums over the
// channels of a group and the gA sums over the batch never race. Inside a chunk it recomputes h
// from the checkpoint into a small buffer, then runs the reverse recurrence
//   lambda_t = gy_t * C_t + a_{t+1} * lambda_{t+1}   (gradient formulas: SCAN.md section 3).
// The work split depends on the shapes only, so results do not depend on the thread count.

#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace {

constexpr int W = 16;        // n is padded to a multiple of W
constexpr int kMaxNP = 256;  // largest supported (padded) n

// ---- Short vectors --------------------------------------------------------------------------
// With GCC or Clang, V<T> is a native-width vector (GNU vector extension: 64 bytes with AVX-512,
// 32 with AVX, 16 otherwise), so the loops over n vectorise without -ffast-math. Other
// compilers (or -DCSSMAMBA_SCALAR) use V<T> = T: the same code, one element at a time.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(CSSMAMBA_SCALAR)
#if defined(__AVX512F__)
#define CSSM_VEC_BYTES 64
#elif defined(__AVX__)
#define CSSM_VEC_BYTES 32
#else
#define CSSM_VEC_BYTES 16
#endif
template <typename T> struct VecT;
// utype: the same vector for unaligned loads and stores through a T*.
template <> struct VecT<float> {
  typedef float type __attribute__((vector_size(CSSM_VEC_BYTES)));
  typedef float utype __attribute__((vector_size(CSSM_VEC_BYTES), aligned(4), may_alias));
  typedef int32_t itype __attribute__((vector_size(CSSM_VEC_BYTES)));
};
template <> struct VecT<double> {
  typedef double type __attribute__((vector_size(CSSM_VEC_BYTES)));
  typedef double utype __attribute__((vector_size(CSSM_VEC_BYTES), aligned(8), may_alias));
  typedef int64_t itype __attribute__((vector_size(CSSM_VEC_BYTES)));
};
// Unroll the short loops over the vectors of one state row, so that the row stays in registers.
#if defined(__clang__)
#define CSSM_UNROLL _Pragma("unroll")
#else
#define CSSM_UNROLL _Pragma("GCC unroll 16")
#endif
#else
template <typename T> struct VecT;
template <> struct VecT<float> { typedef float type; typedef float utype; typedef int32_t itype; };
template <> struct VecT<double> {
  typedef double type;
  typedef double utype;
  typedef int64_t itype;
};
#define CSSM_UNROLL
#endif

template <typename T> using V = typename VecT<T>::type;
template <typename T> constexpr int kVL = static_cast<int>(sizeof(V<T>) / sizeof(T));

template <typename T>
inline V<T> vload(const T* p) {
  return *reinterpret_cast<const typename VecT<T>::utype*>(p);
}
template <typename T>
inline void vstore(T* p, const V<T>& v) {
  *reinterpret_cast<typename VecT<T>::utype*>(p) = v;
}
template <typename T>
inline V<T> vset(T x) {
  return V<T>{} + x;
}
template <typename T>
inline T vlane(const V<T>& v, int i) {
  if constexpr (kVL<T> == 1) {
    (void)i;
    return v;
  } else {
    return v[i];
  }
}
// Sum of the lanes in a fixed pairwise order: halves are added until one lane is left.
#if defined(CSSM_VEC_BYTES) && (defined(__clang__) || __GNUC__ >= 12)
template <typename T, int L> struct VecN {
  typedef T type __attribute__((vector_size(L * sizeof(T))));
};
template <typename T, int L, int... I>
inline T hsum_halves(const typename VecN<T, L>::type& v, std::integer_sequence<int, I...>) {
  if constexpr (L == 2) {
    return v[0] + v[1];
  } else {
    typename VecN<T, L / 2>::type lo = __builtin_shufflevector(v, v, I...);
    typename VecN<T, L / 2>::type hi = __builtin_shufflevector(v, v, (I + L / 2)...);
    return hsum_halves<T, L / 2>(lo + hi, std::make_integer_sequence<int, L / 4>{});
  }
}
template <typename T>
inline T vhsum(const V<T>& v) {
  constexpr int L = kVL<T>;
  return hsum_halves<T, L>(v, std::make_integer_sequence<int, L / 2>{});
}
#else
template <typename T>
inline T vhsum(const V<T>& v) {
  constexpr int L = kVL<T>;
  T a[L];
  for (int i = 0; i < L; ++i) a[i] = vlane<T>(v, i);
  for (int w = L / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) a[i] += a[i + w];
  return a[0];
}
#endif

// exp for float: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
// (truncation error < 6e-9 relative), 2^k built in the exponent bits from the rounding shifter.
// Branch-free. Underflow (x < ln FLT_MIN) gives 0, overflow inf, NaN propagates (p is NaN).
inline V<float> vexp(const V<float>& x) {
  using VF = V<float>;
  using VI = typename VecT<float>::itype;
  const VF lo = vset<float>(-87.33654475f);  // ln(2^-126)
  const VF hi = vset<float>(88.37626267f);   // largest x with round(x / ln2) <= 127
  // No input clamp: outside [lo, hi] the bits below are garbage, and the selects at the end
  // replace them.
  const VF xc = x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  VF t = xc * 1.44269504088896341f + shifter;
  VF kf = t - shifter;
  VF r = xc - kf * 0.693359375f;  // ln2 in two parts, the first exact when multiplied by k
  r = r + kf * 2.12194440e-4f;
  VF p = vset<float>(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  VI ti;
  std::memcpy(&ti, &t, sizeof ti);
  VI e = (ti - (0x4B400000 - 127)) << 23;  // k + 127 in the exponent field
  VF s;
  std::memcpy(&s, &e, sizeof s);
  VF res = p * s;
  res = x < lo ? vset<float>(0.0f) : res;
  res = x > hi ? vset<float>(std::numeric_limits<float>::infinity()) : res;
  return res;
}

// float64 is for gradcheck and reference runs: libm exp, one lane at a time.
template <typename T>
inline V<T> vexp_lanes(const V<T>& x) {
  if constexpr (kVL<T> == 1) {
    return std::exp(x);
  } else {
    V<T> r = x;
    for (int i = 0; i < kVL<T>; ++i) r[i] = std::exp(x[i]);
    return r;
  }
}
inline V<double> vexp(const V<double>& x) { return vexp_lanes<double>(x); }

// One lane (batch bi, channel j) of the forward over [t0, t1); t0 is a multiple of Q.
// hstate (NP) carries the state between tiles (read only when t0 > 0); ck ((nc-1) * NP, may be
// null) receives the checkpoints of chunks 1..nc-1.
template <typename T, int NBC>
void fwd_lane(int64_t t0, int64_t t1, int64_t Q, int nb_rt, const T* __restrict dl,
              const T* __restrict ul, const T* __restrict Ar, const T* __restrict Bg,
              const T* __restrict Cg, const bool* __restrict rs, T* __restrict hstate,
              T* __restrict yl, T* __restrict ck) {
  using VT = V<T>;
  constexpr int VL = kVL<T>;
  const int NP = (NBC > 0 ? NBC : nb_rt) * W;
  const int NV = NP / VL;
  constexpr int CAP = (NBC > 0 ? NBC * W : kMaxNP) / VL;
  const VT zero = vset<T>(T(0));
  VT h[CAP];
  VT Al[CAP];
  for (int v = 0; v < NV; ++v) {
    h[v] = t0 == 0 ? zero : vload(hstate + v * VL);  // h_{-1} = 0; hstate is uninitialised then
    Al[v] = vload(Ar + v * VL);
  }
  for (int64_t cs = t0; cs < t1; cs += Q) {
    const int64_t ce = std::min(cs + Q, t1);
    if (ck != nullptr && cs > 0) {
      T* dst = ck + (cs / Q - 1) * NP;
      for (int v = 0; v < NV; ++v) vstore(dst + v * VL, h[v]);
    }
    for (int64_t t = cs; t < ce; ++t) {
      const T dt = dl[t];
      const T du = dt * ul[t];
      const bool r = rs != nullptr && rs[t];
      const T* __restrict Bt = Bg + t * NP;
      const T* __restrict Ct = Cg + t * NP;
      VT acc = zero;
      CSSM_UNROLL
      for (int v = 0; v < NV; ++v) {
        VT a = vexp(Al[v] * dt);
        a = r ? zero : a;
        h[v] = a * h[v] + du * vload(Bt + v * VL);
        acc = acc + vload(Ct + v * VL) * h[v];
      }
      yl[t] = vhsum<T>(acc);
    }
  }
  for (int v = 0; v < NV; ++v) vstore(hstate + v * VL, h[v]);
}

// One lane of the backward over the tile [T0, T1), chunks in reverse. kap (NP) holds
// a_{t+1} * lambda_{t+1} for the first step after the tile; gA (NP) accumulates dL/dA of the lane
// (per chunk first, then into the total, to keep the float32 sum accurate on long sequences).
// gBd / gCd point at the row of time T0 of the accumulators for gB and gC (row stride NP).
// hbuf ((Q+1) * NP) and abuf (Q * NP) are scratch.
template <typename T, int NBC>
void bwd_lane(int64_t T0, int64_t T1, int64_t Q, int nb_rt, const T* __restrict dl,
              const T* __restrict ul, const T* __restrict gyl, const T* __restrict Ar,
              const T* __restrict Bg, const T* __restrict Cg, const bool* __restrict rs,
              const T* __restrict ck, T* __restrict kap, T* __restrict gA, T* __restrict gdl,
              T* __restrict gul, T* __restrict gBd, T* __restrict gCd, T* __restrict hbuf,
              T* __restrict abuf) {
  using VT = V<T>;
  constexpr int VL = kVL<T>;
  const int NP = (NBC > 0 ? NBC : nb_rt) * W;
  const int NV = NP / VL;
  constexpr int CAP = (NBC > 0 ? NBC * W : kMaxNP) / VL;
  const VT zero = vset<T>(T(0));
  VT kp[CAP];
  VT gAl[CAP];
  VT gAc[CAP];
  VT Al[CAP];
  VT h[CAP];
  for (int v = 0; v < NV; ++v) {
    kp[v] = vload(kap + v * VL);
    gAl[v] = vload(gA + v * VL);
    Al[v] = vload(Ar + v * VL);
  }
  const int64_t cfirst = T0 / Q;
  const int64_t clast = (T1 - 1) / Q;
  for (int64_t c = clast; c >= cfirst; --c) {
    const int64_t cs = c * Q;
    const int64_t ce = std::min(cs + Q, T1);
    // Recompute a_t and h_t inside the chunk from its checkpoint: hbuf row i holds h_{cs+i-1}.
    for (int v = 0; v < NV; ++v) {
      h[v] = c > 0 ? vload(ck + (c - 1) * NP + v * VL) : zero;
      vstore(hbuf + v * VL, h[v]);
    }
    for (int64_t t = cs; t < ce; ++t) {
      const int64_t i = t - cs;
      const T dt = dl[t];
      const T du = dt * ul[t];
      const bool r = rs != nullptr && rs[t];
      const T* __restrict Bt = Bg + t * NP;
      T* __restrict ar = abuf + i * NP;
      T* __restrict hr = hbuf + (i + 1) * NP;
      CSSM_UNROLL
      for (int v = 0; v < NV; ++v) {
        VT a = vexp(Al[v] * dt);
        a = r ? zero : a;
        h[v] = a * h[v] + du * vload(Bt + v * VL);
        vstore(ar + v * VL, a);
        vstore(hr + v * VL, h[v]);
      }
    }
    // Reverse recurrence: lambda_t = gy_t C_t + kappa_{t+1}, kappa_t = a_t lambda_t.
    for (int v = 0; v < NV; ++v) gAc[v] = zero;
    for (int64_t t = ce - 1; t >= cs; --t) {
      const int64_t i = t - cs;
      const T g = gyl[t];
      const T dt = dl[t];
      const T ut = ul[t];
      const T du = dt * ut;
      const T* __restrict Bt = Bg + t * NP;
      const T* __restrict Ct = Cg + t * NP;
      const T* __restrict hp = hbuf + i * NP;
      const T* __restrict hn = hbuf + (i + 1) * NP;
      const T* __restrict ar = abuf + i * NP;
      T* __restrict gBr = gBd + (t - T0) * NP;
      T* __restrict gCr = gCd + (t - T0) * NP;
      VT s1 = zero;
      VT s2 = zero;
      CSSM_UNROLL
      for (int v = 0; v < NV; ++v) {
        const int o = v * VL;
        const VT av = vload(ar + o);
        const VT lam = g * vload(Ct + o) + kp[v];
        const VT lh = lam * (vload(hp + o) * av);
        s1 = s1 + lh * Al[v];
        s2 = s2 + lam * vload(Bt + o);
        gAc[v] = gAc[v] + lh * dt;
        vstore(gBr + o, vload(gBr + o) + lam * du);
        vstore(gCr + o, vload(gCr + o) + g * vload(hn + o));
        kp[v] = av * lam;
      }
      const T S1 = vhsum<T>(s1);
      const T S2 = vhsum<T>(s2);
      gdl[t] = S1 + ut * S2;
      gul[t] = dt * S2;
    }
    for (int v = 0; v < NV; ++v) gAl[v] = gAl[v] + gAc[v];
  }
  for (int v = 0; v < NV; ++v) {
    vstore(kap + v * VL, kp[v]);
    vstore(gA + v * VL, gAl[v]);
  }
}

struct Dims {
  int64_t b, d, l, g, NP, nb, dg, nc;
};

Dims check_inputs(const at::Tensor& delta, const at::Tensor& u, const at::Tensor& A,
                  const at::Tensor& Bt, const at::Tensor& Ct,
                  const std::optional<at::Tensor>& reset, int64_t Q) {
  TORCH_CHECK(delta.dim() == 3 && u.sizes() == delta.sizes(),
              "selective_scan_cpu: delta and u must both be (b, d, l)");
  TORCH_CHECK(A.dim() == 2 && Bt.dim() == 4 && Ct.sizes() == Bt.sizes(),
              "selective_scan_cpu: A must be (d, NP), Bt and Ct (b, g, l, NP)");
  for (const at::Tensor* x : {&delta, &u, &A, &Bt, &Ct}) {
    TORCH_CHECK(x->device().is_cpu() && x->is_contiguous() &&
                    x->scalar_type() == delta.scalar_type(),
                "selective_scan_cpu: inputs must be contiguous CPU tensors of one dtype");
  }
  Dims m;
  m.b = delta.size(0);
  m.d = delta.size(1);
  m.l = delta.size(2);
  m.g = Bt.size(1);
  m.NP = A.size(1);
  TORCH_CHECK(A.size(0) == m.d && Bt.size(0) == m.b && Bt.size(2) == m.l && Bt.size(3) == m.NP,
              "selective_scan_cpu: shape mismatch between delta, A and Bt");
  TORCH_CHECK(m.NP % W == 0 && m.NP > 0 && m.NP <= kMaxNP,
              "selective_scan_cpu: padded n must be a multiple of 16 and at most 256");
  TORCH_CHECK(m.g > 0 && m.d % m.g == 0, "selective_scan_cpu: d must be a multiple of g");
  TORCH_CHECK(Q > 0, "selective_scan_cpu: chunk must be positive");
  if (reset.has_value()) {
    TORCH_CHECK(reset->scalar_type() == at::kBool && reset->is_contiguous() &&
                    reset->dim() == 2 && reset->size(0) == m.b && reset->size(1) == m.l,
                "selective_scan_cpu: reset must be a contiguous bool (b, l) tensor");
  }
  m.nb = m.NP / W;
  m.dg = m.d / m.g;
  m.nc = m.l > 0 ? (m.l + Q - 1) / Q : 0;
  return m;
}

template <typename T, int NBC>
void fwd_impl(const Dims& m, int64_t Q, int64_t tile, const T* dp, const T* up, const T* Ap,
              const T* Bp, const T* Cp, const bool* rp, T* yp, T* hs, T* ckp) {
  const int64_t lanes = m.b * m.d;
  for (int64_t T0 = 0; T0 < m.l; T0 += tile) {
    const int64_t T1 = std::min(m.l, T0 + tile);
    const int64_t grain = std::max<int64_t>(1, 2048 / ((T1 - T0) * m.NP));
    at::parallel_for(0, lanes, grain, [&](int64_t beg, int64_t end) {
      for (int64_t lane = beg; lane < end; ++lane) {
        const int64_t bi = lane / m.d;
        const int64_t j = lane % m.d;
        const int64_t gi = j / m.dg;
        const int64_t bg = bi * m.g + gi;
        fwd_lane<T, NBC>(T0, T1, Q, static_cast<int>(m.nb), dp + lane * m.l, up + lane * m.l,
                         Ap + j * m.NP, Bp + bg * m.l * m.NP, Cp + bg * m.l * m.NP,
                         rp != nullptr ? rp + bi * m.l : nullptr, hs + lane * m.NP,
                         yp + lane * m.l,
                         ckp != nullptr ? ckp + lane * (m.nc - 1) * m.NP : nullptr);
      }
    });
  }
}

// Work split of the backward, from the shapes only (never from the thread count):
//  - S channel slices per group, so that b*g*S >= 16 items exist even for b = g = 1; with S > 1
//    each slice sums its channels into its own gB/gC buffer and the slices are added in order;
//  - batch blocks of bbs batches each (at most 256 blocks); gA is summed per block, then by torch.
struct BwdSplit {
  int64_t S, cps, bbs, nbb, items;
};

BwdSplit bwd_split(const Dims& m) {
  BwdSplit p;
  const int64_t bgc = m.b * m.g;
  p.S = std::min<int64_t>(m.dg, std::max<int64_t>(1, (16 + bgc - 1) / bgc));
  p.cps = (m.dg + p.S - 1) / p.S;
  p.S = (m.dg + p.cps - 1) / p.cps;
  p.bbs = p.S > 1 ? 1 : (m.b + 255) / 256;  // S > 1 implies b < 16, so blocks are single batches
  p.nbb = (m.b + p.bbs - 1) / p.bbs;
  p.items = p.nbb * m.g * p.S;
  return p;
}

template <typename T, int NBC>
void bwd_impl(const Dims& m, const BwdSplit& p, int64_t Q, int64_t tile, const T* dp,
              const T* up, const T* gyp, const T* Ap, const T* Bp, const T* Cp, const bool* rp,
              const T* ckp, T* gdp, T* gup, T* gAp, T* gBp, T* gCp) {
  const int64_t NP = m.NP;
  const int64_t ntiles = (m.l + tile - 1) / tile;
  // kappa of every lane carries over between tiles; with one tile a per-lane scratch suffices.
  std::vector<T> kap(static_cast<size_t>(ntiles > 1 ? m.b * m.d * NP : 0), T(0));
  const int64_t S = p.S;
  std::vector<T> partB, partC;
  if (S > 1) {
    partB.resize(static_cast<size_t>(p.items * tile * NP));
    partC.resize(static_cast<size_t>(p.items * tile * NP));
  }
  for (int64_t ti = ntiles - 1; ti >= 0; --ti) {
    const int64_t T0 = ti * tile;
    const int64_t T1 = std::min(m.l, T0 + tile);
    const int64_t len = T1 - T0;
    const int64_t work = len * p.cps * p.bbs * NP;  // state elements per item
    const int64_t grain = std::max<int64_t>(1, 16384 / work);
    at::parallel_for(0, p.items, grain, [&](int64_t beg, int64_t end) {
      std::vector<T> hbuf(static_cast<size_t>((std::min(Q, len) + 1) * NP));
      std::vector<T> abuf(static_cast<size_t>(std::min(Q, len) * NP));
      std::vector<T> kscratch(static_cast<size_t>(NP));
      for (int64_t it = beg; it < end; ++it) {
        const int64_t bb = it / (m.g * S);
        const int64_t gi = (it / S) % m.g;
        const int64_t s = it % S;
        const int64_t j0 = gi * m.dg + s * p.cps;
        const int64_t j1 = std::min(gi * m.dg + m.dg, j0 + p.cps);
        const int64_t b1 = std::min(m.b, (bb + 1) * p.bbs);
        for (int64_t bi = bb * p.bbs; bi < b1; ++bi) {
          const int64_t bg = bi * m.g + gi;
          T* gBd;
          T* gCd;
          if (S > 1) {
            gBd = partB.data() + it * tile * NP;
            gCd = partC.data() + it * tile * NP;
            std::fill(gBd, gBd + len * NP, T(0));
            std::fill(gCd, gCd + len * NP, T(0));
          } else {
            gBd = gBp + (bg * m.l + T0) * NP;
            gCd = gCp + (bg * m.l + T0) * NP;
          }
          for (int64_t j = j0; j < j1; ++j) {
            const int64_t lane = bi * m.d + j;
            T* kp = kscratch.data();
            if (ntiles > 1) {
              kp = kap.data() + lane * NP;
            } else {
              std::fill(kp, kp + NP, T(0));
            }
            bwd_lane<T, NBC>(T0, T1, Q, static_cast<int>(m.nb), dp + lane * m.l, up + lane * m.l,
                             gyp + lane * m.l, Ap + j * NP, Bp + bg * m.l * NP,
                             Cp + bg * m.l * NP, rp != nullptr ? rp + bi * m.l : nullptr,
                             ckp + lane * (m.nc - 1) * NP, kp, gAp + (bb * m.d + j) * NP,
                             gdp + lane * m.l, gup + lane * m.l, gBd, gCd, hbuf.data(),
                             abuf.data());
          }
        }
      }
    });
    if (S > 1) {
      // Sum the slices of each group in a fixed order (here every item holds a single batch).
      const int64_t bgc = m.b * m.g;
      const int64_t rgrain = std::max<int64_t>(1, 4096 / NP);
      at::parallel_for(0, bgc * len, rgrain, [&](int64_t beg, int64_t end) {
        for (int64_t r = beg; r < end; ++r) {
          const int64_t bg = r / len;
          const int64_t tl = r % len;
          T* ob = gBp + (bg * m.l + T0 + tl) * NP;
          T* oc = gCp + (bg * m.l + T0 + tl) * NP;
          for (int64_t s = 0; s < S; ++s) {
            const T* pb = partB.data() + ((bg * S + s) * tile + tl) * NP;
            const T* pc = partC.data() + ((bg * S + s) * tile + tl) * NP;
            for (int64_t k = 0; k < NP; ++k) {
              ob[k] += pb[k];
              oc[k] += pc[k];
            }
          }
        }
      });
    }
  }
}

template <typename F>
void dispatch_nb(int64_t nb, F&& f) {
  switch (nb) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// Returns (y (b, d, l), last state (b, d, NP), checkpoints (b*d, nc-1, NP) or an empty tensor).
std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_fwd(
    const at::Tensor& delta, const at::Tensor& u, const at::Tensor& A, const at::Tensor& Bt,
    const at::Tensor& Ct, const std::optional<at::Tensor>& reset, int64_t chunk, int64_t tile,
    bool save_checkpoints) {
  const Dims m = check_inputs(delta, u, A, Bt, Ct, reset, chunk);
  TORCH_CHECK(tile > 0 && tile % chunk == 0,
              "selective_scan_cpu: tile must be a multiple of chunk");
  auto y = at::empty({m.b, m.d, m.l}, delta.options());
  auto last = m.l > 0 ? at::empty({m.b, m.d, m.NP}, delta.options())
                      : at::zeros({m.b, m.d, m.NP}, delta.options());
  auto ck = save_checkpoints ? at::empty({m.b * m.d, std::max<int64_t>(m.nc - 1, 0), m.NP},
                                         delta.options())
                             : at::empty({0}, delta.options());
  const bool* rp = reset.has_value() ? reset->data_ptr<bool>() : nullptr;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    dispatch_nb(m.nb, [&](auto nbc) {
      fwd_impl<T, decltype(nbc)::value>(m, chunk, tile, delta.data_ptr<T>(), u.data_ptr<T>(),
                                        A.data_ptr<T>(), Bt.data_ptr<T>(), Ct.data_ptr<T>(), rp,
                                        y.data_ptr<T>(), last.data_ptr<T>(),
                                        save_checkpoints ? ck.data_ptr<T>() : nullptr);
    });
  };
  if (delta.scalar_type() == at::kFloat) {
    run(float{});
  } else if (delta.scalar_type() == at::kDouble) {
    run(double{});
  } else {
    TORCH_CHECK(false, "selective_scan_cpu: only float32 and float64 are supported");
  }
  return {y, last, ck};
}

// Returns (gdelta (b, d, l), gu (b, d, l), gA per batch block (nbb, d, NP) to be summed over
// dim 0, gBt, gCt (b, g, l, NP)).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> scan_bwd(
    const at::Tensor& delta, const at::Tensor& u, const at::Tensor& A, const at::Tensor& Bt,
    const at::Tensor& Ct, const std::optional<at::Tensor>& reset, const at::Tensor& ck,
    const at::Tensor& gy, int64_t chunk, int64_t tile) {
  const Dims m = check_inputs(delta, u, A, Bt, Ct, reset, chunk);
  TORCH_CHECK(tile > 0 && tile % chunk == 0,
              "selective_scan_cpu: tile must be a multiple of chunk");
  TORCH_CHECK(gy.sizes() == delta.sizes() && gy.is_contiguous() &&
                  gy.scalar_type() == delta.scalar_type(),
              "selective_scan_cpu: gy must be a contiguous (b, d, l) tensor like delta");
  TORCH_CHECK(ck.is_contiguous() && ck.dim() == 3 && ck.size(0) == m.b * m.d &&
                  ck.size(1) == std::max<int64_t>(m.nc - 1, 0) && ck.size(2) == m.NP,
              "selective_scan_cpu: checkpoints do not match the inputs");
  auto gd = at::empty({m.b, m.d, m.l}, delta.options());
  auto gu = at::empty({m.b, m.d, m.l}, delta.options());
  const bool empty = m.l == 0 || m.b * m.d == 0;
  const BwdSplit split = empty ? BwdSplit{1, 1, 1, 1, 0} : bwd_split(m);
  auto gA = at::zeros({split.nbb, m.d, m.NP}, delta.options());
  auto gB = at::zeros({m.b, m.g, m.l, m.NP}, delta.options());
  auto gC = at::zeros({m.b, m.g, m.l, m.NP}, delta.options());
  const bool* rp = reset.has_value() ? reset->data_ptr<bool>() : nullptr;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    dispatch_nb(m.nb, [&](auto nbc) {
      bwd_impl<T, decltype(nbc)::value>(m, split, chunk, tile, delta.data_ptr<T>(), u.data_ptr<T>(),
                                        gy.data_ptr<T>(), A.data_ptr<T>(), Bt.data_ptr<T>(),
                                        Ct.data_ptr<T>(), rp, ck.data_ptr<T>(), gd.data_ptr<T>(),
                                        gu.data_ptr<T>(), gA.data_ptr<T>(), gB.data_ptr<T>(),
                                        gC.data_ptr<T>());
    });
  };
  if (!empty) {
    if (delta.scalar_type() == at::kFloat) {
      run(float{});
    } else if (delta.scalar_type() == at::kDouble) {
      run(double{});
    } else {
      TORCH_CHECK(false, "selective_scan_cpu: only float32 and float64 are supported");
    }
  }
  return {gd, gu, gA, gB, gC};
}

}  // namespace

TORCH_LIBRARY(cssmamba_scan, m) {
  m.def("fwd(Tensor delta, Tensor u, Tensor A, Tensor Bt, Tensor Ct, Tensor? reset, int chunk, "
        "int tile, bool save_checkpoints) -> (Tensor, Tensor, Tensor)");
  m.def("bwd(Tensor delta, Tensor u, Tensor A, Tensor Bt, Tensor Ct, Tensor? reset, Tensor ck, "
        "Tensor gy, int chunk, int tile) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(cssmamba_scan, CPU, m) {
  m.impl("fwd", &scan_fwd);
  m.impl("bwd", &scan_bwd);
}
