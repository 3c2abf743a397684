#!/usr/bin/env python3
"""Make the PyTorch-file fixtures of `crates/zeroclip-pt` (tests/fixtures/pt/).

Run from the repository root:  "$(scripts/ref_python.sh)" scripts/make_pt_fixtures.py

Every fixture is written by real PyTorch (torch.save / torch.jit.save), or rewritten from such a
file where the layout we must read is one current PyTorch no longer writes (PyTorch 1.7
TorchScript archives as OpenAI released them; big-endian files). Each rewritten file is loaded
back with torch to prove it is still valid. Beside each `NAME.pt` the script writes
`NAME.expected.json`: the tensors torch.load / torch.jit.load yields, in order, each with dtype,
shape, the SHA-256 of its elements as contiguous little-endian bytes and, for small tensors, the
bytes themselves in hex. The Rust tests compare every element exactly through these.

`--full PATH` instead writes a full-size random ViT-B/32 TorchScript file (about 350 MB) built
and traced as clip.load's files are, for timing the reader. Never commit it.
"""

import argparse
import collections
import hashlib
import io
import json
import os
import pickle
import sys
import zipfile

import torch
import warnings

warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "pt")
SMALL_HEX = 256  # tensors up to this many bytes are stored whole in hex


def tensor_bytes(t):
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(named, kind):
    tensors = []
    for name, t in named:
        b = tensor_bytes(t)
        entry = {
            "name": name,
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "sha256": hashlib.sha256(b).hexdigest(),
        }
        if len(b) <= SMALL_HEX:
            entry["hex"] = b.hex()
        tensors.append(entry)
    return {"kind": kind, "tensors": tensors}


def write_expected(name, named, kind):
    with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
        json.dump(describe(named, kind), f, indent=1)
        f.write("\n")


def convert_weights(model):
    """clip.model.convert_weights: fp16 for conv/linear/attention/projection weights."""
    from clip.model import convert_weights as clip_convert

    clip_convert(model)


# ---------------------------------------------------------------- TorchScript, current layout


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return x + self.fc(self.ln(x.float()).to(self.fc.weight.dtype)).float()


class Tree(nn.Module):
    """A small module tree: conv, nested ModuleList, Sequential, a buffer, a bare parameter."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, kernel_size=2, stride=2, bias=False)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 4))
        self.scale = nn.Parameter(torch.tensor(2.5))
        self.register_buffer("offsets", torch.arange(4, dtype=torch.int64))
        self.proj = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        x = self.conv1(x.to(self.conv1.weight.dtype)).float().mean(dim=(2, 3))
        for b in self.blocks:
            x = b(x)
        x = self.head[1](self.head[0](x).to(self.head[1].weight.dtype)).float()
        return (x + self.offsets) @ self.proj.float() * self.scale


def make_script_tree():
    torch.manual_seed(1)
    m = Tree().eval()
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod.weight.data = mod.weight.data.half()
            if mod.bias is not None:
                mod.bias.data = mod.bias.data.half()
    m.proj.data = m.proj.data.half()
    traced = torch.jit.trace(m, (torch.randn(1, 3, 4, 4),), check_trace=False)
    path = os.path.join(OUT, "script_tree.pt")
    torch.jit.save(traced, path)
    loaded = torch.jit.load(path)
    write_expected("script_tree", loaded.state_dict().items(), "TorchScript")


# ------------------------------------------- TorchScript as OpenAI released it (PyTorch 1.7)


# Records PyTorch 1.7 did not write: it had data.pkl, code/, constants.pkl, data/ and version.
NEW_RECORDS = ("byteorder", ".data/", ".format_version", ".storage_alignment", "traced_inputs")


def rewrite_as_pytorch_17(src, dst, folder, class_renames):
    """Copies a torch.jit.save archive under another top folder, without the records that
    later PyTorch added, with the pickled classes renamed (in data.pkl and the code), as
    OpenAI's files name them (`__torch__.multimodal.model.multimodal_transformer.*`)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            old_prefix, rest = info.filename.split("/", 1)
            if rest.startswith(NEW_RECORDS):
                continue
            data = zin.read(info)
            if rest == "data.pkl" or rest.startswith("code/"):
                for old, new in class_renames:
                    # Protocol-2 GLOBAL arguments are newline-terminated text: safe to replace.
                    data = data.replace(old.encode(), new.encode())
                for old, new in class_renames:
                    rest = rest.replace(old.replace(".", "/"), new.replace(".", "/"))
            if rest == "version":
                data = b"3\n"
            entry = zipfile.ZipInfo(f"{folder}/{rest}", info.date_time)
            # Only to keep the fixture small: code/ is deflated (torch.jit.load reads either way;
            # the Rust reader never opens code/). Pickles and storages stay stored, as torch writes.
            if rest.startswith("code/"):
                entry.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(entry, data)


