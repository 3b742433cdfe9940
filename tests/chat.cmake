# `artflow chat` against the ORIGINAL Chat class's multi-turn goldens
# (tests/data/artgpt4-tiny/golden/chat, make_golden_chat.py), and two-file
# models: our vision/adapter GGUF (convert --no-llm-base) + a llama.cpp-layout
# Vicuna GGUF (make_llamacpp_gguf.py) for describe, chat and pipelines.
af_add_test(NAME test_chat COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_chat.sh LABELS e2e model TIMEOUT 300)
af_add_test(NAME test_two_file COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_two_file.sh LABELS e2e model TIMEOUT 300)
af_add_test(NAME test_weights_pair SOURCES test_weights_pair.c LABELS cl)
