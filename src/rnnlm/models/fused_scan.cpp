// The gated scans of minGRU, minLSTM and QRNN in one pass over the window per direction (CPU).
//
// Built on first use by rnnlm/models/fused_scan.py (g++ -O3 -march=native -fopenmp), called through
// ctypes on tensors' memory. Each cell's chunked PyTorch path makes about a dozen passes over the
// (T, B, H) window (gates, their casts, the scan's chunks, the output, and again backwards); here one
// loop reads the pre-activations of a token, computes the gates, advances the state and writes the
// output, so the window is read and written once forwards and once backwards. Layout, time-major:
//
//   pre (T, B, G*H): the gates' pre-activations, gate g of channel j at g*H + j   (f32, bf16 or f64)
//   pre2           : an optional second addend of the same shape (QRNN's x_{t-1} term), or null
//   h0 (B, H)      : the state before the window, or null for zeros                 (f32, or f64)
//   y (T, B, H)    : the output, in pre's type: the state h_t (minGRU, minLSTM), o_t * c_t (QRNN)
//   saved (T, B, H): QRNN's c_t for the backward, in pre's type; last (B, H): the final state
//
// Parallel over (batch row, block of 64 channels); each unit walks time in order, vectorised over
// its channels. The state is kept in float32 (float64) from step to step; what is written for the
// backward is in pre's type, as autocast keeps a matrix product's inputs. The backward recomputes
// the gates from pre and reads the saved states:
//
//   g_t = dL/dh_t + a_{t+1} g_{t+1},  and the gates' gradients from g_t, h_{t-1} and the gates.
//
// Exponents are clamped (|x| <= 80 in float, 700 in double) so no inf is formed: sigmoid and tanh are
// exact to rounding there already. Compiled with -ffast-math (glibc's vector log1p for minLSTM).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

struct bf16 {
  uint16_t v;
};

inline float ld(const float* p, int64_t i) { return p[i]; }
inline double ld(const double* p, int64_t i) { return p[i]; }
inline float ld(const bf16* p, int64_t i) {
  uint32_t u = uint32_t(p[i].v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void st(float* p, int64_t i, float x) { p[i] = x; }
inline void st(double* p, int64_t i, double x) { p[i] = x; }
inline void st(bf16* p, int64_t i, float x) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i].v = uint16_t(u >> 16);
}

template <class A>
inline A clampx(A x) {
  const A c = sizeof(A) == 4 ? A(80) : A(700);
  return x < -c ? -c : (x > c ? c : x);
}
// e^x for |x| <= 80: Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial, the
// exponent set by bit arithmetic), within 2 ulp, inlined so the loops vectorise without a libm call
// (a libm call per element made the float kernels compute-bound at a third of this speed).
inline float exp_(float x) {
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r -= n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
inline double exp_(double x) { return std::exp(x); }

// s = sigmoid(x), n = sigmoid(-x) = 1 - s, from one exponential (no cancellation in either)
template <class A>
inline void sigmoids(A x, A& s, A& n) {
  A e = exp_(-clampx(x));
  s = A(1) / (A(1) + e);
  n = e * s;
}
template <class A>
inline A tanh_(A x) {  // (1 - e^{-2x}) / (1 + e^{-2x})
  const A e = exp_(clampx(A(-2) * x));
  return (A(1) - e) / (A(1) + e);
}
template <class A>
inline A softplus(A x) {  // log(1 + e^x)
  return std::max(x, A(0)) + std::log1p(exp_(-std::fabs(clampx(x))));
}
// Feng et al. 2024's positive activation g and its derivative
template <class A>
inline A g_act(A x, A s) { return x >= A(0) ? x + A(0.5) : s; }
template <class A>
inline A g_grad(A x, A s, A n) { return x >= A(0) ? A(1) : s * n; }

// QRNN's gates of channel j from pre (+ w * pre2): z = tanh, f and o sigmoids (with 1 - f, 1 - o)
template <class IN, class A>
inline void qrnn_gates(const IN* p, const IN* q, A w, int64_t H, int64_t j, A& z, A& f, A& fn, A& o,
                       A& on) {
  sigmoids(ld(p, H + j) + w * ld(q, H + j), f, fn);
  sigmoids(ld(p, 2 * H + j) + w * ld(q, 2 * H + j), o, on);
  z = tanh_(ld(p, j) + w * ld(q, j));
}

constexpr int64_t BLK = 512;
constexpr int64_t AHEAD = 2;  // rows prefetched ahead: a row is B * G * H elements from the next one

// Each time step reads a few short runs far apart (one batch row of each gate), which the hardware
// prefetchers do not follow across pages: the runs of the step AHEAD steps on are asked for now.
template <class T>
inline void prefetch(const T* p, int64_t stride, int64_t runs, int64_t n) {
  if (!p) return;
  for (int64_t g = 0; g < runs; ++g)
    for (int64_t o = 0; o < n * int64_t(sizeof(T)); o += 64)
      __builtin_prefetch(reinterpret_cast<const char*>(p + g * stride) + o);
}

template <class Body>
void over_units(int64_t t, int64_t b, int64_t h, int threads, Body body) {
  const int64_t nblk = (h + BLK - 1) / BLK, units = b * nblk;
  const int nt = t * b * h < (1 << 15) ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t row = u / nblk, lo = (u % nblk) * BLK;
    body(row, lo, std::min(BLK, h - lo));
  }
}

