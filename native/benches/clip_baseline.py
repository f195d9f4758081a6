"""PyTorch baseline for `xtal bench --clip`: the original CLIP system's training step written
from its description (byte embedding + fixed sinusoidal positions, pre-norm blocks with
per-head q/k/v projections, GELU MLP, padded keys masked, final LayerNorm, masked mean, linear
projections, L2, symmetric cross-entropy with a learnable temperature; AdamW), on the CPU with
all threads or on the first CUDA GPU. Prints {"pairs_per_second": …, "threads": …, "gpu": …}
as JSON.
Usage: python3 native/benches/clip_baseline.py --config default|small --steps 3 [--device cuda]"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {"default": (512, 6, 8, 256, 512), "small": (128, 2, 4, 128, 128)}


class Head(nn.Module):
    def __init__(self, width, head):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, head) for _ in range(3))
        self.scale = head ** -0.5

    def forward(self, x, key_pad):
        a = (self.q(x) @ self.k(x).transpose(1, 2)) * self.scale
        a = a.masked_fill(key_pad[:, None, :], float("-inf"))
        return a.softmax(-1) @ self.v(x)


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.heads = nn.ModuleList(Head(width, width // heads) for _ in range(heads))
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, pad):
        h = self.ln1(x)
        x = x + self.out(torch.cat([head(h, pad) for head in self.heads], -1))
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    def __init__(self, width, layers, heads, length, dim):
        super().__init__()
        self.emb = nn.Embedding(256, width)
        pos = torch.arange(length)[:, None]
        div = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        pe = torch.zeros(length, width)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)

    def forward(self, ids):
        pad = ids == 0
        x = self.emb(ids) + self.pe[: ids.shape[1]]
        for b in self.blocks:
            x = b(x, pad)
        x = self.ln(x)
        keep = (~pad).float()[..., None]
        x = (x * keep).sum(1) / keep.sum(1).clamp_min(1)
        return F.normalize(self.proj(x), dim=-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="default", choices=CONFIGS)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    width, layers, heads, length, dim = CONFIGS[a.config]
    torch.set_default_device(a.device)  # parameters, buffers and inputs all live there
    torch.manual_seed(0)
    text = TextEncoder(width, layers, heads, length, dim)
    graph = nn.Linear(256, dim)
    scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(text.parameters()) + list(graph.parameters()) + [scale]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    batch = 64
    ids = torch.randint(1, 256, (batch, length))
    g = torch.randn(batch, 256)
    labels = torch.arange(batch)

    def step():
        s, t = F.normalize(graph(g), dim=-1), text(ids)
        logits = scale.exp() * s @ t.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    rate = a.steps * batch / (time.perf_counter() - start)
    gpu = torch.cuda.get_device_name() if a.device == "cuda" else None
    print(json.dumps({"pairs_per_second": rate, "threads": torch.get_num_threads(), "gpu": gpu,
                      "config": a.config}))


if __name__ == "__main__":
    main()
