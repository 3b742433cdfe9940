# GGUF model files: reader/writer, quantisation, convert, mkmodel, inspect.
af_add_test(NAME test_gguf_rw SOURCES test_gguf_rw.c LABELS unit TIMEOUT 60)
af_add_test(NAME test_gguf_quant SOURCES test_gguf_quant.c LABELS unit TIMEOUT 60)
af_add_test(NAME test_gguf_mkmodel SOURCES test_gguf_mkmodel.c LABELS unit TIMEOUT 120)
af_add_test(NAME test_gguf_convert SOURCES test_gguf_convert.c LABELS unit TIMEOUT 120)
# The CLI end to end: mkmodel writes a model, convert refuses bad usage with exit 2.
af_add_test(NAME test_gguf_cli_mkmodel
            COMMAND $<TARGET_FILE:artflow> mkmodel --arch ${CMAKE_SOURCE_DIR}/config/models/tiny-test.yaml
                    --random --seed 3 --type q8_0 -o ${CMAKE_BINARY_DIR}/tiny-cli.gguf
            LABELS e2e TIMEOUT 60)
af_add_test(NAME test_gguf_cli_convert_usage COMMAND $<TARGET_FILE:artflow> convert --vit x LABELS e2e)
set_tests_properties(test_gguf_cli_convert_usage PROPERTIES WILL_FAIL TRUE)