def make_script_clip():
    import clip.model

    torch.manual_seed(2)
    # embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
    # context_length, vocab_size, transformer_width, transformer_heads, transformer_layers
    model = clip.model.CLIP(16, 16, 1, 64, 8, 16, 64, 32, 2, 1).eval()
    convert_weights(model)
    image = torch.randn(1, 3, 16, 16)
    text = torch.randint(0, 64, (2, 16))
    traced = torch.jit.trace(model, (image.half(), text), check_trace=False)
    tmp = os.path.join(OUT, "_tmp_script_clip.pt")
    torch.jit.save(traced, tmp)
    path = os.path.join(OUT, "script_clip_pytorch17.pt")
    renames = [("__torch__.clip.model", "__torch__.multimodal.model.multimodal_transformer")]
    rewrite_as_pytorch_17(tmp, path, "ViT-B-32", renames)
    os.remove(tmp)
    loaded = torch.jit.load(path)
    want = model.state_dict()
    got = loaded.state_dict()
    assert list(want) == list(got)
    assert all(torch.equal(want[k], got[k]) and want[k].dtype == got[k].dtype for k in want)
    write_expected("script_clip_pytorch17", got.items(), "TorchScript")


# ------------------------------------------------------------------ torch.save state dicts


def views_state_dict():
    """Tensors that share storages, start at offsets, are transposed or strided, of every dtype."""
    torch.manual_seed(3)
    base = torch.randn(6, 8)
    sd = collections.OrderedDict()
    sd["base"] = base
    sd["transposed"] = base.t()
    sd["slice"] = base[1:4, 2:7]
    sd["strided"] = base[::2, 1::3]
    sd["row"] = base[5]
    sd["scalar"] = torch.tensor(0.125)
    sd["empty"] = torch.zeros(0, 3)
    sd["tied_a"] = sd["tied_b"] = torch.randn(3, 2)
    sd["param"] = nn.Parameter(torch.randn(2, 3))
    half = torch.randn(4, 5).half()
    sd["f16"] = half
    sd["f16_col"] = half[:, 1]
    sd["bf16"] = torch.randn(3, 4).bfloat16().t()
    sd["f64"] = torch.randn(2, 2, dtype=torch.float64)
    sd["i64"] = torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4)[:, 1:]
    sd["i32"] = torch.arange(-3, 3, dtype=torch.int32)
    sd["i16"] = torch.tensor([-30000, 1, 30000], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["u8"] = torch.arange(0, 250, 50, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["nonfinite"] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    return sd


def make_state_dicts():
    sd = views_state_dict()
    for name, zip_format in [("state_zip", True), ("state_legacy", False)]:
        path = os.path.join(OUT, name + ".pt")
        torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
        loaded = torch.load(path, weights_only=True)
        kind = "ZipStateDict" if zip_format else "LegacyStateDict"
        write_expected(name, loaded.items(), kind)

    # A training checkpoint as open_clip writes it, from a DataParallel-wrapped model.
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    dp = nn.DataParallel(net)
    opt = torch.optim.AdamW(dp.parameters())
    dp(torch.randn(2, 3)).sum().backward()
    opt.step()
    ckpt = {"epoch": 3, "name": "tiny", "state_dict": dp.state_dict(), "optimizer": opt.state_dict()}
    inner = [(k.removeprefix("module."), v) for k, v in dp.state_dict().items()]
    for name, zip_format in [("train_ckpt_zip", True), ("train_ckpt_legacy", False)]:
        path = os.path.join(OUT, name + ".pt")
        torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
        loaded = torch.load(path, weights_only=True)
        assert all(k.startswith("module.") for k in loaded["state_dict"])
        kind = "ZipStateDict" if zip_format else "LegacyStateDict"
        write_expected(name, inner, kind)


def make_big_endian():
    """state_zip as a big-endian machine writes it: byteorder 'big', every element swapped."""
    src = os.path.join(OUT, "state_zip.pt")
    dst = os.path.join(OUT, "state_big_endian.pt")
    sd = torch.load(src, weights_only=True)
    with zipfile.ZipFile(src) as zin:
        pkl = zin.read("state_zip/data.pkl")
    elem = storage_element_sizes(pkl)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            prefix, rest = info.filename.split("/", 1)
            data = zin.read(info)
            if rest == "byteorder":
                data = b"big"
            elif rest.startswith("data/"):
                size = elem[rest.removeprefix("data/")]
                data = b"".join(data[i : i + size][::-1] for i in range(0, len(data), size))
            zout.writestr(zipfile.ZipInfo(f"state_big_endian/{rest}", info.date_time), data)
    loaded = torch.load(dst, weights_only=True)
    assert list(loaded) == list(sd)
    for k in sd:
        assert tensor_bytes(loaded[k]) == tensor_bytes(sd[k]), k
    write_expected("state_big_endian", loaded.items(), "ZipStateDict")


def storage_element_sizes(pkl):
    """Storage key -> element size, read from data.pkl's persistent ids without torch.load."""
    sizes = {}

    class Probe(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return getattr(torch, name)
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda *a: None
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_parameter"):
                return lambda *a: None
            raise pickle.UnpicklingError(f"{module}.{name}")

        def persistent_load(self, pid):
            _, cls, key, _, _ = pid
            sizes[key] = torch.empty(0, dtype=cls.dtype).element_size()

    Probe(io.BytesIO(pkl)).load()
    return sizes


# ------------------------------------------------------------------------- hostile files


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def make_malicious():
    # Hand-written data.pkl: GLOBAL 'os system', then REDUCE with ('echo pwned',).
    pkl = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(os.path.join(OUT, "malicious_os_system.pt"), "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", b"3\n")
    # What torch.save itself writes for an object that reduces to os.system (posix.system).
    torch.save({"weight": torch.ones(2), "payload": Evil()},
               os.path.join(OUT, "malicious_legacy.pt"), _use_new_zipfile_serialization=False)


def make_full(path):
    import clip.model

    torch.manual_seed(0)
    model = clip.model.CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12).eval()
    convert_weights(model)
    image = torch.randn(1, 3, 224, 224).half()
    text = torch.randint(0, 49408, (3, 77))
    with torch.no_grad():
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    torch.jit.save(traced, path)
    n = sum(t.numel() for t in model.state_dict().values())
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {len(model.state_dict())} tensors, {n} elements")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", metavar="PATH", help="write a full-size random ViT-B/32 instead")
    args = ap.parse_args()
    if args.full:
        make_full(args.full)
        return
    os.makedirs(OUT, exist_ok=True)
    make_script_tree()
    make_script_clip()
    make_state_dicts()
    make_big_endian()
    make_malicious()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"fixtures in {os.path.relpath(OUT)}: {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
