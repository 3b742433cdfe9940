# The op library (cl/ops.h) against plain-C references.
af_add_test(NAME test_ops SOURCES test_ops.c ref_ops.c LABELS cl)
af_add_test(NAME test_devprofile SOURCES test_devprofile.c LABELS unit)
