// y = x W^T (+ bias) with W kept in GGUF blocks (Q4_0, Q4_1, Q8_0), computed as llama.cpp does on
// a CPU: each 32-value block of a row of x is quantized to int8 with its own scale
// (dx = max|x| / 127, qx = round(x / dx)), block dot products are exact integer sums, and the
// scales come in per block in float32:
//   Q8_0: d dx sum(q qx)     Q4_0: d dx (sum(q qx) - 8 sum(qx))     Q4_1: d dx sum(q qx) + m dx sum(qx)
// i.e. exactly the dot product of the weights with the rounded x (dx qx), up to float32 rounding.
// A step streams only the quantized bytes (Q4_1: 20 bytes per 32 weights). The torch twin,
// sglang.kernels.ref.gguf_quant.gguf_gemm, defines the same arithmetic.
//
// Vector path (CPUs with AVX-512 VNNI, chosen at run time): a pair of blocks at a time, in 256-bit
// registers (a 512-bit operation costs two 256-bit ones on Zen 4 and saves nothing here): two
// VNNI instructions per (pair, token) give exact integer sums, the pair's fp16 header times x's
// per-block factors gives the scales, one multiply-add scales the sums into float lanes. With
// one or two tokens, 8 rows of W are in flight, read straight from the blocks and prefetched
// 16 rows ahead; with more than 4 tokens, each group of 4 rows of W is unpacked once into a
// per-thread buffer and reused for every token. Every other CPU runs the portable loop, which
// computes the same integer sums.
//
// Each output (row of W, row of x) sums its blocks in the same order whatever the number of rows
// of x, so a token's result does not depend on what it is batched with. Rows of W are split over
// torch's intra-op threads; x is processed in passes of rows that stay in cache.

#include "cpu_kernels.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define SGL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#endif

namespace {

constexpr int64_t kBlock = 32;
// ggml type ids (ggml.h: GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q8_0 = 8).
constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8;
// Rows of x per pass over W: their quantized blocks (K bytes each) stay in L2 while W streams.
constexpr int64_t kRowsPerPass = 64;

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

// ---------------------------------------------------------------- x in int8 blocks

// int32 lanes of a 256-bit register: a Q4 pair's integer sums, 4 lanes per block.
constexpr int kLanes = 8;

struct QuantizedRows {
  int64_t K = 0, nb = 0, np = 0;  // row length, blocks per row, whole pairs of blocks per row
  std::vector<int8_t> q;          // [M, K] in natural order (portable path, odd last block)
  std::vector<float> d;           // [M, nb] scale of each block
  std::vector<int32_t> qsum;      // [M, nb] sum of the block's int8 values (Q4_0's and Q4_1's offsets)
  // Vector path, per pair of blocks: x's bytes in the order of the weights' unpacked bytes (Q4:
  // [low-nibble values of block 0, of block 1, high-nibble values of block 0, of block 1], 16
  // bytes each; Q8_0: the two blocks as they are), the factors the pair's fp16 header is
  // multiplied by (Q4_1 header [d0, m0, d1, m1] by [dx0, dx0 qsum0, dx1, dx1 qsum1]; Q4_0 and
  // Q8_0 [d0, d1] by [dx0, dx1]), and Q4_0's integer start per lane (-8 times the lane's x bytes).
  std::vector<int8_t> qv;         // [M, np * 64]
  std::vector<float> hx;          // [M, np, 4]
  std::vector<int32_t> il;        // [M, np, 8] Q4_0 only
};

// Position within a Q4 pair's 64 bytes of value j (0..31) of the pair's block `half`.
inline int64_t q4_pair_offset(int half, int j) { return (j < 16 ? 0 : 32) + half * 16 + (j % 16); }

// Identical on every path: max, one division, one multiply, round half to even.
void quantize_rows(const float* x, int64_t M, int64_t K, QuantizedRows& out) {
  const int64_t nb = K / kBlock;
  out.K = K, out.nb = nb, out.np = nb / 2;
  out.q.resize(M * K);
  out.d.resize(M * nb);
  out.qsum.resize(M * nb);
  at::parallel_for(0, M * nb, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* xb = x + i * kBlock;  // blocks of consecutive rows are consecutive
      float amax = 0.f;
      for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
      const float d = amax / 127.f;
      const float id = d > 0.f ? 1.f / d : 0.f;
      int32_t qs = 0;
      int8_t* qb = out.q.data() + i * kBlock;
      for (int j = 0; j < kBlock; ++j) {
        qb[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
        qs += qb[j];
      }
      out.d[i] = d;
      out.qsum[i] = qs;
    }
  });
}

