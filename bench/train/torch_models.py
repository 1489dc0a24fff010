"""PyTorch twins of raffle's model presets, built from the same JSON spec.

Rather than re-typing each preset by hand (and drifting from it), the model
is assembled from the spec raffle itself uses (`probe spec NAME` prints it),
layer by layer, with PyTorch's own modules and the same semantics as
src/nn/: linear acts per token on (T, D) inputs, patch_embed is a conv with
kernel = stride = patch plus a class token and a learned position embedding,
the transformer block is pre-norm (x + MHSA(LN(x)); x + MLP(LN(x)), exact
GELU), a layer reads the layers its "inputs" names (default the previous
one), add sums them (option A shortcuts subsample and zero-pad), concat
joins channels, residual adds the output of an earlier layer (or the input).
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


class Shortcut(nn.Module):
    """Option A of He et al. 2016: subsample by the stride, zero-pad channels
    (half the zeros first, as F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, C/4, C/4)))."""

    def __init__(self, stride, front, back):
        super().__init__()
        self.stride, self.front, self.back = stride, front, back

    def forward(self, x):
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.front, self.back))


class SpecNet(nn.Module):
    """A raffle spec as a DAG of PyTorch modules: layer i reads the outputs of
    the layers its "inputs" names (default: the previous one; "input" or -1
    is the model input); add sums them (option A shortcuts adapt narrower,
    larger inputs), concat joins channels, residual adds "from"."""

    def __init__(self, spec):
        super().__init__()
        d = tuple(spec["input"])
        model_in = (("image", "tokens", "flat")[3 - len(d)],) + d
        self.layers = nn.ModuleList()
        self.srcs = []      # per layer: indices it reads (-1 = input)
        self.kinds = []     # "one" (a module on one input), "add", "concat"
        names, shapes = {}, []

        def resolve(v, i):
            if isinstance(v, str):
                return -1 if v == "input" else names[v]
            return v

        for i, L in enumerate(spec["layers"]):
            t = L["type"]
            ins = L.get("inputs", i - 1)
            ins = [resolve(v, i) for v in (ins if isinstance(ins, list) else [ins])]
            if t == "residual":
                ins.append(resolve(L["from"], i))
            in_shapes = [model_in if s < 0 else shapes[s] for s in ins]
            shape = in_shapes[0]
            mod, kind = None, "one"
            if t in ("add", "residual"):
                kind = "add"
                mods = []
                for s in in_shapes:
                    if s == shape:
                        mods.append(nn.Identity())
                    else:
                        st = (s[2] + shape[2] - 1) // shape[2]
                        front = (shape[1] - s[1]) // 2
                        mods.append(Shortcut(st, front, shape[1] - s[1] - front))
                mod = nn.ModuleList(mods)
            elif t == "concat":
                kind = "concat"
                mod = nn.Identity()
                shape = (shape[0], sum(s[1] for s in in_shapes)) + tuple(shape[2:])
            else:
                mod, shape = one_layer(L, shape, i)
            if "name" in L:
                names[L["name"]] = i
            self.layers.append(mod)
            self.srcs.append(ins)
            self.kinds.append(kind)
            shapes.append(shape)

    def forward(self, x):
        outs = []
        for mod, src, kind in zip(self.layers, self.srcs, self.kinds):
            xs = [x if s < 0 else outs[s] for s in src]
            if kind == "add":
                y = mod[0](xs[0])
                for m, v in zip(mod[1:], xs[1:]):
                    y = y + m(v)
            elif kind == "concat":
                y = torch.cat([v.flatten(1) if v.dim() == 2 else v for v in xs], dim=1)
            else:
                y = mod(xs[0])
            outs.append(y)
        return outs[-1]


def one_layer(L, shape, i):
    """The module of a one-input layer and its output shape."""
    t = L["type"]
    kind = shape[0]
    if t == "linear":
        k = shape[-1] if kind == "tokens" else flat(shape)
        mod = nn.Linear(k, L["out"], bias=bool(L.get("bias", 1)))
        return mod, (("tokens", shape[1], L["out"]) if kind == "tokens" else ("flat", L["out"]))
    if t == "conv2d":
        kh = L.get("kh", L.get("kernel", 3))
        kw = L.get("kw", L.get("kernel", 3))
        s, p = L.get("stride", 1), L.get("padding", 0)
        mod = nn.Conv2d(shape[1], L["out"], (kh, kw), stride=s, padding=p, bias=bool(L.get("bias", 1)))
        return mod, ("image", L["out"], (shape[2] + 2 * p - kh) // s + 1, (shape[3] + 2 * p - kw) // s + 1)
    if t in ("maxpool", "avgpool"):
        k = L.get("kernel", 2)
        s, p = L.get("stride", k), L.get("padding", 0)
        mod = (nn.MaxPool2d if t == "maxpool" else nn.AvgPool2d)(k, stride=s, padding=p)
        return mod, ("image", shape[1], (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1)
    if t == "gap":
        return Lambda(lambda x: x.mean(dim=(2, 3))), ("flat", shape[1])
    if t == "batchnorm":
        eps, mom = L.get("eps", 1e-5), L.get("momentum", 0.1)
        return (nn.BatchNorm2d if kind == "image" else nn.BatchNorm1d)(shape[1], eps=eps, momentum=mom), shape
    if t == "layernorm":
        return nn.LayerNorm(shape[-1], eps=L.get("eps", 1e-5)), shape
    if t == "relu":
        return nn.ReLU(), shape
    if t == "gelu":
        return nn.GELU(), shape
    if t == "tanh":
        return nn.Tanh(), shape
    if t == "dropout":
        return nn.Dropout(L.get("p", 0.5)), shape
    if t == "flatten":
        return nn.Flatten(), ("flat", flat(shape))
    if t == "patch_embed":
        p, D = L["patch"], L["dim"]
        cls, pos = L.get("cls", 1), L.get("pos", 1)
        n = (shape[2] // p) * (shape[3] // p)
        return PatchEmbed(shape[1], D, p, cls, pos, n), ("tokens", n + cls, D)
    if t == "attention":
        return Attention(shape[2], L.get("heads", 1)), shape
    if t == "transformer":
        D = shape[2]
        return Block(D, L.get("heads", 1), L.get("mlp", 4 * D), L.get("eps", 1e-6)), shape
    if t == "cls_pool":
        return Lambda(lambda x: x[:, 0]), ("flat", shape[2])
    if t == "mean_pool":
        return Lambda(lambda x: x.mean(dim=1)), ("flat", shape[2])
    raise ValueError(f"layers[{i}]: unknown type {t}")


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
