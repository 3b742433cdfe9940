# Batched decode of several sequences (KV-cache slots, fp16 KV cache, the llm
# stage's batches) and its kernels.
af_add_test(NAME test_kv_attention SOURCES test_kv_attention.c ref_ops.c LABELS cl)
af_add_test(NAME test_lm_batch SOURCES test_lm_batch.c LABELS cl model)
target_link_libraries(test_lm_batch PRIVATE af_ref)
af_add_test(NAME test_llm_batch COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/test_llm_batch.sh LABELS e2e model TIMEOUT 300)
af_add_test(NAME test_describe_batch SOURCES test_describe_batch.c LABELS cl model)
target_link_libraries(test_describe_batch PRIVATE af_ref)
