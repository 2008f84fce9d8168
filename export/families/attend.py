"""CNN feature grid + LSTM with additive attention, "show, attend and tell" (Xu et al. 2015).

Each step scores the grid cells against the previous hidden state (Bahdanau attention), gates the
attended context, and feeds it with the word embedding to the LSTM. The step returns the
attention weights as an extra output: the runtime's per-token attention map.

The grid and its attention keys are memory, one copy per image: the beams of an image become an
extra axis of the score computation instead of copies of the grid.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import ReferenceCaptioner, rnn_state
from .cnn import Backbone


class ShowAttendTell(ReferenceCaptioner):
    family = "show-attend-tell"
    memory_names = ("features", "keys", "init_h", "init_c")
    step_memory_names = ("features", "keys")
    step_extras = ("attention",)

    def __init__(self, config):
        super().__init__(config)
        channels = config.get("channels", 128)
        embed, hidden, att = config.get("embed", 128), config.get("hidden", 384), config.get("attention", 128)
        self.cnn = Backbone(channels)
        self.grid_pos = nn.Parameter(torch.zeros(1, (self.image_size // 16) ** 2, channels))
        self.key = nn.Linear(channels, att)
        self.query = nn.Linear(hidden, att)
        self.score = nn.Linear(att, 1)
        self.gate = nn.Linear(hidden, channels)
        self.init_h = nn.Linear(channels, hidden)
        self.init_c = nn.Linear(channels, hidden)
        self.embed = nn.Embedding(self.vocab_size, embed)
        self.cell = nn.LSTMCell(embed + channels, hidden)
        self.dropout = nn.Dropout(config.get("dropout", 0.2))
        self.out = nn.Linear(hidden + channels, self.vocab_size)
        self.hidden = hidden

    @property
    def attention_grid(self):
        side = self.image_size // 16
        return (side, side)

    def state_specs(self):
        return rnn_state(self.hidden)

    def encode(self, pixels):
        grid = self.cnn(pixels)
        features = grid.flatten(2).transpose(1, 2) + self.grid_pos       # [B, S, C]
        mean = features.mean(dim=1)
        return features, self.key(features), torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def step(self, input_ids, features, keys, h, c):
        b, s, _ = keys.shape
        query = self.query(h).reshape(b, -1, 1, keys.shape[2])            # [B, beams, 1, A]
        scores = self.score(torch.tanh(keys.unsqueeze(1) + query)).squeeze(-1)   # [B, beams, S]
        weights = torch.softmax(scores, dim=-1)
        context = torch.matmul(weights, features).reshape(h.shape[0], -1)  # [N, C]
        context = torch.sigmoid(self.gate(h)) * context
        h, c = self.cell(torch.cat([self.embed(input_ids[:, -1]), context], dim=1), (h, c))
        logits = self.out(self.dropout(torch.cat([h, context], dim=1)))
        return logits, h, c, weights.reshape(h.shape[0], s)

    def forward_train(self, pixels, input_ids):
        features, keys, h, c = self.encode(pixels)
        k = input_ids.shape[0] // features.shape[0]
        h, c = h.repeat_interleave(k, dim=0), c.repeat_interleave(k, dim=0)
        logits = []
        for t in range(input_ids.shape[1]):
            step_logits, h, c, _ = self.step(input_ids[:, t:t + 1], features, keys, h, c)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)