// The vector path's copies of x (qv, hx, il) for weights of type QT.
template <int QT>
void lay_out_pairs(int64_t M, QuantizedRows& xq) {
  const int64_t np = xq.np, K = xq.K, nb = xq.nb;
  xq.qv.resize(M * np * 64);
  xq.hx.resize(M * np * 4);
  xq.il.resize(QT == kQ4_0 ? M * np * kLanes : 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t p = 0; p < np; ++p) {
      const int64_t pair = m * np + p, b0 = m * nb + 2 * p;
      const int8_t* src = xq.q.data() + m * K + p * 64;
      int8_t* dst = xq.qv.data() + pair * 64;
      for (int half = 0; half < 2; ++half)
        for (int j = 0; j < 32; ++j) dst[QT == kQ8_0 ? half * 32 + j : q4_pair_offset(half, j)] = src[half * 32 + j];
      float* hx = xq.hx.data() + pair * 4;
      if (QT == kQ4_1) {
        hx[0] = xq.d[b0], hx[1] = xq.d[b0] * static_cast<float>(xq.qsum[b0]);
        hx[2] = xq.d[b0 + 1], hx[3] = xq.d[b0 + 1] * static_cast<float>(xq.qsum[b0 + 1]);
      } else {
        hx[0] = xq.d[b0], hx[1] = xq.d[b0 + 1], hx[2] = hx[3] = 0.f;
      }
      if (QT == kQ4_0)  // lane i multiplies low-nibble bytes 4i..4i+3 and high-nibble bytes 4i..4i+3
        for (int lane = 0; lane < kLanes; ++lane) {
          int32_t sum = 0;
          for (int j = 0; j < 4; ++j) sum += dst[4 * lane + j] + dst[32 + 4 * lane + j];
          xq.il[pair * kLanes + lane] = -8 * sum;
        }
    }
}

// ---------------------------------------------------------------- portable path

// Integer dot product of one weight block with one int8 block of x (weights as stored: 4-bit
// values 0..15 for Q4_*, int8 for Q8_0).
template <int QT>
int32_t block_idot(const uint8_t* b, const int8_t* qx) {
  int32_t s = 0;
  if (QT == kQ8_0) {
    const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) s += static_cast<int32_t>(q[j]) * qx[j];
  } else {
    const uint8_t* q = b + (QT == kQ4_1 ? 4 : 2);
    for (int j = 0; j < 16; ++j) s += static_cast<int32_t>(q[j] & 0x0F) * qx[j] + static_cast<int32_t>(q[j] >> 4) * qx[j + 16];
  }
  return s;
}

// One block's term of an output: d dx isum (Q4_0: isum - 8 qsum), plus Q4_1's m dx qsum.
template <int QT>
inline float block_term(const uint8_t* blk, const QuantizedRows& xq, int64_t m, int64_t b) {
  const int64_t i = m * xq.nb + b;
  int32_t isum = block_idot<QT>(blk, xq.q.data() + m * xq.K + b * kBlock);
  if (QT == kQ4_0) isum -= 8 * xq.qsum[i];
  float t = half_at(blk) * xq.d[i] * static_cast<float>(isum);
  if (QT == kQ4_1) t += half_at(blk + 2) * xq.d[i] * static_cast<float>(xq.qsum[i]);
  return t;
}

template <int QT>
void rows_portable(const QuantizedRows& xq, int64_t m0, int64_t m1, const uint8_t* w, int64_t ldw,
                   const float* bias, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t bb = block_bytes(QT);
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t m = m0; m < m1; ++m) {
      float acc = 0.f;
      for (int64_t b = 0; b < xq.nb; ++b) acc += block_term<QT>(w + n * ldw + b * bb, xq, m, b);
      y[m * N + n] = acc + (bias ? bias[n] : 0.f);
    }
  }
}

// ---------------------------------------------------------------- vector path (AVX-512 VNNI)
#if defined(__x86_64__)

// A pair of weight blocks, as the two 32-byte halves VNNI multiplies with x's halves: Q4, the
// low and the high nibbles of both blocks (values 0..15); Q8_0, each block's signed bytes.
struct PairWeights {
  __m256i lo, hi;
};

