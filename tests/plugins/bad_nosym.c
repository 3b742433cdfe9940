/* A shared library without the af_plugin_entry symbol (tests/pipeline/test_plugin.c). */
__attribute__((visibility("default"))) int not_an_artflow_plugin(void) {
  return 42;
}
