"""PE x SIMD processing array for one convolution (or fully connected) layer, as FINN's MVAU.

The layer is a matrix–vector product per output pixel: ``acc[c] = b[c] + Σ_k W[c, k]·x[k]``
over the ``K = C_in·kh·kw`` elements of the pixel's input window (the engine's unfold order,
:func:`hwquant.core.intmath.int_conv2d`). The array has ``pe`` processing elements (output channels
in parallel), each taking ``simd`` input elements per cycle (Umuroglu et al. 2017, FINN §4.2):
``NF = C_out/pe`` neuron folds times ``SF = K/simd`` synapse folds, so one output pixel takes
``fold = NF·SF`` cycles. For each neuron fold ``nf`` the window streams in ``SF`` chunks of
``simd`` elements; PE ``p`` accumulates channel ``nf·pe + p``. Every lane computes its products
with one :class:`~hwquant.rtl.unit.Product` (a fixed-point multiply, an SP2 shift-add, a
codebook decode or a table lookup), so the same array serves each scheme; an MSQ layer runs as
two arrays, one over its SP2 rows and one over its fixed-point rows (:func:`node_arrays`).

Pipeline: cycle ``t`` (``en`` high) registers the input chunk ``x`` and reads the weight ROM
(``weights[nf·SF + sf]``, one word of ``pe·simd`` weight fields); cycle ``t+1`` adds the lanes'
``simd`` products to the accumulators (the bias on a fold's first chunk), wrapping at
``acc_bits`` as :class:`hwquant.core.intmath.Accumulator` "wrap"; after a fold's last chunk the sums
are registered on ``acc`` with ``valid`` high two cycles after that chunk went in. With a
requantizer (:class:`ArrayRequant`) a third stage turns them into output codes on ``out``
(:mod:`hwquant.rtl.requantizer`), ``valid`` then high three cycles after the last chunk.

Ports: ``clk, rst, en``; ``x`` [simd·act_bits] (element ``s`` of the chunk in bits
``s·act_bits``, two's complement when signed); ``valid``; ``acc`` [pe·acc_bits] signed lanes,
or ``out`` [pe·out_bits] lanes with a requantizer (lane ``p`` in the low bits upwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import qrange
from hwquant.rtl.requantizer import clamp_statement, scale_and_shift
from hwquant.rtl.testbench import Stimulus
from hwquant.rtl.unit import (
    CONTROL_PORTS,
    Port,
    Product,
    Unit,
    case_block,
    check_acc_bits,
    check_range,
    check_width,
    index_bits,
    literal,
    module,
    top_suffix,
)

REGISTER_LATENCY = 2
"""Cycles from a fold's last input chunk to its accumulators on ``acc``."""


@dataclass(frozen=True)
class ArrayRequant:
    """Per-channel requantization of the array: ``clamp((acc·M[c] + 2^(s[c]−1)) >> s[c], lo,
    hi)`` into ``out_bits`` codes (a lowered node's ``mult``, ``shift``, ``lo``, ``hi``)."""

    mult: np.ndarray
    shift: np.ndarray
    lo: int
    hi: int
    out_bits: int
    out_signed: bool


def _check_folding(name: str, size: int, lanes: int, what: str) -> int:
    check_width(name, lanes, 1, size)
    if size % lanes:
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        raise ConfigError(
            f"{name}={lanes} does not divide the {size} {what}. Fix: use one of "
            f"{', '.join(map(str, divisors))}."
        )
    return size // lanes


def _case_rom(select: str, target: str, width: int, values: list[int]) -> str:
    arms = [literal(v, width) for v in values]
    return f"    reg signed [{width - 1}:0] {target};\n" + case_block(select, target, arms)