// ---- forward ----------------------------------------------------------------------------------

template <class IN, class A>
void forward(int cell, int64_t T, int64_t B, int64_t H, const IN* pre, const IN* pre2, const A* h0,
             IN* y, IN* saved, A* last, int threads) {
  const int64_t G = cell == 0 ? 2 : 3;
  over_units(T, B, H, threads, [&](int64_t row, int64_t lo, int64_t n) {
    A h[BLK];
    for (int64_t j = 0; j < n; ++j) h[j] = h0 ? h0[row * H + lo + j] : A(0);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = t * B + row;
      const IN* p = pre + r * G * H + lo;
      IN* yy = y + r * H + lo;
      if (t + AHEAD < T) {
        prefetch(p + AHEAD * B * G * H, H, G, n);
        if (pre2) prefetch(pre2 + (r + AHEAD * B) * G * H + lo, H, G, n);
      }
      if (cell == 0) {  // minGRU: [z, cand]; a = 1 - sigmoid(z), b = sigmoid(z) g(cand)
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          A z, zn, c, cn;
          sigmoids(ld(p, j), z, zn);
          const A pc = ld(p, H + j);
          sigmoids(pc, c, cn);
          h[j] = zn * h[j] + z * g_act(pc, c);
          st(yy, j, h[j]);
        }
      } else if (cell == 1) {  // minLSTM: [f, i, cand]; d = log f - log i
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          const A d = softplus(-ld(p, H + j)) - softplus(-ld(p, j));
          A a, an, c, cn;
          sigmoids(d, a, an);
          const A pc = ld(p, 2 * H + j);
          sigmoids(pc, c, cn);
          h[j] = a * h[j] + an * g_act(pc, c);
          st(yy, j, h[j]);
        }
      } else {  // QRNN: [z, f, o] (+ pre2); c = f c + (1 - f) tanh(z), y = sigmoid(o) c
        const IN* q = pre2 ? pre2 + r * G * H + lo : p;
        const A w = pre2 ? A(1) : A(0);
        IN* cs = saved + r * H + lo;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          A z, f, fn, o, on;
          qrnn_gates(p, q, w, H, j, z, f, fn, o, on);
          h[j] = f * h[j] + fn * z;
          st(cs, j, h[j]);
          st(yy, j, o * h[j]);
        }
      }
    }
    for (int64_t j = 0; j < n; ++j) last[row * H + lo + j] = h[j];
  });
}

// ---- backward ---------------------------------------------------------------------------------

