# Plain-C reference model (tests/ref) and its check against the original code's goldens.
add_library(af_ref STATIC ${CMAKE_CURRENT_SOURCE_DIR}/ref/ref_model.c ${CMAKE_CURRENT_SOURCE_DIR}/ref/npy.c)
target_include_directories(af_ref PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(af_ref PUBLIC m)
af_add_test(NAME test_ref_golden SOURCES test_ref_golden.c LABELS unit model)
target_link_libraries(test_ref_golden PRIVATE af_ref)
af_add_test(NAME test_generate SOURCES test_generate.c LABELS unit)
af_add_test(NAME test_tokenizer_spm SOURCES test_tokenizer_spm.c LABELS unit)
