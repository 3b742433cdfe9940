# OpenCL runtime and command-line tests (lead).
af_add_test(NAME test_runtime SOURCES test_runtime.c LABELS cl)
af_add_test(NAME test_status SOURCES test_status.c LABELS unit)
af_add_test(NAME test_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh LABELS e2e)
af_add_test(NAME test_attention SOURCES test_attention.c LABELS cl)
