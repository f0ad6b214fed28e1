// The small per-layer operations of a decoder, one call each instead of a chain of torch ops:
// RMSNorm (with the residual add fused), rotary embedding + this step's KV write, decode
// attention over the paged KV cache, and SiLU(gate) * up. float32 only; the callers keep the torch
// path for other dtypes. Their torch twins are the `*_ref` functions of the layers that call them.
//
// Rounding: rotary and the residual add compute exactly what the torch twins compute (no fused
// multiply-adds: the extension is built with -ffp-contract=off); norms and attention differ from
// them only in the order of float32 additions (and exp/tanh to within a few ulp).
//
// x86-64 CPUs with AVX-512 run the loops vectorized (functions compiled for it and chosen at run
// time); others run the same loops compiled for the baseline ISA.

#include "cpu_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define SGL_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#endif

namespace {

bool cpu_has_avx512() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

void check_f32(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.dtype() == torch::kFloat32 && t.device().is_cpu(), what, " must be a float32 CPU tensor");
}

void check_index(const torch::Tensor& t, c10::ScalarType dtype, const char* what) {
  TORCH_CHECK(t.scalar_type() == dtype && t.device().is_cpu() && t.is_contiguous(), what, " must be a contiguous ",
              c10::toString(dtype), " CPU tensor");
}

// ---------------------------------------------------------------- RMSNorm

// One row: r = x + r (when r is given), y = w * (v * 1/sqrt(mean(v^2) + eps)) with v = r or x.
template <bool kResidual>
__attribute__((always_inline)) inline void rms_row(const float* x, float* r, const float* w, float* y, int64_t H, float eps) {
  const float* v = x;
  if (kResidual) {
#pragma omp simd
    for (int64_t i = 0; i < H; ++i) r[i] = x[i] + r[i];
    v = r;
  }
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < H; ++i) ss += v[i] * v[i];
  const float inv = 1.f / std::sqrt(ss / static_cast<float>(H) + eps);
#pragma omp simd
  for (int64_t i = 0; i < H; ++i) y[i] = w[i] * (v[i] * inv);
}

#if defined(__x86_64__)
template <bool kResidual>
SGL_AVX512_FN void rms_rows_avx512(const float* x, float* r, const float* w, float* y, int64_t H, float eps,
                                   int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) rms_row<kResidual>(x + t * H, kResidual ? r + t * H : nullptr, w, y + t * H, H, eps);
}
#endif

template <bool kResidual>
void rms_rows_portable(const float* x, float* r, const float* w, float* y, int64_t H, float eps, int64_t t0,
                       int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) rms_row<kResidual>(x + t * H, kResidual ? r + t * H : nullptr, w, y + t * H, H, eps);
}

// ---------------------------------------------------------------- exp

inline float exp_scalar(float x) { return std::exp(x); }

#if defined(__x86_64__)
// e^x for 16 lanes: 2^n * p(r) with n = round(x / ln 2), r = x - n ln 2 (split in two parts),
// p a degree-6 polynomial (about 1 ulp on [-ln2/2, ln2/2]); below -87.3 the result is 0.
SGL_AVX512_FN inline __m512 exp_avx512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  const __m512 out = _mm512_scalef_ps(p, n);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LE_OQ);
  return _mm512_mask_blend_ps(underflow, out, _mm512_setzero_ps());
}
#endif

// ---------------------------------------------------------------- SiLU(gate) * up

void silu_mul_portable(const float* x, float* y, int64_t D, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* g = x + t * 2 * D;
    const float* u = g + D;
    float* o = y + t * D;
    for (int64_t i = 0; i < D; ++i) o[i] = g[i] / (1.f + exp_scalar(-g[i])) * u[i];
  }
}

#if defined(__x86_64__)
SGL_AVX512_FN void silu_mul_avx512(const float* x, float* y, int64_t D, int64_t t0, int64_t t1) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* g = x + t * 2 * D;
    const float* u = g + D;
    float* o = y + t * D;
    int64_t i = 0;
    for (; i + 16 <= D; i += 16) {
      const __m512 gv = _mm512_loadu_ps(g + i);
      const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
      _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
    }
    for (; i < D; ++i) o[i] = g[i] / (1.f + exp_scalar(-g[i])) * u[i];
  }
}
#endif