template <int QT>
SGL_VNNI inline PairWeights pair_weights(const uint8_t* b0, const uint8_t* b1) {
  if (QT == kQ8_0)
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2))};
  constexpr int off = QT == kQ4_1 ? 4 : 2;
  const __m256i nib = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + off))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + off)), 1);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  return {_mm256_and_si256(nib, mask), _mm256_and_si256(_mm256_srli_epi16(nib, 4), mask)};
}

// The pair's fp16 header fields as floats: Q4_1 [d0, m0, d1, m1]; Q4_0 and Q8_0 [d0, d1, -, -].
template <int QT>
SGL_VNNI inline __m128 pair_header(const uint8_t* b0, const uint8_t* b1) {
  if (QT == kQ4_1) {
    int32_t h0, h1;
    std::memcpy(&h0, b0, 4);
    std::memcpy(&h1, b1, 4);
    return _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(h0), h1, 1));
  }
  uint16_t h0, h1;
  std::memcpy(&h0, b0, 2);
  std::memcpy(&h1, b1, 2);
  return _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));
}

// R rows of W, unpacked once for every token of a pass (more than 4 tokens), in a per-thread
// buffer of R * np * 80 bytes.
struct UnpackedRows {
  std::vector<uint8_t> w;  // [rows * np, 64]: lo then hi
  std::vector<float> h;    // [rows * np, 4]
};

// Where a tile reads a pair's weights: straight from the blocks (a single token tile per row
// tile, so unpacking once is all there is) or from an UnpackedRows buffer.
// How many rows ahead the blocks are prefetched (the next row tiles of this thread).
constexpr int64_t kPrefetchRows = 16;

template <int QT>
struct BlockSource {
  const uint8_t* w;
  int64_t ldw, bb, n;
  SGL_VNNI inline void pair(int r, int64_t p, PairWeights& pw, __m128& h) const {
    const uint8_t* b0 = w + (n + r) * ldw + 2 * p * bb;
    _mm_prefetch(reinterpret_cast<const char*>(b0 + kPrefetchRows * ldw), _MM_HINT_T0);
    pw = pair_weights<QT>(b0, b0 + bb);
    h = pair_header<QT>(b0, b0 + bb);
  }
};

struct BufferSource {
  const UnpackedRows* u;
  int64_t np;
  SGL_VNNI inline void pair(int r, int64_t p, PairWeights& pw, __m128& h) const {
    const int64_t i = r * np + p;
    pw.lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u->w.data() + i * 64));
    pw.hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u->w.data() + i * 64 + 32));
    h = _mm_loadu_ps(u->h.data() + i * 4);
  }
};

template <int QT>
SGL_VNNI void unpack_rows(const uint8_t* w, int64_t ldw, int64_t n, int rows, int64_t np, UnpackedRows& u) {
  u.w.resize(rows * np * 64), u.h.resize(rows * np * 4);
  const BlockSource<QT> src{w, ldw, block_bytes(QT), n};
  for (int r = 0; r < rows; ++r)
    for (int64_t p = 0; p < np; ++p) {
      const int64_t i = r * np + p;
      PairWeights pw;
      __m128 h;
      src.pair(r, p, pw, h);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u.w.data() + i * 64), pw.lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u.w.data() + i * 64 + 32), pw.hi);
      _mm_storeu_ps(u.h.data() + i * 4, h);
    }
}