def conv_array(
    product: Product,
    weights: np.ndarray,
    *,
    pe: int,
    simd: int,
    acc_bits: int,
    bias: np.ndarray | None = None,
    requant: ArrayRequant | None = None,
) -> Unit:
    """A PE x SIMD array (module docstring) computing ``weights`` [C_out, K] (port words of
    ``product``'s ``w`` port, e.g. :func:`~hwquant.rtl.fixed_mac.encode_fixed_weights`) with an
    optional integer ``bias`` [C_out] and requantizer."""
    words = np.asarray(weights, dtype=np.int64)
    if words.ndim != 2 or words.size == 0:
        raise ConfigError(
            f"weights must be a 2-D array [C_out, K] of port words, got shape {words.shape}. "
            "Fix: reshape the layer's weights to [C_out, C_in·kh·kw] and encode them."
        )
    c_out, fan_in = words.shape
    wb, ab = product.w.width, product.x.width
    check_range("weight words", words, 0, (1 << wb) - 1, f"encode weights for a {wb}-bit port.")
    nf = _check_folding("pe", c_out, pe, "output channels")
    sf = _check_folding("simd", fan_in, simd, "input elements per output (C_in·kh·kw)")
    check_acc_bits(acc_bits, product.peak, f"{product.tag} product")
    top = f"conv_array_{product.kind}_{product.tag}_c{c_out}_k{fan_in}_pe{pe}_simd{simd}"
    digest = [*words.ravel().tolist(), *(bias.tolist() if bias is not None else [])]
    if requant is not None:
        digest += [*requant.mult.tolist(), *requant.shift.tolist(), requant.lo, requant.hi]
    top = f"{top}_acc{acc_bits}_{top_suffix(digest)}"
    depth, word_bits = nf * sf, pe * simd * wb
    lines = [
        f"    reg [{index_bits(depth) - 1}:0] addr;",
        f"    reg [{index_bits(sf) - 1}:0] sf;",
        f"    reg [{index_bits(nf) - 1}:0] nf, nf_q;",
        f"    reg [{simd * ab - 1}:0] x_q;",
        f"    reg [{word_bits - 1}:0] w_q;",
        "    reg v_q, first_q, last_q;",
        f"    reg [{word_bits - 1}:0] weights [0:{depth - 1}];",
        "    initial begin",
    ]
    fields = words.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(depth, pe * simd)
    for a, row in enumerate(fields):
        word = sum(int(v) << (wb * i) for i, v in enumerate(row))
        lines.append(f"        weights[{a}] = {word_bits}'h{word:x};")
    lines += [
        "    end",
        "    always @(posedge clk) if (en) w_q <= weights[addr];",
        "    always @(posedge clk) begin",
        "        if (rst) begin",
        "            addr <= 0; sf <= 0; nf <= 0; v_q <= 0;",
        "        end else begin",
        "            v_q <= en;",
        "            if (en) begin",
        "                x_q <= x; nf_q <= nf;",
        f"                first_q <= sf == 0; last_q <= sf == {sf - 1};",
        f"                addr <= (addr == {depth - 1}) ? 0 : addr + 1;",
        f"                sf <= (sf == {sf - 1}) ? 0 : sf + 1;",
        f"                if (sf == {sf - 1}) nf <= (nf == {nf - 1}) ? 0 : nf + 1;",
        "            end",
        "        end",
        "    end",
    ]
    pw = product.bits
    bias_values = np.zeros(c_out, np.int64) if bias is None else np.asarray(bias, np.int64)
    lo, hi = qrange(acc_bits, signed=True)
    check_range("bias", bias_values, lo, hi, f"use a bias that fits acc_bits={acc_bits}.")
    result = "acc" if requant is None else "res"
    if requant is not None:
        lines.append(f"    reg [{pe * acc_bits - 1}:0] res;")
        lines.append("    reg res_v;")
        lines.append(f"    reg [{index_bits(nf) - 1}:0] res_nf;")
    for p in range(pe):
        for s in range(simd):
            lane = p * simd + s
            lines += [
                f"    wire signed [{pw - 1}:0] prod_{p}_{s};",
                f"    {top}_product mul_{p}_{s} (.x(x_q[{s * ab} +: {ab}]), "
                f".w(w_q[{lane * wb} +: {wb}]), .p(prod_{p}_{s}));",
            ]
        dot = " + ".join(f"prod_{p}_{s}" for s in range(simd))
        lines += [
            _case_rom("nf_q", f"bias_{p}", acc_bits, bias_values[p::pe].tolist()).rstrip("\n"),
            f"    reg signed [{acc_bits - 1}:0] sum_{p};",
            f"    wire signed [{acc_bits - 1}:0] next_{p} = "
            f"(first_q ? bias_{p} : sum_{p}) + {dot};",
            "    always @(posedge clk) begin",
            f"        if (rst) sum_{p} <= 0;",
            f"        else if (v_q) sum_{p} <= next_{p};",
            f"        if (v_q & last_q) {result}[{p * acc_bits} +: {acc_bits}] <= next_{p};",
            "    end",
        ]
    valid = "valid" if requant is None else "res_v"
    lines += [
        "    always @(posedge clk) begin",
        f"        if (rst) {valid} <= 0;",
        f"        else {valid} <= v_q & last_q;",
        *([] if requant is None else ["        if (v_q & last_q) res_nf <= nf_q;"]),
        "    end",
    ]
    if requant is not None:
        lines += _requant_lines(requant, pe, nf, acc_bits)
    out = (
        Port("acc", "output", pe * acc_bits, True)
        if requant is None
        else Port("out", "output", pe * requant.out_bits, requant.out_signed)
    )
    ports = (
        *CONTROL_PORTS,
        Port("en", "input", 1, False),
        Port("x", "input", simd * ab, product.x.signed),
        Port("valid", "output", 1, False),
        out,
    )
    body_text = "\n".join(line for line in lines if line) + "\n"
    verilog = product.module(f"{top}_product") + "\n" + module(top, ports, body_text)
    params = {
        **product.params,
        "product": product.kind,
        "c_out": c_out,
        "fan_in": fan_in,
        "pe": pe,
        "simd": simd,
        "acc_bits": acc_bits,
        "fold": depth,
        "requant": int(requant is not None),
    }
    return Unit("conv_array", top, params, verilog, ports)


