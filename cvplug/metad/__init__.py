"""Well-tempered metadynamics along a CV: settings, the two bias engines behind one protocol, the run driver.

One file, one job:

- :mod:`~cvplug.metad.settings`: :class:`WellTempered`, the bias settings and their defaults;
- :mod:`~cvplug.metad.run`: :func:`run_metadynamics` (a run that owns its output, resumes, writes the FES) and
  :func:`build_metadynamics` (the Simulation with its bias, nothing written);
- :mod:`~cvplug.metad.engine`: the :class:`BiasEngine` protocol; :mod:`~cvplug.metad.hills_engine` (default:
  CV and bias in one ``openmm.PythonForce``) and :mod:`~cvplug.metad.openmm_engine` (``openmm.app.Metadynamics``)
  implement it;
- :mod:`~cvplug.metad.hills` (the bias as a sum of hills, hills files), :mod:`~cvplug.metad.grid` (that sum on a
  grid), :mod:`~cvplug.metad.fastcv` (the NumPy CV path);
- :mod:`~cvplug.metad.integrator` (stride, stepping), :mod:`~cvplug.metad.colvar` (the colvar file),
  :mod:`~cvplug.metad.fes` (FES files, reweighting).
"""
from .engine import BiasEngine
from .fes import reweighting_factors, shared_free_energy, shared_reweighting_factors
from .hills import HillsBias
from .run import BiasedSimulation, MetadynamicsResult, build_metadynamics, run_metadynamics
from .settings import ENGINES, WellTempered

__all__ = ["WellTempered", "ENGINES", "run_metadynamics", "build_metadynamics", "BiasedSimulation",
           "MetadynamicsResult", "BiasEngine", "HillsBias", "reweighting_factors", "shared_free_energy",
           "shared_reweighting_factors"]
