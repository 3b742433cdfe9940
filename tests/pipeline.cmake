# Pipeline engine: YAML loading and validation, graph check, scheduler.
af_add_test(NAME test_pipeline_yaml SOURCES test_pipeline_yaml.c pipeline_stages.c LABELS unit TIMEOUT 60)
af_add_test(NAME test_pipeline_sched SOURCES test_pipeline_sched.c pipeline_stages.c LABELS unit TIMEOUT 120)
af_add_test(NAME test_pipeline_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/test_pipeline_cli.sh LABELS e2e TIMEOUT 120)
