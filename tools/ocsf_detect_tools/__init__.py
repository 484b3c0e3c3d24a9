"""ocsf-detect's tools: the command line, training, the traffic simulator, the local AWS
emulator, runner and API, the demo, evaluation and benchmarks. Never shipped in a Lambda
layer; the functions import only the runtime package ``ocsf_detect``."""

from ocsf_detect import __version__

__all__ = ["__version__"]
