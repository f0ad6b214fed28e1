"""Plain-torch twins of the Triton kernels in `sglang.kernels` (same names, same signatures).

They favour clarity over speed, compute in float32 (float64 when given float64), and run on CPU.
"""