template <class IN, class A>
void backward(int cell, int64_t T, int64_t B, int64_t H, const IN* pre, const IN* pre2, const A* h0,
              const IN* y, const IN* saved, const IN* gy, const A* glast, IN* gpre, A* gh0,
              int threads) {
  const int64_t G = cell == 0 ? 2 : 3;
  const IN* states = cell == 2 ? saved : y;  // h_t (minGRU, minLSTM) or c_t (QRNN)
  over_units(T, B, H, threads, [&](int64_t row, int64_t lo, int64_t n) {
    A carry[BLK];  // what reaches h_t from after it: a_{t+1} g_{t+1}, or dL/d(last state) at T-1
    for (int64_t j = 0; j < n; ++j) carry[j] = glast ? glast[row * H + lo + j] : A(0);
    A first[BLK];  // h0, read where t = 0 needs the state before the window
    for (int64_t j = 0; j < n; ++j) first[j] = h0 ? h0[row * H + lo + j] : A(0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t r = t * B + row;
      const IN* p = pre + r * G * H + lo;
      IN* gp = gpre + r * G * H + lo;
      const IN* gyt = gy + r * H + lo;
      const IN* hp = t > 0 ? states + (r - B) * H + lo : nullptr;
      if (t > AHEAD) {
        prefetch(p - AHEAD * B * G * H, H, G, n);
        if (pre2) prefetch(pre2 + (r - AHEAD * B) * G * H + lo, H, G, n);
        prefetch(gyt - AHEAD * B * H, 0, 1, n);
        prefetch(states + (r - (AHEAD + 1) * B) * H + lo, 0, 1, n);
      }
      if (cell == 0) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          const A g = ld(gyt, j) + carry[j];
          const A prev = hp ? ld(hp, j) : first[j];
          A z, zn, c, cn;
          sigmoids(ld(p, j), z, zn);
          const A pc = ld(p, H + j);
          sigmoids(pc, c, cn);
          st(gp, j, g * z * zn * (g_act(pc, c) - prev));
          st(gp, H + j, g * z * g_grad(pc, c, cn));
          carry[j] = g * zn;
        }
      } else if (cell == 1) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          const A g = ld(gyt, j) + carry[j];
          const A prev = hp ? ld(hp, j) : first[j];
          const A pf = ld(p, j), pi = ld(p, H + j);
          const A d = softplus(-pi) - softplus(-pf);
          A a, an, c, cn, sf, sfn, si, sin_;
          sigmoids(d, a, an);
          const A pc = ld(p, 2 * H + j);
          sigmoids(pc, c, cn);
          sigmoids(pf, sf, sfn);
          sigmoids(pi, si, sin_);
          const A gd = g * a * an * (prev - g_act(pc, c));  // dh/dd = a (1 - a) (h_{t-1} - cand)
          st(gp, j, gd * sfn);                              // dd/dpf = sigmoid(-pf)
          st(gp, H + j, -gd * sin_);                        // dd/dpi = -sigmoid(-pi)
          st(gp, 2 * H + j, g * an * g_grad(pc, c, cn));
          carry[j] = g * a;
        }
      } else {
        const IN* q = pre2 ? pre2 + r * G * H + lo : p;
        const A w = pre2 ? A(1) : A(0);
        const IN* ct = states + r * H + lo;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          A z, f, fn, o, on;
          qrnn_gates(p, q, w, H, j, z, f, fn, o, on);
          const A prev = hp ? ld(hp, j) : first[j];
          const A gyj = ld(gyt, j);
          const A g = gyj * o + carry[j];
          st(gp, j, g * fn * (A(1) - z * z));
          st(gp, H + j, g * (prev - z) * f * fn);
          st(gp, 2 * H + j, gyj * ld(ct, j) * o * on);
          carry[j] = g * f;
        }
      }
    }
    if (gh0)
      for (int64_t j = 0; j < n; ++j) gh0[row * H + lo + j] = carry[j];
  });
}

}  // namespace

// dtype: 0 = float32 tensors, 1 = bfloat16 pre / y / saved / gradients with float32 h0 and last
// state, 2 = float64 tensors. Returns 0, or 1 for an unknown dtype.
#define RNNLM_DISPATCH(CALL)                                 \
  if (dtype == 0) {                                          \
    using IN = float;                                        \
    using A = float;                                         \
    CALL;                                                    \
  } else if (dtype == 1) {                                   \
    using IN = bf16;                                         \
    using A = float;                                         \
    CALL;                                                    \
  } else if (dtype == 2) {                                   \
    using IN = double;                                       \
    using A = double;                                        \
    CALL;                                                    \
  } else {                                                   \
    return 1;                                                \
  }                                                          \
  return 0;

extern "C" int rnnlm_gated_scan_forward(int cell, int dtype, int64_t T, int64_t B, int64_t H,
                                        const void* pre, const void* pre2, const void* h0, void* y,
                                        void* saved, void* last, int threads) {
  RNNLM_DISPATCH((forward<IN, A>(cell, T, B, H, (const IN*)pre, (const IN*)pre2, (const A*)h0,
                                 (IN*)y, (IN*)saved, (A*)last, threads)))
}

extern "C" int rnnlm_gated_scan_backward(int cell, int dtype, int64_t T, int64_t B, int64_t H,
                                         const void* pre, const void* pre2, const void* h0,
                                         const void* y, const void* saved, const void* gy,
                                         const void* glast, void* gpre, void* gh0, int threads) {
  RNNLM_DISPATCH((backward<IN, A>(cell, T, B, H, (const IN*)pre, (const IN*)pre2, (const A*)h0,
                                  (const IN*)y, (const IN*)saved, (const IN*)gy, (const A*)glast,
                                  (IN*)gpre, (A*)gh0, threads)))
}
