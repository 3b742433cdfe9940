# Sources, sinks, run journal / resume, plugins (pipeline I/O).
af_add_test(NAME test_io_files SOURCES test_io_files.c LABELS unit)
af_add_test(NAME test_sources SOURCES test_sources.c io_harness.c LABELS unit)
af_add_test(NAME test_sinks SOURCES test_sinks.c io_harness.c LABELS unit)
# fork + SIGKILL at random points, resume, until done; the seed is printed
af_add_test(NAME test_resume SOURCES test_resume.c io_harness.c LABELS unit TIMEOUT 300)

if(EXISTS ${CMAKE_SOURCE_DIR}/examples/plugins/CMakeLists.txt)
  # deliberately broken plugins for the failure modes
  foreach(bad bad_abi bad_nosym bad_stage)
    add_library(af_test_${bad} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/plugins/${bad}.c)
    target_include_directories(af_test_${bad} PRIVATE ${CMAKE_SOURCE_DIR}/include)
    set_target_properties(af_test_${bad} PROPERTIES PREFIX "")
  endforeach()
  af_add_test(NAME test_plugin SOURCES test_plugin.c io_harness.c LABELS unit)
  # plugins resolve af_item_* from the test executable
  set_target_properties(test_plugin PROPERTIES ENABLE_EXPORTS ON)
  target_compile_definitions(test_plugin PRIVATE
    AF_TEST_PLUGIN_DHASH="$<TARGET_FILE:af_plugin_dhash>"
    AF_TEST_PLUGIN_ABI="$<TARGET_FILE:af_test_bad_abi>"
    AF_TEST_PLUGIN_NOSYM="$<TARGET_FILE:af_test_bad_nosym>"
    AF_TEST_PLUGIN_BADSTAGE="$<TARGET_FILE:af_test_bad_stage>")
  add_dependencies(test_plugin af_plugin_dhash af_test_bad_abi af_test_bad_nosym af_test_bad_stage)
endif()

# artflow run end to end: bad inputs -> error records and exit codes, the
# example pipeline, kill -9 + --resume loop through the real scheduler
af_add_test(NAME test_run_io COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_run_io.sh LABELS e2e TIMEOUT 300)
