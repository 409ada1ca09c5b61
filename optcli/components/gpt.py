"""The built-in language model: a decoder-only transformer in the style of nanoGPT.

Token and position embeddings, `layers` pre-norm blocks (causal self-attention through
`F.scaled_dot_product_attention`, then a GELU MLP four times as wide), a final LayerNorm, and a head
tied to the token embedding. Weights are drawn as nanoGPT draws them (normal, std 0.02; the residual
projections' std scaled by 1/sqrt(2·layers)), in the order the modules are made, so that a
hand-written copy of this file seeded alike starts from the same weights.

Its parameters fall into the kinds `optimizer.parts` selects: the attention and MLP weights are
`matrices` (Muon's), the embeddings (with the tied head) `embeddings`, the LayerNorms `norms`, the
biases `biases`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from optcli.errors import ConfigError


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.projection = nn.Linear(width, width)
        self.projection_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        query, key, value = self.qkv(x).split(width, dim=2)
        query, key, value = (
            part.view(batch, time, self.heads, width // self.heads).transpose(1, 2)
            for part in (query, key, value)
        )
        attended = functional.scaled_dot_product_attention(
            query, key, value, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        return self.projection_dropout(self.projection(attended.transpose(1, 2).reshape(batch, time, width)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, dropout)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """tokens [batch, time] (int64, time ≤ block_size) -> logits [batch, time, vocab_size]."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        layers: int = 4,
        heads: int = 4,
        width: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(vocab_size, block_size, layers, heads, width) < 1:
            raise ConfigError(
                "layers: vocab_size, block_size, layers, heads and width must all be at least 1"
            )
        if width % heads:
            raise ConfigError(
                f"width: {width} does not split into {heads} heads; make it a multiple of heads"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {dropout}")
        self.block_size = block_size
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(block_size, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # tied: one matrix reads and writes tokens
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding) and module is not self.head:
                residual = name.endswith(("attention.projection", "mlp.2"))
                nn.init.normal_(module.weight, std=0.02 / (math.sqrt(2 * layers) if residual else 1.0))
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        time = tokens.shape[1]
        if time > self.block_size:
            raise ValueError(f"a sequence of {time} tokens is longer than block_size {self.block_size}")
        positions = torch.arange(time, device=tokens.device)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # type: ignore[no-any-return]
