// y = x W^T (+ bias) with W kept in GGUF blocks (Q4_0, Q4_1, Q8_0): each 32-weight block is
// dequantized in registers right before its multiply-adds, so a step streams the quantized bytes
// only. Activations and accumulation are float32.
//
// The dequantized weights are bit-identical to the `gguf` package's (d * q, d * q + m: a multiply
// and an add, never fused), so this differs from a float32 matmul over the dequantized matrix only
// in the order of the dot products' additions.
//
// x86-64 CPUs with AVX-512 (F/BW/VL) take the vector path, chosen at run time; every other CPU
// takes the portable loop. Rows of W are split over torch's intra-op threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define SGL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#endif

namespace {

constexpr int64_t kBlock = 32;
// ggml type ids (ggml.h: GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q8_0 = 8).
constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8;

int64_t block_bytes(int qtype) {
  switch (qtype) {
    case kQ4_0: return 18;  // fp16 d, 16 bytes of nibbles
    case kQ4_1: return 20;  // fp16 d, fp16 m, 16 bytes of nibbles
    case kQ8_0: return 34;  // fp16 d, 32 int8
    default: TORCH_CHECK(false, "gguf_gemm: unsupported GGUF tensor type id ", qtype);
  }
  return 0;
}

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

// ---------------------------------------------------------------- portable path

template <int QT>
void dequant_block(const uint8_t* b, float* out) {
  const float d = half_at(b);
  if (QT == kQ8_0) {
    const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(q[j]) * d;
  } else if (QT == kQ4_0) {
    const uint8_t* q = b + 2;
    for (int j = 0; j < 16; ++j) {
      out[j] = d * static_cast<float>(static_cast<int>(q[j] & 0x0F) - 8);
      out[j + 16] = d * static_cast<float>(static_cast<int>(q[j] >> 4) - 8);
    }
  } else {
    const float m = half_at(b + 2);
    const uint8_t* q = b + 4;
    for (int j = 0; j < 16; ++j) {
      const float lo = d * static_cast<float>(q[j] & 0x0F);
      const float hi = d * static_cast<float>(q[j] >> 4);
      out[j] = lo + m;
      out[j + 16] = hi + m;
    }
  }
}

template <int QT>
void rows_portable(const float* x, int64_t M, int64_t K, const uint8_t* w, int64_t ldw, const float* bias,
                   float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t nb = K / kBlock, bb = block_bytes(QT);
  std::vector<float> acc(M);
  float wb[kBlock];
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t b = 0; b < nb; ++b) {
      dequant_block<QT>(w + n * ldw + b * bb, wb);
      for (int64_t m = 0; m < M; ++m) {
        const float* xm = x + m * K + b * kBlock;
        float s = 0.f;
        for (int j = 0; j < kBlock; ++j) s += wb[j] * xm[j];
        acc[m] += s;
      }
    }
    for (int64_t m = 0; m < M; ++m) y[m * N + n] = acc[m] + (bias ? bias[n] : 0.f);
  }
}

template <int QT>
void dequant_rows_portable(const uint8_t* w, int64_t ldw, int64_t K, float* out, int64_t n0, int64_t n1) {
  const int64_t nb = K / kBlock, bb = block_bytes(QT);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t b = 0; b < nb; ++b) dequant_block<QT>(w + n * ldw + b * bb, out + n * K + b * kBlock);
}

// ---------------------------------------------------------------- AVX-512 path
#if defined(__x86_64__)

// One block as two vectors of 16 floats (weights 0-15 and 16-31), rounded as dequant_block.
template <int QT>
SGL_AVX512 inline void dequant_avx512(const uint8_t* b, __m512& lo, __m512& hi) {
  const __m512 d = _mm512_set1_ps(half_at(b));
  if (QT == kQ8_0) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d);
    hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d);
    return;
  }
  const uint8_t* qs = b + (QT == kQ4_1 ? 4 : 2);
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  __m512i ql = _mm512_cvtepu8_epi32(_mm_and_si128(q, mask));
  __m512i qh = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), mask));
  if (QT == kQ4_0) {
    const __m512i eight = _mm512_set1_epi32(8);
    lo = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(ql, eight)));
    hi = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(qh, eight)));
  } else {
    const __m512 m = _mm512_set1_ps(half_at(b + 2));
    lo = _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(ql)), m);
    hi = _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(qh)), m);
  }
}

