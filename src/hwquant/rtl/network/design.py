"""``build_design``: an IntModel in, a directory holding a complete accelerator out.

``DIR/rtl/`` holds one Verilog-2001 file per block, ``hwquant_edge.v`` (the image FIFO of every
edge), ``hwquant_top.v`` (and ``hwquant_argmax.v``, the same design giving the class index only:
:mod:`hwquant.rtl.network.top`) and the weight ROM images (``*_weights.mem``, read by ``$readmemh``
relative to ``DIR/rtl``: run synthesis and simulation there). ``DIR/design.json`` records per
block its folding, widths, ROM and cycles, per edge its banks, and the predicted latency and
initiation interval (:mod:`hwquant.rtl.network.graph`); ``DIR/model.npz`` is the IntModel the
design computes, so that ``hwquant sim DIR`` needs nothing else. design.json's ``rtl_sha256``
fingerprints the design (:func:`design_sha256`): two builds with the same value emitted the
same files for the same model (``model_sha256``: :func:`model_sha256`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import ConfigError
from hwquant.hw.devices import Device, get_device
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntModel, load
from hwquant.rtl.network.folding import check_memory, choose_folding, target_folding
from hwquant.rtl.network.graph import Network, input_shape, network
from hwquant.rtl.network.interface import INPUT, OUTPUT
from hwquant.rtl.network.stream import edge_module
from hwquant.rtl.network.top import ARGMAX_TOP, TOP, TOPS, argmax_top_module, top_module

DESIGN_FILE = "design.json"
FORMAT = "hwquant.design"
VERSION = 1


@dataclass
class Design:
    """A built design: where it is, its network and its design.json contents."""

    directory: Path
    network: Network
    record: dict

    @property
    def latency_cycles(self) -> int:
        """Predicted cycles from the first pixel in to the logits out."""
        return self.network.latency_cycles

    @property
    def ii_cycles(self) -> int:
        """Predicted cycles between images."""
        return self.network.ii_cycles


def scheme_of(model: IntModel) -> str:
    """The quantization scheme the model was lowered from (its recipe), "llsq" by default."""
    return str(model.recipe.get("scheme", "llsq"))


def build_design(
    model: IntModel | str | Path,
    device: str | Device,
    out_dir: str | Path,
    *,
    folding: dict[str, Fold] | None = None,
    input_size: int | None = None,
    target_ii: int | None = None,
    overwrite: bool = False,
) -> Design:
    """Build the accelerator of ``model`` for ``device`` into ``out_dir`` (module docstring).

    ``folding`` gives PE x SIMD per weight layer; layers it leaves out are chosen: with
    ``target_ii`` the cheapest folds that give an interval of at most ``target_ii`` cycles
    (:func:`hwquant.rtl.network.folding.target_folding`), else the widest that fit the device
    (:func:`hwquant.rtl.network.folding.choose_folding`). ``out_dir`` must be new or empty, or
    a design this function wrote (replaced only with ``overwrite``).
    """
    if not isinstance(model, IntModel):
        model = load(model)
    dev = get_device(device)
    check_target(Path(out_dir), overwrite)
    shape = input_shape(model, input_size)
    if target_ii is None:
        folds = choose_folding(model, shape, dev, folding or {})
    else:
        folds = target_folding(model, shape, dev, folding or {}, target_ii)
    net = network(model, folds, shape)
    how = {
        "given": sorted(folding or {}),
        "chosen": "target_ii" if target_ii is not None else "fill the device",
        "target_ii": target_ii,
    }
    return write_design(net, dev, out_dir, scheme_of(model), model.save, how)


def write_design(
    net: Network,
    device: Device,
    out_dir: str | Path,
    scheme: str,
    save_model: Callable[[Path], object],
    folding: dict,
) -> Design:
    """Write the design of ``net`` into ``out_dir`` (module docstring), after checking that
    its memories fit ``device`` (:func:`~hwquant.rtl.network.folding.check_memory`);
    ``save_model(path)`` writes the model the design computes to ``path`` (``DIR/model.npz``)
    and ``folding`` (how the folding was chosen) goes into design.json.
    The caller has checked ``out_dir`` with :func:`check_target`."""
    out = Path(out_dir)
    check_memory(net, device)
    rtl = out / "rtl"
    rtl.mkdir(parents=True, exist_ok=True)
    files = {
        "hwquant_edge.v": edge_module(),
        f"{TOP}.v": top_module(net),
        f"{ARGMAX_TOP}.v": argmax_top_module(net),
    }
    for block in net.blocks:
        files[f"{block.module}.v"] = block.verilog
        files.update(block.modules)
    emitted = dict(files)
    for block in net.blocks:
        emitted.update(block.memories)
    for name, text in emitted.items():
        write_atomic(rtl / name, text.encode())
    save_model(out / "model.npz")
    record = _record(scheme, device, net, sorted(files))
    record["folding"] = folding
    record["rtl_sha256"] = design_sha256(emitted, out / "model.npz")
    record["model_sha256"] = model_sha256(out / "model.npz")
    write_atomic(out / DESIGN_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return Design(out, net, record)


def design_sha256(files: Mapping[str, str], model_file: Path) -> str:
    """The SHA-256 of a design: every emitted file (Verilog and ROM images, ``name -> text``)
    as its name and text in name order, then the model's arrays as :func:`model_sha256`
    reads them. Equal digests: the same files for the same model.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> np.savez(folder / "m.npz", w=np.arange(3))
    >>> a = design_sha256({"top.v": "module top; endmodule"}, folder / "m.npz")
    >>> a == design_sha256({"top.v": "module top;  endmodule"}, folder / "m.npz")
    False
    >>> np.savez(folder / "m.npz", w=np.arange(3))  # written again: same arrays
    >>> a == design_sha256({"top.v": "module top; endmodule"}, folder / "m.npz")
    True
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        _update(digest, name.encode(), files[name].encode())
    _update_arrays(digest, model_file)
    return digest.hexdigest()


