# Decode GEMVs (af_op_gemv, af_op_gemv_qn): portable and CPU kernels
# (cl/kernels/gemv_cpu.cl) against a plain-C reference.
af_add_test(NAME test_gemv_cpu SOURCES test_gemv_cpu.c ref_ops.c LABELS cl)
af_add_test(NAME test_weights_zero_copy SOURCES test_weights_zero_copy.c LABELS cl)
