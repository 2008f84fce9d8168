"""CNN feature grid + LSTM with additive attention, "show, attend and tell" (Xu et al. 2015).

Each step scores the grid cells against the previous hidden state (Bahdanau attention), gates the
attended context, and feeds it with the word embedding to the LSTM. The step returns the
attention weights as an extra output: the runtime's per-token attention map.

`cell="gru"` (config) swaps the LSTM for a GRU, the seed's "CNN + GRU with Bahdanau attention": its
state is h alone, so the memory has no init_c and the step takes and returns one state tensor.

The grid and its attention keys are memory, one copy per image: the beams of an image become an
extra axis of the score computation instead of copies of the grid.
"""
from __future__ import annotations

import torch
from torch import nn

from edge_caption.errors import ExportError

from .base import ReferenceCaptioner, rnn_state
from .cnn import Backbone

CELLS = {"lstm": ("h", "c"), "gru": ("h",)}     # cell -> its state tensors, in step argument order


class ShowAttendTell(ReferenceCaptioner):
    family = "show-attend-tell"
    memory_names: tuple[str, ...] = ("features", "keys", "init_h", "init_c")   # per instance: a GRU has no init_c
    step_memory_names = ("features", "keys")
    step_extras = ("attention",)

    def __init__(self, config):
        super().__init__(config)
        self.cell_type = config.get("cell", "lstm")
        if self.cell_type not in CELLS:
            raise ExportError(f"unknown cell {self.cell_type!r} for {self.family}; choose one of: {', '.join(CELLS)}")
        channels = config.get("channels", 128)
        embed, hidden, att = config.get("embed", 128), config.get("hidden", 384), config.get("attention", 128)
        self.cnn = Backbone(channels)
        self.grid_pos = nn.Parameter(torch.zeros(1, (self.image_size // 16) ** 2, channels))
        self.key = nn.Linear(channels, att)
        self.query = nn.Linear(hidden, att)
        self.score = nn.Linear(att, 1)
        self.gate = nn.Linear(hidden, channels)
        self.init_h = nn.Linear(channels, hidden)
        if self.cell_type == "lstm":    # made in this order so an LSTM's seed gives the weights it always gave
            self.init_c = nn.Linear(channels, hidden)
        else:
            self.memory_names = ("features", "keys", "init_h")
        self.embed = nn.Embedding(self.vocab_size, embed)
        self.cell = (nn.GRUCell if self.cell_type == "gru" else nn.LSTMCell)(embed + channels, hidden)
        self.dropout = nn.Dropout(config.get("dropout", 0.2))
        self.out = nn.Linear(hidden + channels, self.vocab_size)
        self.hidden = hidden

    @property
    def attention_grid(self):
        side = self.image_size // 16
        return (side, side)

    def state_specs(self):
        return rnn_state(self.hidden, CELLS[self.cell_type])

    def encode(self, pixels):
        grid = self.cnn(pixels)
        features = grid.flatten(2).transpose(1, 2) + self.grid_pos       # [B, S, C]
        mean = features.mean(dim=1)
        init = [torch.tanh(self.init_h(mean))]
        if self.cell_type == "lstm":
            init.append(torch.tanh(self.init_c(mean)))
        return features, self.key(features), *init

    def step(self, input_ids, features, keys, *state):
        """(logits, *new state, attention weights); the state is (h, c) for an LSTM, (h,) for a GRU."""
        h = state[0]
        b, s, _ = keys.shape
        query = self.query(h).reshape(b, -1, 1, keys.shape[2])            # [B, beams, 1, A]
        scores = self.score(torch.tanh(keys.unsqueeze(1) + query)).squeeze(-1)   # [B, beams, S]
        weights = torch.softmax(scores, dim=-1)
        context = torch.matmul(weights, features).reshape(h.shape[0], -1)  # [N, C]
        context = torch.sigmoid(self.gate(h)) * context
        inputs = torch.cat([self.embed(input_ids[:, -1]), context], dim=1)
        state = (self.cell(inputs, h),) if self.cell_type == "gru" else self.cell(inputs, state)
        logits = self.out(self.dropout(torch.cat([state[0], context], dim=1)))
        return logits, *state, weights.reshape(h.shape[0], s)

    def forward_train(self, pixels, input_ids):
        features, keys, *state = self.encode(pixels)
        k = input_ids.shape[0] // features.shape[0]
        state = [t.repeat_interleave(k, dim=0) for t in state]
        logits = []
        for t in range(input_ids.shape[1]):
            step_logits, *state, _ = self.step(input_ids[:, t:t + 1], features, keys, *state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)