// R rows of W against MT rows of x: R*MT accumulators, each block dequantized once per row and
// used for all MT tokens.
template <int QT, int R, int MT>
SGL_AVX512 void tile_avx512(const float* x, int64_t K, const uint8_t* w, int64_t ldw, const float* bias,
                            float* y, int64_t N, int64_t n) {
  const int64_t nb = K / kBlock, bb = block_bytes(QT);
  __m512 acc[R][MT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < MT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512 xl[MT], xh[MT];
    for (int t = 0; t < MT; ++t) {
      xl[t] = _mm512_loadu_ps(x + t * K + b * kBlock);
      xh[t] = _mm512_loadu_ps(x + t * K + b * kBlock + 16);
    }
    for (int r = 0; r < R; ++r) {
      __m512 lo, hi;
      dequant_avx512<QT>(w + (n + r) * ldw + b * bb, lo, hi);
      for (int t = 0; t < MT; ++t) {
        acc[r][t] = _mm512_fmadd_ps(lo, xl[t], acc[r][t]);
        acc[r][t] = _mm512_fmadd_ps(hi, xh[t], acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < MT; ++t)
      y[t * N + n + r] = _mm512_reduce_add_ps(acc[r][t]) + (bias ? bias[n + r] : 0.f);
}

// Rows [n0, n1) for all M tokens: tiles of 8 tokens, then the remainder; rows in groups of R.
template <int QT, int MT, int R>
SGL_AVX512 void rows_tile(const float* x, int64_t K, const uint8_t* w, int64_t ldw, const float* bias, float* y,
                          int64_t N, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) tile_avx512<QT, R, MT>(x, K, w, ldw, bias, y, N, n);
  for (; n < n1; ++n) tile_avx512<QT, 1, MT>(x, K, w, ldw, bias, y, N, n);
}

template <int QT>
SGL_AVX512 void rows_avx512(const float* x, int64_t M, int64_t K, const uint8_t* w, int64_t ldw,
                            const float* bias, float* y, int64_t N, int64_t n0, int64_t n1) {
  int64_t m = 0;
  for (; m + 8 <= M; m += 8) rows_tile<QT, 8, 1>(x + m * K, K, w, ldw, bias, y + m * N, N, n0, n1);
  const int64_t rest = M - m;
  const float* xr = x + m * K;
  float* yr = y + m * N;
  if (rest >= 4) {
    rows_tile<QT, 4, 2>(xr, K, w, ldw, bias, yr, N, n0, n1);
    xr += 4 * K, yr += 4 * N;
  }
  switch (rest & 3) {
    case 3: rows_tile<QT, 3, 2>(xr, K, w, ldw, bias, yr, N, n0, n1); break;
    case 2: rows_tile<QT, 2, 4>(xr, K, w, ldw, bias, yr, N, n0, n1); break;
    case 1: rows_tile<QT, 1, 4>(xr, K, w, ldw, bias, yr, N, n0, n1); break;
    default: break;
  }
}

template <int QT>
SGL_AVX512 void dequant_rows_avx512(const uint8_t* w, int64_t ldw, int64_t K, float* out, int64_t n0,
                                    int64_t n1) {
  const int64_t nb = K / kBlock, bb = block_bytes(QT);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t b = 0; b < nb; ++b) {
      __m512 lo, hi;
      dequant_avx512<QT>(w + n * ldw + b * bb, lo, hi);
      _mm512_storeu_ps(out + n * K + b * kBlock, lo);
      _mm512_storeu_ps(out + n * K + b * kBlock + 16, hi);
    }
}

bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
bool has_avx512() { return false; }
#endif

// ---------------------------------------------------------------- dispatch

using RowsFn = void (*)(const float*, int64_t, int64_t, const uint8_t*, int64_t, const float*, float*, int64_t,
                        int64_t, int64_t);
using DequantFn = void (*)(const uint8_t*, int64_t, int64_t, float*, int64_t, int64_t);

template <int QT>
RowsFn rows_fn(bool vector) {
#if defined(__x86_64__)
  if (vector) return rows_avx512<QT>;
#endif
  return rows_portable<QT>;
}

template <int QT>
DequantFn dequant_fn(bool vector) {
#if defined(__x86_64__)
  if (vector) return dequant_rows_avx512<QT>;
#endif
  return dequant_rows_portable<QT>;
}

RowsFn pick_rows(int qtype, bool vector) {
  switch (qtype) {
    case kQ4_0: return rows_fn<kQ4_0>(vector);
    case kQ4_1: return rows_fn<kQ4_1>(vector);
    case kQ8_0: return rows_fn<kQ8_0>(vector);
    default: TORCH_CHECK(false, "gguf_gemm: unsupported GGUF tensor type id ", qtype);
  }
  return nullptr;
}

DequantFn pick_dequant(int qtype, bool vector) {
  switch (qtype) {
    case kQ4_0: return dequant_fn<kQ4_0>(vector);
    case kQ4_1: return dequant_fn<kQ4_1>(vector);
    case kQ8_0: return dequant_fn<kQ8_0>(vector);
    default: TORCH_CHECK(false, "gguf_dequantize: unsupported GGUF tensor type id ", qtype);
  }
  return nullptr;
}

void check_weight(const torch::Tensor& w, int64_t qtype, int64_t K) {
  TORCH_CHECK(w.dtype() == torch::kUInt8 && w.dim() == 2 && w.is_contiguous() && w.device().is_cpu(),
              "GGUF blocks must be a contiguous uint8 CPU tensor [rows, blocks * block bytes]");
  TORCH_CHECK(K % kBlock == 0, "GGUF rows must hold a multiple of 32 weights, got ", K);
  TORCH_CHECK(w.size(1) == K / kBlock * block_bytes(static_cast<int>(qtype)), "GGUF row of ", w.size(1),
              " bytes does not hold ", K, " weights of type id ", qtype);
}

// Threads get whole rows, at least this many each, so small matrices stay on one thread.
constexpr int64_t kRowsPerTask = 16;

}  // namespace

