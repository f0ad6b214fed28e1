"""CPU kernels written in C++ (compiled on first use with the system compiler through
`torch.utils.cpp_extension`, cached per source hash), each with a plain-torch twin of the same
signature in `sglang.kernels.ref`. When no compiler is available the callers fall back to what
they did without the kernel, and the reason is logged once."""
