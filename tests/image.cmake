# Image ingest: decoding (libvips, Pillow-compatible conversion), the
# Pillow-exact resize, normalisation, bad inputs, decode/preprocess stages.
# Fixtures: tests/data/image/ (make_fixtures.py, Debian python3-pil 9.4).
af_add_test(NAME test_image_resize SOURCES test_image_resize.c LABELS unit)
af_add_test(NAME test_image_decode SOURCES test_image_decode.c LABELS unit)
af_add_test(NAME test_image_bad SOURCES test_image_bad.c LABELS unit)
af_add_test(NAME test_image_norm SOURCES test_image_norm.c LABELS cl)
af_add_test(NAME test_image_stage SOURCES test_image_stage.c LABELS cl)

# Benchmark program (not a test): build-dir/tests/image_bench [n_large] [n_small]
add_executable(image_bench test_image_bench.c)
target_link_libraries(image_bench PRIVATE af_testlib)