// ---------------------------------------------------------------- rotary + KV write

// Rotate the first 2 * half dims of one head (neox layout: pairs (i, i + half)), in place.
__attribute__((always_inline)) inline void rotate_head(float* x, const float* c, const float* s, int64_t half) {
#pragma omp simd
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c[i] - x2 * s[i];
    x[i + half] = x2 * c[i] + x1 * s[i];
  }
}

struct RopeArgs {
  const int64_t* pos;
  float *q, *k;
  const float *v, *cos, *sin;
  float *kbuf, *vbuf;
  const int64_t* loc;
  int64_t q_stride, k_stride, v_stride, hq, hk, d, half;
};

template <int kDummy>
__attribute__((always_inline)) inline void rope_rows(const RopeArgs& a, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = a.cos + a.pos[t] * a.half;
    const float* s = a.sin + a.pos[t] * a.half;
    float* qt = a.q + t * a.q_stride;
    float* kt = a.k + t * a.k_stride;
    for (int64_t h = 0; h < a.hq; ++h) rotate_head(qt + h * a.d, c, s, a.half);
    for (int64_t h = 0; h < a.hk; ++h) rotate_head(kt + h * a.d, c, s, a.half);
    if (a.kbuf != nullptr) {
      const int64_t row = a.loc[t] * a.hk * a.d;
      std::copy(kt, kt + a.hk * a.d, a.kbuf + row);
      std::copy(a.v + t * a.v_stride, a.v + t * a.v_stride + a.hk * a.d, a.vbuf + row);
    }
  }
}

#if defined(__x86_64__)
SGL_AVX512_FN void rope_rows_avx512(const RopeArgs& a, int64_t t0, int64_t t1) { rope_rows<0>(a, t0, t1); }
#endif

// ---------------------------------------------------------------- decode attention

struct AttnArgs {
  const float* q;
  const float *kbuf, *vbuf;
  const int32_t* req_to_token;
  const int64_t *rows, *lens;
  float* out;
  int64_t q_stride, hq, hk, d, table_width, window;
  float scale, cap;
};

__attribute__((always_inline)) inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

__attribute__((always_inline)) inline void axpy(float* y, const float* x, float a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// softmax numerators in place (e^(s - max)); returns their sum.
template <bool kVector>
float softmax_numerators(float* s, int64_t n);

template <>
float softmax_numerators<false>(float* s, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity(), sum = 0.f;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = exp_scalar(s[j] - mx));
  return sum;
}

