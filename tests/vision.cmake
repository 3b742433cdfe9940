# Vision path (ViT, ln_vision, Q-Former, projection) on OpenCL vs the original code's goldens.
af_add_test(NAME test_vision SOURCES test_vision.c LABELS cl model)
target_link_libraries(test_vision PRIVATE af_ref)
af_add_test(NAME test_nn SOURCES test_nn.c LABELS cl)
target_link_libraries(test_nn PRIVATE af_ref)
af_add_test(NAME test_vision_stage SOURCES test_vision_stage.c io_harness.c LABELS cl model)
target_link_libraries(test_vision_stage PRIVATE af_ref)
