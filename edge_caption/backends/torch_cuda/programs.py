"""Loading the bundle's `torch.export` programs (export/torch_programs.py saves them)."""
from __future__ import annotations

import torch


def size_oblivious():
    """torch.export's setting under which a dynamic axis may be 1 (one image, one row): the programs
    are exported and loaded under it (export/torch_programs.py says why)."""
    import torch.fx.experimental._config as fx_config

    return fx_config.patch(backed_size_oblivious=True)


def load_program(path, device: torch.device | None = None):
    """A saved program as a callable module on `device`, its "!= 1" shape guards not checked."""
    with size_oblivious():
        program = torch.export.load(str(path))
        if device is not None and device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        return program.module(check_guards=False)