#if defined(__x86_64__)
template <>
SGL_AVX512_FN float softmax_numerators<true>(float* s, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  const __m512 m = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
    _mm512_storeu_ps(s + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  float sum = _mm512_reduce_add_ps(acc);
  for (; j < n; ++j) sum += (s[j] = exp_scalar(s[j] - mx));
  return sum;
}
#endif

// One (request, kv head): the group of query heads sharing it, keys read once for the group.
template <bool kVector>
__attribute__((always_inline)) inline void attend_one(const AttnArgs& a, int64_t b, int64_t kvh, std::vector<float>& scores) {
  const int64_t group = a.hq / a.hk, len = a.lens[b];
  const int64_t start = a.window > 0 ? std::max<int64_t>(0, len - a.window) : 0, n = len - start;
  const int32_t* slots = a.req_to_token + a.rows[b] * a.table_width + start;
  scores.resize(static_cast<size_t>(group * n));
  for (int64_t j = 0; j < n; ++j) {
    const float* kj = a.kbuf + (static_cast<int64_t>(slots[j]) * a.hk + kvh) * a.d;
    for (int64_t g = 0; g < group; ++g) {
      float s = dot(a.q + b * a.q_stride + (kvh * group + g) * a.d, kj, a.d) * a.scale;
      if (a.cap > 0.f) s = a.cap * std::tanh(s / a.cap);
      scores[g * n + j] = s;
    }
  }
  for (int64_t g = 0; g < group; ++g) {
    float* sg = scores.data() + g * n;
    const float inv = 1.f / softmax_numerators<kVector>(sg, n);
    float* o = a.out + b * a.hq * a.d + (kvh * group + g) * a.d;
    std::fill(o, o + a.d, 0.f);
    for (int64_t j = 0; j < n; ++j) axpy(o, a.vbuf + (static_cast<int64_t>(slots[j]) * a.hk + kvh) * a.d, sg[j], a.d);
    for (int64_t i = 0; i < a.d; ++i) o[i] *= inv;
  }
}

void attend_portable(const AttnArgs& a, int64_t w0, int64_t w1) {
  std::vector<float> scores;
  for (int64_t w = w0; w < w1; ++w) attend_one<false>(a, w / a.hk, w % a.hk, scores);
}

#if defined(__x86_64__)
SGL_AVX512_FN void attend_avx512(const AttnArgs& a, int64_t w0, int64_t w1) {
  std::vector<float> scores;
  for (int64_t w = w0; w < w1; ++w) attend_one<true>(a, w / a.hk, w % a.hk, scores);
}
#endif

// The kernel reads K/V rows at the slot ids it finds in req_to_token, so a bad row index, length
// or slot id (a scheduler bug, a stale table) would read arbitrary memory. One pass over exactly
// the ids the kernel will read (a few int compares per key, against d multiply-adds per head
// per key in the attention itself) turns that into an error.
void check_attention_slots(const torch::Tensor& req_to_token, const torch::Tensor& rows, const torch::Tensor& lens,
                           int64_t window, int64_t num_slots) {
  const int64_t* rp = rows.data_ptr<int64_t>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  const int32_t* table = req_to_token.data_ptr<int32_t>();
  const int64_t n_rows = req_to_token.size(0), width = req_to_token.size(1);
  for (int64_t b = 0; b < rows.numel(); ++b) {
    TORCH_CHECK(rp[b] >= 0 && rp[b] < n_rows, "decode_attention: request ", b, " has row ", rp[b],
                " outside req_to_token's ", n_rows, " rows");
    TORCH_CHECK(lp[b] >= 1 && lp[b] <= width, "decode_attention: request ", b, " has sequence length ", lp[b],
                " outside [1, ", width, "]");
    const int64_t start = window > 0 ? std::max<int64_t>(0, lp[b] - window) : 0;
    const int32_t* slots = table + rp[b] * width;
    for (int64_t j = start; j < lp[b]; ++j)
      TORCH_CHECK(slots[j] >= 0 && slots[j] < num_slots, "decode_attention: request ", b, " maps token ", j,
                  " to KV slot ", slots[j], " outside the ", num_slots, " slots of the cache");
  }
}

}  // namespace

// ---------------------------------------------------------------- entry points

// x [T, H]; with residual [T, H]: residual += x in place and the norm of the sum is returned.
torch::Tensor cpu_rms_norm(const torch::Tensor& x, const c10::optional<torch::Tensor>& residual,
                           const torch::Tensor& weight, double eps, bool vector) {
  check_f32(x, "rms_norm x");
  check_f32(weight, "rms_norm weight");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && weight.is_contiguous() && weight.numel() == x.size(1),
              "rms_norm: x must be contiguous [T, H] with a weight of H entries");
  const int64_t T = x.size(0), H = x.size(1);
  torch::Tensor y = torch::empty_like(x);
  float* r = nullptr;
  if (residual.has_value() && residual->defined()) {
    check_f32(*residual, "rms_norm residual");
    TORCH_CHECK(residual->is_contiguous() && residual->sizes() == x.sizes(), "rms_norm: residual must match x");
    r = residual->data_ptr<float>();
  }
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float e = static_cast<float>(eps);
  const bool v = vector && cpu_has_avx512();
  at::parallel_for(0, T, 8, [&](int64_t t0, int64_t t1) {
#if defined(__x86_64__)
    if (v) {
      r ? rms_rows_avx512<true>(xp, r, wp, yp, H, e, t0, t1) : rms_rows_avx512<false>(xp, r, wp, yp, H, e, t0, t1);
      return;
    }
#endif
    r ? rms_rows_portable<true>(xp, r, wp, yp, H, e, t0, t1) : rms_rows_portable<false>(xp, r, wp, yp, H, e, t0, t1);
  });
  return y;
}

