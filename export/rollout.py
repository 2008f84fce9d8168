"""Captions drawn from a reference captioner in PyTorch, for sequence-level training (finetune.py).

`rollout` runs the family's own step contract (the one the bundle exports) under no_grad, greedy or
sampled; `sequence_logprob` scores the drawn tokens again with gradients in one teacher-forced pass
(`forward_train`), so the policy gradient flows through exactly the model that drew them.
"""
from __future__ import annotations

import torch

from .families import BOS, EOS, PAD


def initial_state(model, memory: dict[str, torch.Tensor], rows: int) -> list[torch.Tensor]:
    """The step's state for `rows` = images x draws: seeded from memory (RNN h, c) or empty (a KV cache)."""
    images = next(iter(memory.values())).shape[0]
    state = []
    for spec in model.state_specs():
        if spec.init.startswith("memory:"):
            state.append(memory[spec.init.split(":", 1)[1]].repeat_interleave(rows // images, dim=0))
        else:       # a growing cache starts with no positions
            shape = [rows if d == "N" else 0 if isinstance(d, str) else d for d in spec.shape]
            state.append(torch.zeros(shape, dtype=getattr(torch, spec.dtype)))
    return state


@torch.no_grad()
def rollout(model, pixels: torch.Tensor, draws: int = 1, *, greedy: bool = False, max_new_tokens: int = 20,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids [images x draws, L] after BOS: EOS included where drawn, PAD after it. Rows of an image
    are adjacent (image-major), as the step contract wants them."""
    memory = dict(zip(model.memory_names, model.encode(pixels)))
    step_memory = [memory[n] for n in model.step_memory_names]
    rows = pixels.shape[0] * draws
    state = initial_state(model, memory, rows)
    token = torch.full((rows, 1), BOS, dtype=torch.long)
    done = torch.zeros(rows, dtype=torch.bool)
    drawn = []
    for _ in range(max_new_tokens):
        logits, *rest = model.step(token, *step_memory, *state)
        state = rest[:len(state)]
        if greedy:
            token = logits.argmax(dim=-1, keepdim=True)
        else:
            token = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1, generator=generator)
        token = token.masked_fill(done.unsqueeze(1), PAD)
        drawn.append(token)
        done |= token.squeeze(1) == EOS
        if bool(done.all()):
            break
    return torch.cat(drawn, dim=1)


def sequence_logprob(model, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Sum of log p(token) over each row's tokens (PAD excluded), with gradients: [rows]."""
    inputs = torch.cat([torch.full((tokens.shape[0], 1), BOS, dtype=torch.long), tokens[:, :-1]], dim=1)
    inputs = inputs.masked_fill(inputs == PAD, EOS)     # positions after EOS are masked out below anyway
    logp = torch.log_softmax(model.forward_train(pixels, inputs), dim=-1)
    picked = logp.gather(2, tokens.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (picked * (tokens != PAD)).sum(dim=1)


def texts(model, tokens: torch.Tensor) -> list[str]:
    """The captions of token rows: the vocabulary's words up to EOS, specials dropped."""
    words = model.vocab
    out = []
    for row in tokens.tolist():
        kept = []
        for t in row:
            if t in (EOS, PAD):
                break
            if not words[t].startswith("["):
                kept.append(words[t])
        out.append(" ".join(kept))
    return out
