#!/usr/bin/env python3
"""Exports the weights of a HydraGNN checkpoint to safetensors for `hydragnn import-hydragnn`.

HydraGNN saves `torch.save({"model_state_dict": ..., "optimizer_state_dict": ...})` with keys
prefixed `module.` (DistributedDataParallel). This reads it with `torch.load(weights_only=True)`
(no code in the pickle runs), keeps the floating-point tensors of the model's state dict under
their names without the `module.` / `_orig_mod.` prefixes, and writes them, in their own dtype, to
a safetensors file whose metadata says `format = hydragnn-state-dict`. The Rust importer
(mlip::model::hydragnn) does everything else; the converted model file needs no Python.

usage: import_hydragnn.py CHECKPOINT.pk OUT.safetensors
Prints a one-line JSON summary on stdout. Needs torch; nothing else.
"""

import json
import struct
import sys
import warnings

DTYPES = {"torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16"}
PREFIXES = ("module.", "_orig_mod.")


def state_dict_of(obj):
    """The model state dict inside whatever HydraGNN saved."""
    import torch

    if isinstance(obj, dict) and "model_state_dict" in obj:
        return obj["model_state_dict"]
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return obj
    keys = list(obj.keys())[:8] if isinstance(obj, dict) else type(obj).__name__
    raise SystemExit(f"not a HydraGNN checkpoint: no 'model_state_dict' and not a dict of tensors (found {keys})")


def strip(name):
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    return name


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors:
        data = t.contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": DTYPES[str(t.dtype)], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-2])
    try:
        import torch
    except ImportError:
        raise SystemExit("import_hydragnn.py: torch is not installed in this Python; it is needed to read the checkpoint")
    ckpt, out = argv[1], argv[2]
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise before the error
            warnings.simplefilter("ignore")
            obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the message goes to the user
        text = str(e)
        if "weights_only" in text or "Weights only" in text:
            # torch's message advises weights_only=False, which would run the pickle's code.
            raise SystemExit(
                f"'{ckpt}' is not a HydraGNN checkpoint: it is a pickle that torch.save did not write "
                "(HydraGNN saves a dict with 'model_state_dict'); it was not unpickled further, since "
                "unpickling arbitrary objects can run code"
            )
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise SystemExit(f"'{ckpt}' is not a HydraGNN checkpoint: torch.load cannot read it ({first})")
    sd = state_dict_of(obj)
    tensors, skipped = [], []
    for name, t in sd.items():
        key = strip(name)
        if not torch.is_tensor(t) or str(t.dtype) not in DTYPES:
            skipped.append(key)
            continue
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: widen, exactly
            t = t.to(torch.float32)
        tensors.append((key, t.detach()))
    if len({k for k, _ in tensors}) != len(tensors):
        raise SystemExit("import_hydragnn.py: two tensors have the same name once 'module.' is stripped")
    meta = {"format": "hydragnn-state-dict", "format_version": "1", "checkpoint": str(ckpt), "torch": torch.__version__}
    write_safetensors(out, tensors, meta)
    dtypes = sorted({str(t.dtype) for _, t in tensors})
    print(json.dumps({"tensors": len(tensors), "skipped": skipped, "dtypes": dtypes}))


if __name__ == "__main__":
    main(sys.argv)