// x [T, 2D] (gate | up) -> [T, D].
torch::Tensor cpu_silu_and_mul(const torch::Tensor& x, bool vector) {
  check_f32(x, "silu_and_mul x");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.size(1) % 2 == 0, "silu_and_mul: x must be contiguous [T, 2D]");
  const int64_t T = x.size(0), D = x.size(1) / 2;
  torch::Tensor y = torch::empty({T, D}, x.options());
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const bool v = vector && cpu_has_avx512();
  at::parallel_for(0, T, 4, [&](int64_t t0, int64_t t1) {
#if defined(__x86_64__)
    if (v) return silu_mul_avx512(xp, yp, D, t0, t1);
#endif
    silu_mul_portable(xp, yp, D, t0, t1);
  });
  return y;
}

// Rotates q [T, Hq*D] and k [T, Hk*D] in place (rows may be strided, e.g. views of a fused qkv
// output) with cos/sin [P, rotary_dim / 2] at `positions`; then, if k_buf is defined, writes the
// rotated k and v [T, Hk*D] to k_buf/v_buf [slots, Hk, D] at out_loc.
void cpu_rope_store_kv(const torch::Tensor& positions, const torch::Tensor& q, const torch::Tensor& k,
                       const torch::Tensor& v, const torch::Tensor& cos, const torch::Tensor& sin, int64_t head_dim,
                       const c10::optional<torch::Tensor>& k_buf, const c10::optional<torch::Tensor>& v_buf,
                       const c10::optional<torch::Tensor>& out_loc, bool vector) {
  for (const auto* t : {&q, &k, &v, &cos, &sin}) check_f32(*t, "rope_store_kv tensors");
  check_index(positions, torch::kInt64, "rope_store_kv positions");
  TORCH_CHECK(head_dim > 0, "rope_store_kv: head_dim must be positive");
  TORCH_CHECK(q.dim() == 2 && k.dim() == 2 && v.dim() == 2 && q.stride(1) == 1 && k.stride(1) == 1 && v.stride(1) == 1,
              "rope_store_kv: q, k, v must be 2-D with unit inner stride");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.sizes() == sin.sizes() && cos.dim() == 2,
              "rope_store_kv: cos/sin must be contiguous [P, rotary_dim / 2]");
  TORCH_CHECK(q.size(1) % head_dim == 0 && k.size(1) % head_dim == 0 && 2 * cos.size(1) <= head_dim,
              "rope_store_kv: head_dim does not divide q/k or is shorter than the rotary dims");
  RopeArgs a{positions.data_ptr<int64_t>(), q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(),
             cos.data_ptr<float>(), sin.data_ptr<float>(), nullptr, nullptr, nullptr, q.stride(0), k.stride(0),
             v.stride(0), q.size(1) / head_dim, k.size(1) / head_dim, head_dim, cos.size(1)};
  if (k_buf.has_value() && k_buf->defined()) {
    TORCH_CHECK(v_buf.has_value() && v_buf->defined() && out_loc.has_value() && out_loc->defined(),
                "rope_store_kv: k_buf needs v_buf and out_loc");
    check_f32(*k_buf, "rope_store_kv k_buf");
    check_f32(*v_buf, "rope_store_kv v_buf");
    check_index(*out_loc, torch::kInt64, "rope_store_kv out_loc");
    TORCH_CHECK(k_buf->is_contiguous() && v_buf->is_contiguous() && k_buf->dim() == 3 &&
                    k_buf->sizes() == v_buf->sizes() && k_buf->size(2) == head_dim &&
                    k_buf->size(1) * head_dim == k.size(1) && v.size(1) == k.size(1),
                "rope_store_kv: KV buffers must be contiguous [slots, Hk, D] matching k and v");
    TORCH_CHECK(out_loc->numel() == q.size(0), "rope_store_kv: one out_loc slot per token");
    a.kbuf = k_buf->data_ptr<float>();
    a.vbuf = v_buf->data_ptr<float>();
    a.loc = out_loc->data_ptr<int64_t>();
  }
  TORCH_CHECK(positions.numel() == q.size(0) && k.size(0) == q.size(0) && v.size(0) == q.size(0),
              "rope_store_kv: one position per token");
  for (int64_t t = 0; t < q.size(0); ++t) {
    TORCH_CHECK(a.pos[t] >= 0 && a.pos[t] < cos.size(0), "rope_store_kv: position ", a.pos[t], " outside the table");
    TORCH_CHECK(a.loc == nullptr || (a.loc[t] >= 0 && a.loc[t] < k_buf->size(0)), "rope_store_kv: KV slot out of range");
  }
  const bool vec = vector && cpu_has_avx512();
  at::parallel_for(0, q.size(0), 16, [&](int64_t t0, int64_t t1) {
#if defined(__x86_64__)
    if (vec) return rope_rows_avx512(a, t0, t1);
#endif
    rope_rows<0>(a, t0, t1);
  });
}

