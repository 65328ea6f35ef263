"""cvplug: machine-learned collective variables as first-class OpenMM forces.

Import order matters: torch is imported before openmm so openmm-torch's plugins find the NVIDIA libraries.
"""
import torch  # noqa: F401  (must precede openmm, see README "Traps")

__version__ = "0.1.0"

from .cv import CollectiveVariable, CVFileError, LoadedCV, Normalization, load_cv  # noqa: E402
from .attach import attach, AttachedCV, cv_forces, native_forces  # noqa: E402

__all__ = ["CollectiveVariable", "Normalization", "LoadedCV", "CVFileError", "load_cv", "attach", "AttachedCV",
           "cv_forces", "native_forces", "__version__"]
