"""CNN + LSTM, "show and tell" (Vinyals et al. 2015): the image is the LSTM's first input.

The encoder runs the CNN, pools it to one vector, and feeds that vector through the LSTM cell
once; the resulting (h, c) is the state the first word starts from. The step reads no memory.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import ReferenceCaptioner, rnn_state
from .cnn import Backbone


class ShowTell(ReferenceCaptioner):
    family = "show-tell"
    memory_names = ("init_h", "init_c")
    step_memory_names = ()

    def __init__(self, config):
        super().__init__(config)
        channels, embed, hidden = config.get("channels", 128), config.get("embed", 128), config.get("hidden", 384)
        self.cnn = Backbone(channels)
        self.image_embed = nn.Linear(channels, embed)
        self.embed = nn.Embedding(self.vocab_size, embed)
        self.cell = nn.LSTMCell(embed, hidden)
        self.dropout = nn.Dropout(config.get("dropout", 0.2))
        self.out = nn.Linear(hidden, self.vocab_size)
        self.hidden = hidden

    def state_specs(self):
        return rnn_state(self.hidden)

    def encode(self, pixels):
        image = self.image_embed(self.cnn(pixels).mean(dim=(2, 3)))
        h, c = self.cell(image)
        return h, c

    def step(self, input_ids, h, c):
        h, c = self.cell(self.embed(input_ids[:, -1]), (h, c))
        return self.out(self.dropout(h)), h, c

    def forward_train(self, pixels, input_ids):
        h, c = self.encode(pixels)
        h = h.repeat_interleave(input_ids.shape[0] // h.shape[0], dim=0)
        c = c.repeat_interleave(input_ids.shape[0] // c.shape[0], dim=0)
        logits = []
        for t in range(input_ids.shape[1]):
            step_logits, h, c = self.step(input_ids[:, t:t + 1], h, c)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)