// One query token per request: q [B, Hq*D] attends over its request's KV slots
// req_to_token[rows[b], :lens[b]] (the last `window` of them when window > 0), logits scaled by
// `scale` and soft-capped by `cap` when cap > 0. Returns [B, Hq*D].
torch::Tensor cpu_decode_attention(const torch::Tensor& q, const torch::Tensor& k_buf, const torch::Tensor& v_buf,
                                   const torch::Tensor& req_to_token, const torch::Tensor& rows,
                                   const torch::Tensor& lens, int64_t head_dim, double scale, int64_t window,
                                   double cap, bool vector) {
  for (const auto* t : {&q, &k_buf, &v_buf}) check_f32(*t, "decode_attention tensors");
  TORCH_CHECK(head_dim > 0, "decode_attention: head_dim must be positive");
  TORCH_CHECK(q.dim() == 2 && q.stride(1) == 1 && q.size(1) % head_dim == 0 && k_buf.is_contiguous() &&
                  v_buf.is_contiguous() && k_buf.dim() == 3 && k_buf.sizes() == v_buf.sizes() &&
                  k_buf.size(2) == head_dim,
              "decode_attention: q [B, Hq*D] with unit inner stride, K/V buffers contiguous [slots, Hk, D]");
  check_index(req_to_token, torch::kInt32, "decode_attention req_to_token");
  check_index(rows, torch::kInt64, "decode_attention rows");
  check_index(lens, torch::kInt64, "decode_attention lens");
  TORCH_CHECK(req_to_token.dim() == 2 && rows.numel() == q.size(0) && lens.numel() == q.size(0),
              "decode_attention: req_to_token [rows, width], rows and lens one per request");
  const int64_t B = q.size(0), hq = q.size(1) / head_dim, hk = k_buf.size(1);
  TORCH_CHECK(hk >= 1 && hq % hk == 0, "decode_attention: query heads must be a multiple of KV heads");
  check_attention_slots(req_to_token, rows, lens, window, k_buf.size(0));
  const int64_t* lp = lens.data_ptr<int64_t>();
  torch::Tensor out = torch::empty({B, hq * head_dim}, q.options());
  AttnArgs a{q.data_ptr<float>(), k_buf.data_ptr<float>(), v_buf.data_ptr<float>(), req_to_token.data_ptr<int32_t>(),
             rows.data_ptr<int64_t>(), lp, out.data_ptr<float>(), q.stride(0), hq, hk, head_dim,
             req_to_token.size(1), window, static_cast<float>(scale), static_cast<float>(cap)};
  const bool vec = vector && cpu_has_avx512();
  at::parallel_for(0, B * hk, 1, [&](int64_t w0, int64_t w1) {
#if defined(__x86_64__)
    if (vec) return attend_avx512(a, w0, w1);
#endif
    attend_portable(a, w0, w1);
  });
  return out;
}

bool cpu_vector_path() { return cpu_has_avx512(); }
