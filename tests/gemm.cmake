# The own CPU-oriented GEMM (cl/gemm_tiled.h) against a plain-C reference, and
# the GEMM benchmark tool (tools/gemm_bench.c: tiled vs CLBlast defaults vs
# CLBlast tuned, same process; not a test).
af_add_test(NAME test_gemm_tiled SOURCES test_gemm_tiled.c LABELS cl)
add_executable(gemm_bench ${CMAKE_SOURCE_DIR}/tools/gemm_bench.c)
target_link_libraries(gemm_bench PRIVATE artflow_core)
