# Fuzz targets: every tests/fuzz/fuzz_<x>.c defines LLVMFuzzerTestOneInput.
#  - always: test_fuzz_<x>_corpus replays seed files through it (plain main in
#    fuzz_main.c), so gcc and sanitizer builds exercise the entry points;
#  - with -DAF_FUZZ=ON (clang): fuzz_<x> is a libFuzzer binary and the core
#    library is built with coverage instrumentation.  tools/fuzz.sh runs them.
# Seeds: tests/data/fuzz/<x> if present, else the folder in AF_FUZZ_SEEDS_<x>.
set(AF_FUZZ_SEEDS_pickle ${CMAKE_CURRENT_SOURCE_DIR}/data/torch/pkl)
set(AF_FUZZ_SEEDS_torch ${CMAKE_CURRENT_SOURCE_DIR}/data/torch/pkl)
set(AF_FUZZ_SEEDS_zip ${CMAKE_CURRENT_SOURCE_DIR}/data/torch)
set(AF_FUZZ_SEEDS_gguf ${CMAKE_CURRENT_SOURCE_DIR}/data/gguf)

file(GLOB AF_FUZZ_TARGETS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
list(FILTER AF_FUZZ_TARGETS EXCLUDE REGEX "fuzz_main\\.c$")
if(AF_FUZZ)
  target_compile_options(artflow_core PRIVATE -fsanitize=fuzzer-no-link)
endif()
foreach(src IN LISTS AF_FUZZ_TARGETS)
  get_filename_component(tgt ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" what ${tgt})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/data/fuzz/${what})
    set(seeds ${CMAKE_CURRENT_SOURCE_DIR}/data/fuzz/${what})
  elseif(DEFINED AF_FUZZ_SEEDS_${what} AND EXISTS "${AF_FUZZ_SEEDS_${what}}")
    set(seeds ${AF_FUZZ_SEEDS_${what}})
  else()
    set(seeds ${CMAKE_CURRENT_SOURCE_DIR}/data)
  endif()
  af_add_test(NAME test_fuzz_${what}_corpus
              SOURCES ${src} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_main.c
              LABELS unit ARGS ${seeds} TIMEOUT 120)
  if(AF_FUZZ)
    add_executable(${tgt} ${src})
    target_link_libraries(${tgt} PRIVATE artflow_core)
    target_compile_options(${tgt} PRIVATE -fsanitize=fuzzer)
    target_link_options(${tgt} PRIVATE -fsanitize=fuzzer)
  endif()
endforeach()