// Unsigned-by-signed VNNI dot products (Q8_0: magnitudes of w, x with w's signs).
template <int QT>
SGL_VNNI inline __m256i dot_half(__m256i start, __m256i w, __m256i x) {
  if (QT == kQ8_0) return _mm256_dpbusd_epi32(start, _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
  return _mm256_dpbusd_epi32(start, w, x);
}

SGL_VNNI inline float hsum8(__m256 v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}

// R rows of W (n..n+R) against MT rows of x (m0..). Per pair of blocks and (row, token): two
// VNNI instructions give exact integer sums (Q4: 4 lanes per block; Q4_0 starts them at -8 x's
// lane sums; Q8_0: one register per block), the header times x's factors gives each block's
// d dx (and Q4_1's m dx qsum, summed on the side), and one multiply-add scales the sums into
// float lanes. An odd last block is added by the portable code.
template <int QT, int R, int MT, class Src>
SGL_VNNI void tile_vnni(const QuantizedRows& xq, int64_t m0, const Src& src, const uint8_t* w, int64_t ldw,
                        const float* bias, float* y, int64_t N, int64_t n) {
  const int64_t np = xq.np;
  const __m256i spread = QT == kQ4_1 ? _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2) : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  __m256 acc[R][MT];
  __m128 side[R][MT];  // Q4_1: lanes 1 and 3 collect m dx qsum
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < MT; ++t) acc[r][t] = _mm256_setzero_ps(), side[r][t] = _mm_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    __m256i xlo[MT], xhi[MT];
    for (int t = 0; t < MT; ++t) {
      const int8_t* xp = xq.qv.data() + ((m0 + t) * np + p) * 64;
      xlo[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp));
      xhi[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 32));
    }
    for (int r = 0; r < R; ++r) {
      PairWeights pw;
      __m128 h;
      src.pair(r, p, pw, h);
      for (int t = 0; t < MT; ++t) {
        const int64_t pair = (m0 + t) * np + p;
        const __m128 g = _mm_mul_ps(h, _mm_loadu_ps(xq.hx.data() + pair * 4));  // [d0 dx0, ., d1 dx1, .] or [d0 dx0, d1 dx1, ...]
        if (QT == kQ8_0) {
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_half<QT>(_mm256_setzero_si256(), pw.lo, xlo[t])),
                                      _mm256_broadcastss_ps(g), acc[r][t]);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_half<QT>(_mm256_setzero_si256(), pw.hi, xhi[t])),
                                      _mm256_broadcastss_ps(_mm_movehdup_ps(g)), acc[r][t]);
          continue;
        }
        const __m256i start = QT == kQ4_0 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq.il.data() + pair * kLanes))
                                          : _mm256_setzero_si256();
        const __m256i isum = dot_half<QT>(dot_half<QT>(start, pw.lo, xlo[t]), pw.hi, xhi[t]);
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_permutevar8x32_ps(_mm256_castps128_ps256(g), spread),
                                    acc[r][t]);
        if (QT == kQ4_1) side[r][t] = _mm_add_ps(side[r][t], g);
      }
    }
  }
  const int64_t bb = block_bytes(QT);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < MT; ++t) {
      float s = hsum8(acc[r][t]);
      if (QT == kQ4_1) {
        alignas(16) float sd[4];
        _mm_store_ps(sd, side[r][t]);
        s += sd[1] + sd[3];
      }
      if (xq.nb % 2) s += block_term<QT>(w + (n + r) * ldw + (xq.nb - 1) * bb, xq, m0 + t, xq.nb - 1);
      y[(m0 + t) * N + n + r] = s + (bias ? bias[n + r] : 0.f);
    }
}

// Tokens [m0, m1) against R rows read through src: tiles of 4 tokens, then the remainder.
template <int QT, int R, class Src>
SGL_VNNI void tokens_vnni(const QuantizedRows& xq, int64_t m0, int64_t m1, const Src& src, const uint8_t* w,
                          int64_t ldw, const float* bias, float* y, int64_t N, int64_t n) {
  int64_t m = m0;
  for (; m + 4 <= m1; m += 4) tile_vnni<QT, R, 4>(xq, m, src, w, ldw, bias, y, N, n);
  switch (m1 - m) {
    case 3: return tile_vnni<QT, R, 3>(xq, m, src, w, ldw, bias, y, N, n);
    case 2: return tile_vnni<QT, R, 2>(xq, m, src, w, ldw, bias, y, N, n);
    case 1: return tile_vnni<QT, R, 1>(xq, m, src, w, ldw, bias, y, N, n);
    default: return;
  }
}

// R rows at n: read from the blocks when one token tile covers [m0, m1), else unpacked once.
template <int QT, int R>
SGL_VNNI void row_tile(const QuantizedRows& xq, int64_t m0, int64_t m1, const uint8_t* w, int64_t ldw,
                       const float* bias, float* y, int64_t N, int64_t n, UnpackedRows& u) {
  if (m1 - m0 <= 4) return tokens_vnni<QT, R>(xq, m0, m1, BlockSource<QT>{w, ldw, block_bytes(QT), n}, w, ldw, bias, y, N, n);
  unpack_rows<QT>(w, ldw, n, R, xq.np, u);
  tokens_vnni<QT, R>(xq, m0, m1, BufferSource{&u, xq.np}, w, ldw, bias, y, N, n);
}

