// The Python module of the C++ CPU kernels (one extension built from every .cpp in this folder).
#include "cpu_kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gguf_gemm", &gguf_gemm, "y = x W^T (+ bias), W in GGUF blocks");
  m.def("gguf_dequantize", &gguf_dequantize, "GGUF blocks -> float32 rows");
  m.def("gguf_vector_path", &gguf_vector_path, "whether this CPU takes the AVX-512 path");
  m.def("rms_norm", &cpu_rms_norm, "RMSNorm, with the residual add fused (residual updated in place)");
  m.def("silu_and_mul", &cpu_silu_and_mul, "SiLU(gate) * up");
  m.def("rope_store_kv", &cpu_rope_store_kv, "neox rotary on q/k in place, then the KV write");
  m.def("decode_attention", &cpu_decode_attention, "one-token attention over the paged KV cache");
  m.def("vector_path", &cpu_vector_path, "whether this CPU runs the AVX-512 loops");
}
