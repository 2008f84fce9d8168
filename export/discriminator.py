"""A learned judge of captions, the GAN seed's reward: does this caption belong to this image?

A GRU reads the caption's tokens, a linear layer the image's pooled CNN features; a small head scores
the pair. It is trained to call (image, one of its reference captions) real and two kinds of pair
fake: (image, a caption the captioner drew for it) and (image, another image's reference caption), so
that fluent text alone does not pass: the caption has to fit the image.
"""
from __future__ import annotations

import torch
from torch import nn

from .families import PAD


class Discriminator(nn.Module):
    """logit of P(real) for (image features [N, C], caption tokens [N, L] after BOS, PAD-padded)."""

    def __init__(self, vocab_size: int, image_dim: int, *, embed: int = 64, hidden: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.rnn = nn.GRU(embed, hidden, batch_first=True)
        self.image = nn.Linear(image_dim, hidden)
        self.head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != PAD).sum(dim=1).clamp(min=1)
        outputs, _ = self.rnn(self.embed(tokens))
        text = outputs[torch.arange(tokens.shape[0]), lengths - 1]          # the state after the last token
        seen = torch.tanh(self.image(image))
        return self.head(torch.cat([text, seen, text * seen], dim=1)).squeeze(1)


def pad_to(rows: list[torch.Tensor]) -> torch.Tensor:
    """Token rows of different lengths as one PAD-padded [N, L] tensor."""
    longest = max([1, *(len(r) for r in rows)])
    out = torch.full((len(rows), longest), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def discriminator_step(judge: Discriminator, optimizer: torch.optim.Optimizer, image: torch.Tensor,
                       real: torch.Tensor, drawn: torch.Tensor, mismatched: torch.Tensor,
                       mismatched_image: torch.Tensor | None = None) -> dict[str, float]:
    """One update on a batch: `real` and `drawn` captions [B*, L] of the images `image` [B, C] (drawn may
    hold several rows per image, image-major), and `mismatched` captions of `mismatched_image` (default:
    `image`, row for row), other images' captions that do not describe it; none is allowed. The fakes'
    mean loss weighs as much as the real pairs'. Returns the loss and the accuracy at 0.5 on each kind."""
    judge.train()
    per_draw = drawn.shape[0] // image.shape[0]
    logits = {"real": judge(image, real), "drawn": judge(image.repeat_interleave(per_draw, 0), drawn)}
    if len(mismatched):
        logits["mismatched"] = judge(image if mismatched_image is None else mismatched_image, mismatched)
    bce = nn.functional.binary_cross_entropy_with_logits
    fakes = [bce(v, torch.zeros_like(v)) for k, v in logits.items() if k != "real"]
    loss = bce(logits["real"], torch.ones_like(logits["real"])) + sum(fakes) / len(fakes)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    judge.eval()
    with torch.no_grad():
        accuracy = {f"acc_{k}": float(((v > 0) == (k == "real")).float().mean()) for k, v in logits.items()}
    return {"loss": float(loss.detach()), **accuracy}


@torch.no_grad()
def reward(judge: Discriminator, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """P(real) of each caption row for its image (rows image-major, any number per image): [rows]."""
    per_row = tokens.shape[0] // image.shape[0]
    return torch.sigmoid(judge(image.repeat_interleave(per_row, 0), tokens))
