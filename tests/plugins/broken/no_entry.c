/* Broken on purpose: a shared library without the llmc entry symbol. */
__attribute__((visibility("default"))) int not_an_llmc_plugin(void) { return 42; }
