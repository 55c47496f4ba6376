"""The regime values the measure layer can run: the one list of each (torch-free, so that a suite is
checked against them without importing torch). Their defaults are ``harness.suite.regime.DEFAULT``."""
PRECISIONS = ("fp32", "bf16", "fp16")  # autocast dtype of every forward (fp32: none)
SDPA_BACKENDS = ("auto", "flash", "efficient", "cudnn", "math")  # auto: torch's choice per call
COMPILE_MODES = ("off", "default", "max-autotune")  # torch.compile mode of the timed model
