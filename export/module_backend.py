"""The runtime's backend protocol over a split model's PyTorch modules.

The same decoding loop then runs on the PyTorch model and on the exported graphs, which is how
tests prove an export token-exact and how training measures val CIDEr, with no second decoder.
"""
from __future__ import annotations

import numpy as np


class ModuleBackend:
    name = "torch-module"

    def __init__(self, split):
        self.split = split
        self._state_inputs = [s.input for s in split.state]

    def encode(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            outputs = self.split.encoder(torch.from_numpy(np.ascontiguousarray(pixel_values)))
        return {name: t.numpy() for name, t in zip(self.split.memory_names, outputs)}

    def step(self, input_ids, memory, state):
        import torch

        args = [input_ids, *[memory[n] for n in self.split.step_memory], *[state[n] for n in self._state_inputs]]
        with torch.no_grad():
            outputs = [t.numpy() for t in self.split.step(*[torch.from_numpy(np.ascontiguousarray(a)) for a in args])]
        n_state = len(self._state_inputs)
        new_state = dict(zip(self._state_inputs, outputs[1:1 + n_state]))
        extras = dict(zip(self.split.step_extras, outputs[1 + n_state:]))
        return outputs[0], new_state, extras

    def close(self) -> None:
        pass
