"""PyTorch twins of raffle's model presets, built from the same JSON spec.

Rather than re-typing each preset by hand (and drifting from it), the model
is assembled from the spec raffle itself uses (`probe spec NAME` prints it),
layer by layer, with PyTorch's own modules and the same semantics as
src/nn/: linear acts per token on (T, D) inputs, patch_embed is a conv with
kernel = stride = patch plus a class token and a learned position embedding,
the transformer block is pre-norm (x + MHSA(LN(x)); x + MLP(LN(x)), exact
GELU), residual adds the output of an earlier layer (or of the input, -1).
The bench checks that the parameter count equals raffle's.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    def __init__(self, c, dim, patch, cls, pos, n_patches):
        super().__init__()
        self.proj = nn.Conv2d(c, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls else None
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + cls, dim)) if pos else None

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm's ViT)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        h = self.heads
        q, k, v = self.qkv(x).reshape(B, T, 3, h, D // h).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // h))
        y = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class SpecNet(nn.Module):
    """Sequential net with optional residual sources, as raffle's rf_model."""

    def __init__(self, spec):
        super().__init__()
        c, h, w = spec["input"]
        shape = ("image", c, h, w)
        self.layers = nn.ModuleList()
        self.sources = []  # residual: index of the source layer (-1 = input) or None
        self.keep = set()
        names = {}
        for i, L in enumerate(spec["layers"]):
            t = L["type"]
            mod, src = None, None
            kind = shape[0]
            if t == "linear":
                k = shape[-1] if kind == "tokens" else flat(shape)
                mod = nn.Linear(k, L["out"], bias=bool(L.get("bias", 1)))
                shape = ("tokens", shape[1], L["out"]) if kind == "tokens" else ("flat", L["out"])
            elif t == "conv2d":
                kh = L.get("kh", L.get("kernel", 3))
                kw = L.get("kw", L.get("kernel", 3))
                s, p = L.get("stride", 1), L.get("padding", 0)
                mod = nn.Conv2d(shape[1], L["out"], (kh, kw), stride=s, padding=p, bias=bool(L.get("bias", 1)))
                shape = ("image", L["out"], (shape[2] + 2 * p - kh) // s + 1, (shape[3] + 2 * p - kw) // s + 1)
            elif t in ("maxpool", "avgpool"):
                k = L.get("kernel", 2)
                s, p = L.get("stride", k), L.get("padding", 0)
                mod = (nn.MaxPool2d if t == "maxpool" else nn.AvgPool2d)(k, stride=s, padding=p)
                shape = ("image", shape[1], (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1)
            elif t == "gap":
                mod = Lambda(lambda x: x.mean(dim=(2, 3)))
                shape = ("flat", shape[1])
            elif t == "batchnorm":
                eps, mom = L.get("eps", 1e-5), L.get("momentum", 0.1)
                mod = (nn.BatchNorm2d if kind == "image" else nn.BatchNorm1d)(shape[1], eps=eps, momentum=mom)
            elif t == "layernorm":
                mod = nn.LayerNorm(shape[-1], eps=L.get("eps", 1e-5))
            elif t == "relu":
                mod = nn.ReLU()
            elif t == "gelu":
                mod = nn.GELU()
            elif t == "tanh":
                mod = nn.Tanh()
            elif t == "dropout":
                mod = nn.Dropout(L.get("p", 0.5))
            elif t == "flatten":
                mod = nn.Flatten()
                shape = ("flat", flat(shape))
            elif t == "residual":
                f = L["from"]
                src = names[f] if isinstance(f, str) else f
                mod = nn.Identity()
            elif t == "patch_embed":
                p, D = L["patch"], L["dim"]
                cls, pos = L.get("cls", 1), L.get("pos", 1)
                n = (shape[2] // p) * (shape[3] // p)
                mod = PatchEmbed(shape[1], D, p, cls, pos, n)
                shape = ("tokens", n + cls, D)
            elif t == "attention":
                mod = Attention(shape[2], L.get("heads", 1))
            elif t == "transformer":
                D = shape[2]
                mod = Block(D, L.get("heads", 1), L.get("mlp", 4 * D), L.get("eps", 1e-6))
            elif t == "cls_pool":
                mod = Lambda(lambda x: x[:, 0])
                shape = ("flat", shape[2])
            elif t == "mean_pool":
                mod = Lambda(lambda x: x.mean(dim=1))
                shape = ("flat", shape[2])
            else:
                raise ValueError(f"layers[{i}]: unknown type {t}")
            if "name" in L:
                names[L["name"]] = i
            self.layers.append(mod)
            self.sources.append(src)
            if src is not None and src >= 0:
                self.keep.add(src)

    def forward(self, x):
        inp, outs = x, {}
        for i, (mod, src) in enumerate(zip(self.layers, self.sources)):
            x = mod(x)
            if src is not None:
                x = x + (inp if src < 0 else outs[src])
            if i in self.keep:
                outs[i] = x
        return x


def flat(shape):
    n = 1
    for d in shape[1:]:
        n *= d
    return n


def build(spec):
    return SpecNet(spec)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def train_flops_per_sample(model, input_shape):
    """Multiply-adds of one forward pass x 2 (flops) x 3 (forward + the two
    backward products), counted with hooks on the matrix-product modules;
    element-wise work is left out, as usual for a fraction-of-peak figure."""
    macs = [0]

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(
                lambda m, i, o: macs.__setitem__(0, macs[0] + (o.numel() // o.shape[0]) * m.in_features)))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda m, i, o: macs.__setitem__(0, macs[0] + (o.numel() // o.shape[0]) * m.in_channels
                                                 * m.kernel_size[0] * m.kernel_size[1] // m.groups)))
        elif isinstance(m, Attention):
            def att(m, i, o):
                B, T, D = o.shape
                macs[0] += 2 * T * T * D  # q k^T and a v
            hooks.append(m.register_forward_hook(att))
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, *input_shape))
        model.train()
    for h in hooks:
        h.remove()
    return 6 * macs[0]