def model_sha256(model_file: Path) -> str:
    """The SHA-256 of a model file's arrays (name, dtype, shape and bytes in name order: the
    arrays, not the .npz's bytes, whose zip entries carry the time they were written)."""
    digest = hashlib.sha256()
    _update_arrays(digest, model_file)
    return digest.hexdigest()


def _update(digest, *parts: bytes) -> None:
    for part in parts:  # each part with its length: no two sequences hash alike
        digest.update(len(part).to_bytes(8, "little") + part)


def _update_arrays(digest, model_file: Path) -> None:
    with np.load(model_file, allow_pickle=False) as arrays:
        for name in sorted(arrays.files):
            value = np.ascontiguousarray(arrays[name])
            _update(digest, name.encode(), value.dtype.str.encode(), str(value.shape).encode())
            _update(digest, value.tobytes())


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that holds files other than a design, or a design unless
    ``overwrite`` (nothing a user made is overwritten)."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / DESIGN_FILE).is_file():
        raise ConfigError(
            f"'{out}' exists and holds files that are not a hwquant design. Fix: choose a new "
            "or empty output directory."
        )
    if not overwrite:
        raise ConfigError(
            f"'{out}' already holds a design. Fix: choose another directory, or pass "
            "--force (overwrite=True) to replace it."
        )


def _record(scheme: str, device: Device, net: Network, files: list[str]) -> dict:
    blocks = []
    for block in net.blocks:
        entry = {
            "name": block.name,
            "op": block.op,
            "module": block.module,
            "inputs": block.inputs,
            "out_shape": block.output.shape() if block.output else None,
            "out_bits": block.output.bits if block.output else None,
            "steps": block.steps,
            "depth": block.depth,
            "cycles": block.cycles,
            **block.info,
        }
        blocks.append(entry)
    first = net.blocks[0]
    assert first.op == INPUT and first.output is not None
    logits = net.block(net.blocks[-1].inputs[0]).output
    assert net.blocks[-1].op == OUTPUT and logits is not None
    return {
        "format": FORMAT,
        "version": VERSION,
        "top": TOP,
        "tops": TOPS,
        "device": device.name,
        "scheme": scheme,
        "input": {
            "shape": first.output.shape(),
            "bits": first.output.bits,
            "signed": first.output.signed,
            "pixels": first.output.pixels,
            "word_bits": first.output.word_bits,
        },
        "output": {"classes": logits.channels, "acc_bits": logits.bits},
        "blocks": blocks,
        "edges": [
            {
                "from": e.source,
                "to": e.target,
                "port": e.port,
                "banks": e.banks,
                "words": e.banks * e.fmap.pixels,
                "width": e.fmap.word_bits,
            }
            for e in net.edges
        ],
        "latency_cycles": net.latency_cycles,
        "ii_cycles": net.ii_cycles,
        "rtl_files": files,
    }
