// Entry points of the C++ CPU kernels (bound to Python in bindings.cpp).
#pragma once

#include <torch/extension.h>

// gguf_gemm.cpp
torch::Tensor gguf_gemm(const torch::Tensor& x, const torch::Tensor& w, int64_t qtype,
                        const c10::optional<torch::Tensor>& bias, bool vector);
torch::Tensor gguf_dequantize(const torch::Tensor& w, int64_t qtype, int64_t K, bool vector);
bool gguf_vector_path();

// decode_ops.cpp
torch::Tensor cpu_rms_norm(const torch::Tensor& x, const c10::optional<torch::Tensor>& residual,
                           const torch::Tensor& weight, double eps, bool vector);
torch::Tensor cpu_silu_and_mul(const torch::Tensor& x, bool vector);
void cpu_rope_store_kv(const torch::Tensor& positions, const torch::Tensor& q, const torch::Tensor& k,
                       const torch::Tensor& v, const torch::Tensor& cos, const torch::Tensor& sin, int64_t head_dim,
                       const c10::optional<torch::Tensor>& k_buf, const c10::optional<torch::Tensor>& v_buf,
                       const c10::optional<torch::Tensor>& out_loc, bool vector);
torch::Tensor cpu_decode_attention(const torch::Tensor& q, const torch::Tensor& k_buf, const torch::Tensor& v_buf,
                                   const torch::Tensor& req_to_token, const torch::Tensor& rows,
                                   const torch::Tensor& lens, int64_t head_dim, double scale, int64_t window,
                                   double cap, bool vector);
bool cpu_vector_path();