def _requant_lines(requant: ArrayRequant, pe: int, nf: int, acc_bits: int) -> list[str]:
    """The third stage: each lane's per-channel (M, s) from a ROM on the fold, then the
    rounding shift and the clamp of :mod:`hwquant.rtl.requantizer`."""
    mult = np.asarray(requant.mult, np.int64)
    shift = np.asarray(requant.shift, np.int64)
    mult_bits = int(mult.max()).bit_length() + 1
    wide = acc_bits + mult_bits + 1
    shift_bits = max(2, int(shift.max()).bit_length() + 1)
    ob = requant.out_bits
    lines = ["    always @(posedge clk) begin", "        if (rst) valid <= 0;"]
    lines += ["        else valid <= res_v;", "    end"]
    for p in range(pe):
        half = [(1 << int(s)) >> 1 for s in shift[p::pe]]
        lines += [
            _case_rom("res_nf", f"mult_{p}", mult_bits, mult[p::pe].tolist()).rstrip("\n"),
            _case_rom("res_nf", f"shift_{p}", shift_bits, shift[p::pe].tolist()).rstrip("\n"),
            _case_rom("res_nf", f"half_{p}", wide, half).rstrip("\n"),
            scale_and_shift(
                f"code_{p}",
                f"$signed(res[{p * acc_bits} +: {acc_bits}])",
                f"mult_{p}",
                f"shift_{p}",
                f"half_{p}",
                wide,
            ).rstrip("\n"),
            "    always @(posedge clk) begin",
            "        if (res_v) begin\n            "
            + clamp_statement(
                f"out[{p * ob} +: {ob}]", f"code_{p}", requant.lo, requant.hi, wide, ob
            ).rstrip("\n"),
            "        end",
            "    end",
        ]
    return lines


def array_stimulus(unit: Unit, patches: np.ndarray, expected: np.ndarray) -> Stimulus:
    """Vectors that stream output pixels through an array: ``patches`` [P, K] input windows,
    ``expected`` [P, C_out] results (accumulators, or codes with a requantizer). Cycle 0
    resets; pixel ``q`` takes ``fold`` cycles (module docstring); each neuron fold's ``pe``
    lanes are checked, with ``valid``, when they come out."""
    pe, simd, nf = (int(unit.params[k]) for k in ("pe", "simd", "c_out"))
    nf //= pe
    x = np.asarray(patches, np.int64)
    pixels, fan_in = x.shape
    sf = fan_in // simd
    chunks = np.broadcast_to(x.reshape(pixels, 1, sf, simd), (pixels, nf, sf, simd))
    stream = chunks.reshape(-1, simd)
    latency = REGISTER_LATENCY + int(unit.params["requant"])
    cycles = 1 + len(stream) + latency
    inputs = {
        "x": np.zeros((cycles, simd), np.int64),
        "rst": (np.arange(cycles) == 0).astype(np.int64),
        "en": ((np.arange(cycles) >= 1) & (np.arange(cycles) <= len(stream))).astype(np.int64),
    }
    inputs["x"][1 : 1 + len(stream)] = stream
    checks = 1 + sf * np.arange(1, pixels * nf + 1) - 1 + latency
    out = "acc" if unit.params["requant"] == 0 else "out"
    lanes = np.asarray(expected, np.int64).reshape(pixels * nf, pe)
    expect = {out: lanes, "valid": np.ones(len(checks), np.int64)}
    return Stimulus(inputs, expect, checks, {"x": simd, out: pe})
