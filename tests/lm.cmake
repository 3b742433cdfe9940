# The LLM with ImageAdapters on OpenCL vs the original code's goldens.
af_add_test(NAME test_lm SOURCES test_lm.c LABELS cl model)
target_link_libraries(test_lm PRIVATE af_ref)
af_add_test(NAME test_describe COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_describe.sh LABELS e2e model)