// Rows [n0, n1) of W for rows [m0, m1) of x, 4 rows of W at a time.
template <int QT>
SGL_VNNI void rows_vnni(const QuantizedRows& xq, int64_t m0, int64_t m1, const uint8_t* w, int64_t ldw,
                        const float* bias, float* y, int64_t N, int64_t n0, int64_t n1) {
  UnpackedRows u;
  int64_t n = n0;
  if (m1 - m0 <= 2)  // few tokens: more rows in flight
    for (; n + 8 <= n1; n += 8) row_tile<QT, 8>(xq, m0, m1, w, ldw, bias, y, N, n, u);
  for (; n + 4 <= n1; n += 4) row_tile<QT, 4>(xq, m0, m1, w, ldw, bias, y, N, n, u);
  for (; n < n1; ++n) row_tile<QT, 1>(xq, m0, m1, w, ldw, bias, y, N, n, u);
}

bool has_vnni() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
bool has_vnni() { return false; }
#endif

// ---------------------------------------------------------------- dequantization (float32 rows)

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
      const float lo = d * static_cast<float>(q[j] & 0x0F);  // multiply, then add: as the
      const float hi = d * static_cast<float>(q[j] >> 4);    // gguf package rounds it
      out[j] = lo + m;
      out[j + 16] = hi + m;
    }
  }
}

template <int QT>
void dequant_rows(const uint8_t* w, int64_t ldw, int64_t K, float* out, int64_t n0, int64_t n1) {
  const int64_t nb = K / kBlock, bb = block_bytes(QT);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t b = 0; b < nb; ++b) dequant_block<QT>(w + n * ldw + b * bb, out + n * K + b * kBlock);
}

// ---------------------------------------------------------------- dispatch

using RowsFn = void (*)(const QuantizedRows&, int64_t, int64_t, const uint8_t*, int64_t, const float*, float*,
                        int64_t, int64_t, int64_t);

// The rows function for type QT, after preparing x for it (the vector path's pair layout).
template <int QT>
RowsFn prepare_rows(int64_t M, bool vector, QuantizedRows& xq) {
#if defined(__x86_64__)
  if (vector) {
    lay_out_pairs<QT>(M, xq);
    return rows_vnni<QT>;
  }
#endif
  return rows_portable<QT>;
}

RowsFn pick_rows(int qtype, int64_t M, bool vector, QuantizedRows& xq) {
  switch (qtype) {
    case kQ4_0: return prepare_rows<kQ4_0>(M, vector, xq);
    case kQ4_1: return prepare_rows<kQ4_1>(M, vector, xq);
    case kQ8_0: return prepare_rows<kQ8_0>(M, vector, xq);
    default: TORCH_CHECK(false, "gguf_gemm: unsupported GGUF tensor type id ", qtype);
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

// Threads get whole rows of W, at least this many each, so small matrices stay on one thread.
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
  QuantizedRows xq;
  quantize_rows(xc.data_ptr<float>(), M, K, xq);
  const RowsFn fn = pick_rows(static_cast<int>(qtype), M, vector && has_vnni(), xq);
  const uint8_t* wp = w.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  const int64_t ldw = w.size(1);
  for (int64_t m0 = 0; m0 < M; m0 += kRowsPerPass) {
    const int64_t m1 = std::min(M, m0 + kRowsPerPass);
    at::parallel_for(0, N, kRowsPerTask,
                     [&](int64_t n0, int64_t n1) { fn(xq, m0, m1, wp, ldw, bp, yp, N, n0, n1); });
  }
  return y;
}

// w [N, K/32 * block bytes] uint8 -> [N, K] float32, exactly as the gguf package dequantizes.
torch::Tensor gguf_dequantize(const torch::Tensor& w, int64_t qtype, int64_t K, bool vector) {
  (void)vector;  // one portable loop: dequantization is not on any hot path
  check_weight(w, qtype, K);
  const int64_t N = w.size(0);
  torch::Tensor out = torch::empty({N, K}, torch::dtype(torch::kFloat32));
  const uint8_t* wp = w.data_ptr<uint8_t>();
  float* op = out.data_ptr<float>();
  const int64_t ldw = w.size(1);
  at::parallel_for(0, N, kRowsPerTask, [&](int64_t n0, int64_t n1) {
    switch (static_cast<int>(qtype)) {
      case kQ4_0: return dequant_rows<kQ4_0>(wp, ldw, K, op, n0, n1);
      case kQ4_1: return dequant_rows<kQ4_1>(wp, ldw, K, op, n0, n1);
      default: return dequant_rows<kQ8_0>(wp, ldw, K, op, n0, n1);
    }
  });
  return out;
}

bool gguf_vector_path() { return has_vnni(); }
