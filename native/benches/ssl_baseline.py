"""PyTorch baseline for `xtal bench --ssl`: the training step of the original system's six FTCP
self-supervised blocks, written from its description (seed "SSL Training - 6-Block Multi-Modal
Architecture"), on the CPU with all threads. Prints per-block samples/s as JSON (last line).

From the seed: each block's architecture family (1 CNN + attention, 2 Transformer, 3 GNN,
4 GAT, 5 Transformer over k-space, 6 residual CNN), its output width (256/256/512/256/512/256),
its pretext tasks, lr 1e-4 and weight decay 1e-5; from the original code, AdamW and gradient
clipping at 1.0. Where the seed leaves sizes open, xtal's shapes are used so that the two do the
same arithmetic: width 64, 2 layers, 4 heads, 4 element columns, dropout 0, pre-norm GELU
layers with a 2·width MLP; Block 3 passes messages over all site pairs, filtered by a 16-function
radial basis of periodic distances; Block 4 attends across sites (GATv1 scores plus a distance
bias); Block 5 is a Transformer over the 59 k-points; Block 6 a strided residual CNN over a
2×92×59 map. The original's bugs are not copied: masked values are zeroed in the input (a learned
mask embedding stands in), and Block 4's attention mixes sites, not heads.
Inputs are synthetic, seeded; Blocks 3 and 4 draw 1…`--sites` sites per cell, or, with
`--site-batches`, time exactly the batches given (each cell's site count, padded to the largest in
its batch), which `xtal bench --ssl` passes so that both sides run the same shapes. Each timed step
draws and masks its batch, runs forward and backward, and takes one AdamW step, as xtal's step does.
Usage: python3 native/benches/ssl_baseline.py --blocks 1,2,3,4,5,6 --steps 3 --batch-size 32 --sites 24
       [--site-batches 3,5,7/12,2,9/…]"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTH, LAYERS, HEADS, ELEMENT_COLUMNS = 64, 2, 4, 4
ELEMENTS, SYSTEMS, KPOINTS, PROPERTIES = 103, 7, 59, 92
BASIS, BASIS_MAX = 16, 12.0  # radial basis functions over 0–12 Å
FREQUENCIES, HIDDEN_COLUMNS = 8, 8


def transformer(width):
    layer = nn.TransformerEncoderLayer(width, HEADS, 2 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)


def hide(tokens, masked, mask_embedding):
    """Replace each hidden token (masked = 1) by the learned mask embedding."""
    m = masked[..., None]
    return tokens * (1 - m) + mask_embedding * m


def weighted_mean(values, weights):
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def masked_mean(x, valid):
    return (x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)


def at_least_one(masked, counts):
    """Hide one random item of every sample with two or more items and nothing hidden yet."""
    pick = (torch.rand(len(counts)) * counts).long().clamp_max(masked.shape[1] - 1)
    needs = (counts >= 2) & (masked.sum(1) == 0)
    masked[needs, pick[needs]] = 1.0
    return masked


class ElementsBlock(nn.Module):
    """Block 1: a 1-D CNN along Z turns each element column into a token; attention mixes them.
    Pretext: masked element modelling (one of two or more columns hidden, its element predicted)."""

    def __init__(self, w=WIDTH, out=256):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 5, padding=2)
        self.token = nn.Linear(8 * ELEMENTS, w)
        self.mask_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.attention = transformer(w)
        self.output = nn.Linear(w, out)
        self.element_head = nn.Linear(w + out, ELEMENTS)

    @staticmethod
    def batch(n, sites):
        counts = torch.randint(1, ELEMENT_COLUMNS + 1, (n,))
        present = (torch.arange(ELEMENT_COLUMNS) < counts[:, None]).float()
        z = torch.randint(0, ELEMENTS, (n, ELEMENT_COLUMNS))
        masked = at_least_one(torch.zeros(n, ELEMENT_COLUMNS), counts)
        columns = F.one_hot(z, ELEMENTS).float() * (present * (1 - masked))[..., None]
        return dict(columns=columns, present=present, masked=masked,
                    target=z[torch.arange(n), masked.argmax(1)], has_target=masked.sum(1))

    def loss(self, b):
        n, e, z = b["columns"].shape
        conv = F.relu(self.conv(b["columns"].reshape(n * e, 1, z)))
        tokens = hide(self.token(conv.reshape(n, e, -1)), b["masked"], self.mask_embedding)
        states = self.attention(tokens, src_key_padding_mask=b["present"] == 0)
        features = self.output(masked_mean(states, b["present"]))
        hidden = (states * b["masked"][..., None]).sum(1)
        logits = self.element_head(torch.cat([hidden, features], 1))
        return weighted_mean(F.cross_entropy(logits, b["target"], reduction="none"), b["has_target"])


class LatticeBlock(nn.Module):
    """Block 2: the six lattice parameters as tokens through a Transformer. Pretexts: the
    crystal system (7 classes) and one or two masked parameters."""

    def __init__(self, w=WIDTH, out=256):
        super().__init__()
        self.value = nn.Linear(1, w)
        self.parameter_embedding = nn.Parameter(torch.randn(6, w) * 0.02)
        self.mask_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.attention = transformer(w)
        self.output = nn.Linear(6 * w, out)
        self.system_head = nn.Linear(out, SYSTEMS)
        self.value_head = nn.Linear(w + out, 1)

    @staticmethod
    def batch(n, sites):
        targets = torch.rand(n, 6)
        first = torch.randint(0, 6, (n,))
        # Half the time a second parameter of the same kind: lengths and angles each keep one.
        second = (first + 1 + torch.randint(0, 2, (n,))) % 3 + 3 * (first // 3)
        masked = F.one_hot(first, 6).float() + F.one_hot(second, 6).float() * (torch.rand(n, 1) < 0.5)
        return dict(values=targets * (1 - masked), targets=targets, masked=masked,
                    system=torch.randint(0, SYSTEMS, (n,)))

    def loss(self, b):
        n = b["values"].shape[0]
        tokens = hide(self.value(b["values"][..., None]), b["masked"], self.mask_embedding)
        states = self.attention(tokens + self.parameter_embedding)
        features = self.output(states.reshape(n, -1))  # flattened: which parameter matters
        system = F.cross_entropy(self.system_head(features), b["system"])
        f = features[:, None].expand(-1, 6, -1)
        predicted = self.value_head(torch.cat([states, f], 2)).squeeze(2)
        return 0.5 * system + 0.5 * weighted_mean((predicted - b["targets"]) ** 2, b["masked"])


def site_graph(n, sites, mask_fraction, counts=None):
    """Random cells with 1…`sites` sites (or `counts` sites each, padded to the largest): valid
    flags, hidden sites, cos/sin coordinates and shortest periodic distances (over the 27
    neighbouring images)."""
    if counts is None:
        counts = torch.randint(1, sites + 1, (n,))
    else:
        n, sites, counts = len(counts), max(counts), torch.tensor(counts)
    valid = (torch.arange(sites) < counts[:, None]).float()
    hidden = (torch.rand(n, sites) < mask_fraction).float() * valid * (counts[:, None] >= 2)
    hidden = at_least_one(hidden, counts)
    frac = torch.rand(n, sites, 3)
    cell = torch.diag_embed(3 + 7 * torch.rand(n, 3)) + torch.randn(n, 3, 3).triu(1)
    d = frac[:, None] - frac[:, :, None]
    d = d - d.round()
    images = torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0])] * 3)
    cart = (d[..., None, :] + images) @ cell[:, None, None]  # [n, s, s, 27, 3]
    distances = cart.norm(dim=-1).min(-1).values
    neighbours = valid[:, :, None] * valid[:, None] * (1 - torch.eye(sites))
    angle = 2 * math.pi * frac
    coords = torch.stack([angle.cos(), angle.sin()], -1).reshape(n, sites, 6) * valid[..., None]
    return valid, hidden, coords, distances * neighbours, neighbours


def edge_features(distances, known):
    """Gaussian radial basis of the known distances plus a 'known' channel: [n, s, s, 17]."""
    centres = torch.linspace(0, BASIS_MAX, BASIS)
    step = BASIS_MAX / (BASIS - 1)
    rbf = torch.exp(-0.5 * ((distances[..., None] - centres) / step) ** 2)
    return torch.cat([rbf * known[..., None], known[..., None]], -1)


class SiteLayer(nn.Module):
    """Continuous-filter message passing: messages from every site, filtered by the edge."""

    def __init__(self, w):
        super().__init__()
        self.filter, self.message = nn.Linear(BASIS + 1, w), nn.Linear(w, w)
        self.update, self.norm = nn.Linear(2 * w, w), nn.LayerNorm(w)

    def forward(self, h, edges, neighbours):
        filters = F.silu(self.filter(edges)) * neighbours[..., None]
        m = (filters * self.message(h)[:, None]).sum(2) / neighbours.sum(2, keepdim=True).clamp_min(1)
        return self.norm(h + self.update(F.silu(torch.cat([h, m], 2))))


class SitesBlock(nn.Module):
    """Block 3: a GNN over all site pairs. Pretexts: 15 % of sites hidden (coordinates and every
    distance to them removed); their coordinates and distances predicted."""

    def __init__(self, w=WIDTH, out=512):
        super().__init__()
        self.embed = nn.Linear(7, w)
        self.mask_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.layers = nn.ModuleList(SiteLayer(w) for _ in range(LAYERS))
        self.output = nn.Linear(w, out)
        self.coordinate_head = nn.Linear(w + out, 6)
        self.pair_left, self.pair_right = nn.Linear(w, w), nn.Linear(w, w)
        self.pair_context, self.distance_head = nn.Linear(out, w), nn.Linear(w, 1)

    @staticmethod
    def batch(n, sites, counts=None):
        valid, hidden, coords, distances, neighbours = site_graph(n, sites, 0.15, counts)
        n, sites = valid.shape
        touches_hidden = ((hidden[:, :, None] + hidden[:, None]) > 0).float() * neighbours
        known = neighbours - touches_hidden
        nodes = torch.cat([coords * (1 - hidden[..., None]), hidden[..., None]], 2)
        return dict(nodes=nodes, valid=valid, masked=hidden, distances=distances * known,
                    known=known, neighbours=neighbours, coords=coords,
                    distance_targets=distances / 10, distance_weights=touches_hidden)

    def loss(self, b):
        h = hide(self.embed(b["nodes"]), b["masked"], self.mask_embedding)
        edges = edge_features(b["distances"], b["known"])
        for layer in self.layers:
            h = layer(h, edges, b["neighbours"])
        features = self.output(masked_mean(h, b["valid"]))
        f = features[:, None].expand(-1, h.shape[1], -1)
        coords = self.coordinate_head(torch.cat([h, f], 2))
        coord_loss = weighted_mean((coords - b["coords"]) ** 2, b["masked"][..., None].expand(-1, -1, 6))
        pair = (self.pair_left(h)[:, :, None] + self.pair_right(h)[:, None]
                + self.pair_context(features)[:, None, None])
        distance = self.distance_head(F.silu(pair)).squeeze(3)
        distance_loss = weighted_mean((distance - b["distance_targets"]) ** 2, b["distance_weights"])
        return 0.6 * coord_loss + 0.4 * distance_loss


class GraphAttention(nn.Module):
    """GATv1 scores per head plus a per-head bias from the periodic distance, across sites."""

    def __init__(self, w):
        super().__init__()
        dh = w // HEADS
        self.project, self.output, self.norm = nn.Linear(w, w), nn.Linear(w, w), nn.LayerNorm(w)
        self.score_target = nn.Parameter(torch.randn(HEADS, dh) * dh ** -0.5)
        self.score_source = nn.Parameter(torch.randn(HEADS, dh) * dh ** -0.5)
        self.distance_bias = nn.Linear(BASIS + 1, HEADS)

    def forward(self, h, edges, valid):
        n, s, w = h.shape
        x = self.project(h).reshape(n, s, HEADS, -1).transpose(1, 2)  # [n, heads, s, dh]
        target = (x * self.score_target[:, None]).sum(-1, keepdim=True)
        source = (x * self.score_source[:, None]).sum(-1, keepdim=True).transpose(2, 3)
        bias = self.distance_bias(edges).permute(0, 3, 1, 2)
        padding = (valid[:, None, None] - 1) * 1e9  # padding sites are never attended to
        scores = F.leaky_relu(target + source, 0.2) + bias + padding
        attended = (scores.softmax(-1) @ x).transpose(1, 2).reshape(n, s, w)
        return self.norm(h + F.gelu(self.output(attended)))


class OccupancyBlock(nn.Module):
    """Block 4: a GAT across sites. Pretext: 20 % of sites lose their occupancy row, which is
    predicted (which element column the site holds) from the rest."""

    def __init__(self, w=WIDTH, out=256):
        super().__init__()
        self.embed = nn.Linear(ELEMENT_COLUMNS + 7, w)
        self.mask_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.layers = nn.ModuleList(GraphAttention(w) for _ in range(LAYERS))
        self.output = nn.Linear(w, out)
        self.occupancy_head = nn.Linear(w + out, ELEMENT_COLUMNS)

    @staticmethod
    def batch(n, sites, counts=None):
        valid, hidden, coords, distances, neighbours = site_graph(n, sites, 0.2, counts)
        n, sites = valid.shape
        column = torch.randint(0, ELEMENT_COLUMNS, (n, sites))
        occupancy = F.one_hot(column, ELEMENT_COLUMNS).float() * (valid * (1 - hidden))[..., None]
        nodes = torch.cat([occupancy, hidden[..., None], coords], 2)
        return dict(nodes=nodes, valid=valid, masked=hidden, distances=distances,
                    neighbours=neighbours, target=column, weight=hidden)

    def loss(self, b):
        h = hide(self.embed(b["nodes"]), b["masked"], self.mask_embedding)
        edges = edge_features(b["distances"], b["neighbours"])
        for layer in self.layers:
            h = layer(h, edges, b["valid"])
        features = self.output(masked_mean(h, b["valid"]))
        logits = self.occupancy_head(torch.cat([h, features[:, None].expand(-1, h.shape[1], -1)], 2))
        ce = F.cross_entropy(logits.flatten(0, 1), b["target"].flatten(), reduction="none")
        return weighted_mean(ce, b["weight"].flatten())


class ReciprocalBlock(nn.Module):
    """Block 5: each k-point a token (Fourier features of |G| plus a learned position) through a
    Transformer. Pretexts: masked k-distances (15 %, scattered) and interpolation of a hidden
    contiguous run of 3–6 points."""

    def __init__(self, w=WIDTH, out=512):
        super().__init__()
        self.embed = nn.Linear(1 + 2 * FREQUENCIES, w)
        self.position = nn.Parameter(torch.randn(KPOINTS, w) * 0.02)
        self.mask_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.attention = transformer(w)
        self.output = nn.Linear(KPOINTS * w, out)
        self.value_head = nn.Linear(w + out, 1)
        self.register_buffer("frequencies", 2 * math.pi * torch.arange(1, FREQUENCIES + 1.0))

    @staticmethod
    def batch(n, sites):
        targets = torch.rand(n, KPOINTS).sort(1).values
        length = torch.randint(3, 7, (n, 1))
        start = 1 + (torch.rand(n, 1) * (KPOINTS - length - 1)).long()  # both ends stay known
        k = torch.arange(KPOINTS)
        run = ((k >= start) & (k < start + length)).float()
        scattered = at_least_one((torch.rand(n, KPOINTS) < 0.15).float(), torch.full((n,), KPOINTS))
        scattered = scattered * (1 - run)
        return dict(values=targets * (1 - run - scattered), targets=targets, scattered=scattered, run=run)

    def loss(self, b):
        x = b["values"][..., None]
        phase = x * self.frequencies
        tokens = self.embed(torch.cat([x, phase.sin(), phase.cos()], 2))
        tokens = hide(tokens, b["scattered"] + b["run"], self.mask_embedding) + self.position
        states = self.attention(tokens)
        features = self.output(states.flatten(1))
        f = features[:, None].expand(-1, KPOINTS, -1)
        error = (self.value_head(torch.cat([states, f], 2)).squeeze(2) - b["targets"]) ** 2
        return 0.5 * weighted_mean(error, b["scattered"]) + 0.5 * weighted_mean(error, b["run"])


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.first, self.second = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.second(F.relu(self.first(x))))


class StructureFactorBlock(nn.Module):
    """Block 6: a strided residual CNN over the 92 × 59 map (plus a hidden-flag channel).
    Pretexts: reconstruct 8 hidden k-point columns; predict the real-space property block."""

    def __init__(self, w=WIDTH, out=256):
        super().__init__()
        c = w // 4
        self.stem = nn.Conv2d(2, c, 3, stride=2, padding=1)  # strided: 92 × 59 is large
        self.blocks = nn.Sequential(*(ResidualBlock(c) for _ in range(LAYERS)))
        self.pool = nn.AdaptiveAvgPool2d((8, 8))
        self.output = nn.Linear(c * 64, out)
        self.reconstruction_head = nn.Linear(out, PROPERTIES * KPOINTS)
        self.real_head = nn.Linear(out, PROPERTIES * ELEMENT_COLUMNS)

    @staticmethod
    def batch(n, sites):
        targets = torch.rand(n, PROPERTIES, KPOINTS)
        columns = torch.rand(n, KPOINTS).argsort(1)[:, :HIDDEN_COLUMNS]
        hidden = torch.zeros(n, KPOINTS).scatter_(1, columns, 1.0)[:, None].expand(-1, PROPERTIES, -1)
        the_map = torch.stack([targets * (1 - hidden), hidden], 1)
        return dict(map=the_map, targets=targets, hidden=hidden,
                    real=torch.rand(n, PROPERTIES * ELEMENT_COLUMNS))

    def loss(self, b):
        x = self.pool(self.blocks(F.relu(self.stem(b["map"]))))
        features = self.output(x.flatten(1))
        reconstructed = self.reconstruction_head(F.relu(features)).reshape(b["targets"].shape)
        sf_loss = weighted_mean((reconstructed - b["targets"]) ** 2, b["hidden"])
        real_loss = F.mse_loss(self.real_head(F.relu(features)), b["real"])
        return 0.6 * sf_loss + 0.4 * real_loss


BLOCKS = {1: ("elements", ElementsBlock), 2: ("lattice", LatticeBlock), 3: ("sites", SitesBlock),
          4: ("occupancy", OccupancyBlock), 5: ("reciprocal", ReciprocalBlock),
          6: ("structure_factors", StructureFactorBlock)}


def samples_per_second(block_class, steps, batch_size, sites, site_batches=None):
    """Timed steps: `steps` batches of `batch_size`, or for the site blocks the `site_batches`
    given (lists of site counts), after one warm-up step."""
    model = block_class()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5)
    uses_sites = block_class in (SitesBlock, OccupancyBlock)
    batches = site_batches if site_batches and uses_sites else [None] * steps

    def step(counts):
        batch = (block_class.batch(batch_size, sites, counts) if uses_sites
                 else block_class.batch(batch_size, sites))  # drawing + masking included
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for counts in batches:
        loss = step(counts)
    samples = sum(batch_size if c is None else len(c) for c in batches)
    return samples / (time.perf_counter() - start), loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", default="1,2,3,4,5,6")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sites", type=int, default=24, help="sites per cell in Blocks 3 and 4")
    p.add_argument("--site-batches", default=None,
                   help="Blocks 3 and 4: the timed batches, '/'-separated, each its cells' site counts")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    site_batches = None
    if a.site_batches:
        try:
            site_batches = [[int(c) for c in b.split(",")] for b in a.site_batches.split("/")]
        except ValueError:
            p.error("--site-batches: '/'-separated batches of ','-separated site counts")
        if any(not b or min(b) < 1 for b in site_batches):
            p.error("--site-batches: every batch needs at least one cell, every cell a site")
    # Models, batches and masks are all made on the device (each step's loss.item() syncs).
    torch.set_default_device(a.device)
    numbers = [int(n) for n in a.blocks.split(",")]
    if any(n not in BLOCKS for n in numbers) or a.steps < 1 or a.batch_size < 2 or a.sites < 1:
        p.error("blocks must be 1–6, steps ≥ 1, batch size ≥ 2, sites ≥ 1")
    rows = []
    for number in numbers:
        name, block_class = BLOCKS[number]
        torch.manual_seed(number)
        rate, loss = samples_per_second(block_class, a.steps, a.batch_size, a.sites, site_batches)
        print(f"block {number} ({name}): {rate:.1f} samples/s, last loss {loss:.4f}", file=sys.stderr)
        rows.append({"block": number, "name": name, "samples_per_second": rate})
    gpu = torch.cuda.get_device_name() if a.device == "cuda" else None
    print(json.dumps({"threads": torch.get_num_threads(), "gpu": gpu, "batch_size": a.batch_size,
                      "sites": a.sites, "site_batches": site_batches is not None, "blocks": rows}))


if __name__ == "__main__":
    main()