// x [M, K] float32, w [N, K/32 * block bytes] uint8 -> [M, N] float32.
torch::Tensor gguf_gemm(const torch::Tensor& x, const torch::Tensor& w, int64_t qtype,
                        const c10::optional<torch::Tensor>& bias, bool vector) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 2 && x.device().is_cpu(),
              "gguf_gemm: x must be a 2-D float32 CPU tensor");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  check_weight(w, qtype, K);
  const torch::Tensor xc = x.contiguous();
  const float* bp = nullptr;
  torch::Tensor bc;
  if (bias.has_value() && bias->defined()) {
    bc = bias->to(torch::kFloat32).contiguous();
    TORCH_CHECK(bc.numel() == N, "gguf_gemm: bias has ", bc.numel(), " entries for ", N, " rows");
    bp = bc.data_ptr<float>();
  }
  torch::Tensor y = torch::empty({M, N}, x.options());
  if (M == 0 || N == 0) return y;
  RowsFn fn = pick_rows(static_cast<int>(qtype), vector && has_avx512());
  const float* xp = xc.data_ptr<float>();
  const uint8_t* wp = w.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  const int64_t ldw = w.size(1);
  at::parallel_for(0, N, kRowsPerTask, [&](int64_t n0, int64_t n1) { fn(xp, M, K, wp, ldw, bp, yp, N, n0, n1); });
  return y;
}

// w [N, K/32 * block bytes] uint8 -> [N, K] float32, exactly as the gguf package dequantizes.
torch::Tensor gguf_dequantize(const torch::Tensor& w, int64_t qtype, int64_t K, bool vector) {
  check_weight(w, qtype, K);
  const int64_t N = w.size(0);
  torch::Tensor out = torch::empty({N, K}, torch::dtype(torch::kFloat32));
  DequantFn fn = pick_dequant(static_cast<int>(qtype), vector && has_avx512());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  float* op = out.data_ptr<float>();
  const int64_t ldw = w.size(1);
  at::parallel_for(0, N, kRowsPerTask, [&](int64_t n0, int64_t n1) { fn(wp, ldw, K, op, n0, n1); });
  return out;
}

bool gguf_vector_path() { return has_avx512(); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gguf_gemm", &gguf_gemm, "y = x W^T (+ bias), W in GGUF blocks");
  m.def("gguf_dequantize", &gguf_dequantize, "GGUF blocks -> float32 rows");
  m.def("gguf_vector_path", &gguf_vector_path, "whether this CPU takes the AVX-512 path");
}
