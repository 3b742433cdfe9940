# artflow tune (cl/tune.h, cli/cmd_tune.c), CLBlast overrides taking effect,
# bench --compare, and the device profile in provenance and stage batches.
af_add_test(NAME test_tune SOURCES test_tune.c LABELS unit)
af_add_test(NAME test_tune_override COMMAND test_tune override LABELS cl slow)
af_add_test(NAME test_tune_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_tune.sh LABELS cl e2e)
