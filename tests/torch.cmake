# Model-file readers: PyTorch zip checkpoints, pickle subset, safetensors,
# HF config; fixtures in tests/data/torch (see make_fixtures.py there).
af_add_test(NAME test_torch_read SOURCES test_torch_read.c LABELS unit TIMEOUT 60)
af_add_test(NAME test_torch_hostile SOURCES test_torch_hostile.c LABELS unit TIMEOUT 60)
af_add_test(NAME test_torch_units SOURCES test_torch_units.c LABELS unit TIMEOUT 60)
