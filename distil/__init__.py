"""DISTIL on the appliance: distillates keep derived streams (frequency, power, state
changes, angle differences, your own) current as raw data arrive, late or re-imported.

- :mod:`distil.distillate`: the model (:class:`Distillate`, :class:`Instance`);
- :mod:`distil.rebase`: ``passthrough`` and ``pad_snap(hz)``;
- :mod:`distil.ranges`: time-range arithmetic;
- :mod:`distil.engine`: changed ranges in, outputs recomputed chunk by chunk;
- :mod:`distil.state`: the engine's state in SQLite beside the queue;
- :mod:`distil.btrdbio`: BTrDB through the official client;
- :mod:`distil.builtins` and :mod:`distil.catalog`: the built-ins and which instances run;
- :mod:`distil.userdir`: the operator's own distillates; :mod:`distil.cli`: ``qss-distil``.
"""
from .distillate import Distillate, Input, Instance, Outputs, Series
from .rebase import pad_snap, passthrough

__all__ = ["Distillate", "Input", "Instance", "Outputs", "Series", "pad_snap",
           "passthrough"]
