"""The pooling blocks: max pooling on codes and average pooling with requantization.

Both walk ``for oy, ox: for ky, kx`` (``kx`` fastest), one input pixel word per cycle, and
reduce every channel of the word at once (the word holds all ``C`` channels):

* **max** (:class:`~hwquant.ir.intmodel.MaxPoolNode`): ``m ← first ? v : max(m, v)`` per channel,
  a padding position reading the smallest code (every window holds a real pixel, so the max is
  the engine's ``max_pool2d`` with its −∞ padding). Pipeline: address → RAM read → read word
  registered → compare; the word is written with the window's last compare (``depth = 4``).
  The register after the RAM keeps the block RAM's clock-to-output (its output port is not
  registered) and the compare's carry chain in different cycles.
* **avg** (:class:`~hwquant.ir.intmodel.AvgPoolNode`): the exact window sum per channel
  (``kernel_size`` x ``kernel_size`` windows at stride ``kernel_size``, a remainder row or
  column dropped, or the whole plane when global: :func:`hwquant.core.intmath.window_sum`), then
  ``clamp((sum·M + 2^(s−1)) >>> s, lo, hi)``; the read word is registered before the sum, as
  in max pooling (``depth = 6``).
"""

from __future__ import annotations

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import code_format, qrange
from hwquant.ir.intmodel import AvgPoolNode, MaxPoolNode
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    window_address,
    write_address_lines,
)
from hwquant.rtl.requantizer import clamp_statement
from hwquant.rtl.unit import index_bits, literal


def _window_walk(
    fmap: FeatureMap,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
) -> list[str]:
    """Counters, pixel address (stage 1), the tags ``v_1, pad_1, first_1, last_1`` and their
    stage-2 and stage-3 copies, and the read word registered as ``word_3`` (stage 3)."""
    (kh, kw), (ho, wo) = kernel, out_hw
    lines = counter_lines([("kx", kw), ("ky", kh), ("ox", wo), ("oy", ho)], "issue")
    lines += window_address(stride, pad, fmap)
    lines += [
        "    reg v_1, v_2, v_3, pad_1, pad_2, pad_3, first_1, first_2, first_3;",
        "    reg last_1, last_2, last_3;",
        f"    reg [{fmap.word_bits - 1}:0] word_3;",
        "    always @(posedge clk) begin",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; v_3 <= 0; end",
        "        else begin v_1 <= issue; v_2 <= v_1; v_3 <= v_2; end",
        f"        rd_addr_0 <= pad ? 0 : pixel[{index_bits(fmap.pixels) - 1}:0];",
        "        word_3 <= rd_data_0;",
        "        pad_1 <= pad; pad_2 <= pad_1; pad_3 <= pad_2;",
        "        first_1 <= ky == 0 && kx == 0; first_2 <= first_1; first_3 <= first_2;",
        f"        last_1 <= ky == {kh - 1} && kx == {kw - 1}; last_2 <= last_1; last_3 <= last_2;",
        "    end",
        *write_address_lines(),
    ]
    return lines


def emit_max(node: MaxPoolNode, inputs: list[FeatureMap], module: str) -> Block:
    """The max-pooling block of ``node`` (module docstring)."""
    fmap = inputs[0]
    if node.dilation != (1, 1) or node.ceil_mode:
        raise UnsupportedLayerError(
            f"max pool '{node.name}' uses dilation {node.dilation} or ceil_mode; the network "
            "generator builds undilated floor-mode pooling. Fix: use MaxPool2d(k, s, p)."
        )
    (kh, kw), (sy, sx), (py, px) = node.kernel_size, node.stride, node.padding
    ho, wo = (fmap.height + 2 * py - kh) // sy + 1, (fmap.width + 2 * px - kw) // sx + 1
    out = FeatureMap(fmap.channels, ho, wo, fmap.bits, fmap.signed)
    steps, depth, b = ho * wo * kh * kw, 4, fmap.bits
    lines = _window_walk(fmap, (kh, kw), (sy, sx), (py, px), (ho, wo))
    sign = " signed" if fmap.signed else ""
    low = qrange(b, fmap.signed)[0] & ((1 << b) - 1)
    lines += [f"    reg [{out.word_bits - 1}:0] m;"]
    for c in range(fmap.channels):
        lines += [
            f"    wire{sign} [{b - 1}:0] val_{c} = pad_3 ? {b}'d{low} : word_3[{c * b} +: {b}];",
            f"    wire{sign} [{b - 1}:0] old_{c} = m[{c * b} +: {b}];",
            f"    wire [{b - 1}:0] next_{c} = (first_3 || val_{c} > old_{c}) ? val_{c} : old_{c};",
        ]
    nxt = "{" + ", ".join(f"next_{c}" for c in reversed(range(fmap.channels))) + "}"
    lines += [
        "    always @(posedge clk) begin",
        f"        if (v_3) m <= {nxt};",
        "        if (rst) wr_en <= 0;",
        "        else wr_en <= v_3 && last_3;",
        f"        if (v_3 && last_3) wr_data <= {nxt};",
        "    end",
    ]
    body = control_lines(steps, depth) + lines
    info = {"kernel": [kh, kw], "stride": [sy, sx], "padding": [py, px]}
    verilog = module_text(module, block_ports([fmap], out), body)
    return Block(node.name, node.op, module, verilog, [node.inputs[0]], out, steps, depth, {}, info)


def emit_avg(node: AvgPoolNode, inputs: list[FeatureMap], module: str) -> Block:
    """The average-pooling block of ``node`` (module docstring)."""
    fmap = inputs[0]
    if node.kernel_size is None:
        if fmap.pixels != node.window:
            raise UnsupportedLayerError(
                f"global pool '{node.name}' was lowered for {node.window} pixels, its input "
                f"has {fmap.pixels}. Fix: lower the model at the input size you build for."
            )
        (kh, kw), (ho, wo) = (fmap.height, fmap.width), (1, 1)
    else:
        k = node.kernel_size
        (kh, kw), (ho, wo) = (k, k), (fmap.height // k, fmap.width // k)
    out_bits, out_signed = code_format(node.lo, node.hi)
    out = FeatureMap(fmap.channels, ho, wo, out_bits, out_signed)
    steps, depth, b = ho * wo * kh * kw, 6, fmap.bits
    lines = _window_walk(fmap, (kh, kw), (kh, kw), (0, 0), (ho, wo))
    sum_bits = b + 1 + index_bits(kh * kw)  # signed sum of kh·kw codes
    mult_bits = node.mult.bit_length() + 1
    wide = sum_bits + mult_bits + 1
    half = (1 << node.shift) >> 1
    ext = (lambda v: f"$signed({v})") if fmap.signed else (lambda v: f"$signed({{1'b0, {v}}})")
    lines += [
        "    reg res_v;",
        "    always @(posedge clk) if (rst) res_v <= 0; else res_v <= v_3 && last_3;",
    ]
    for c in range(fmap.channels):
        lines += [
            f"    wire signed [{sum_bits - 1}:0] val_{c} = {ext(f'word_3[{c * b} +: {b}]')};",
            f"    reg signed [{sum_bits - 1}:0] sum_{c}, res_{c};",
            f"    wire signed [{sum_bits - 1}:0] next_{c} = (first_3 ? 0 : sum_{c}) + val_{c};",
            f"    reg signed [{wide - 1}:0] scaled_{c};",
            f"    wire signed [{wide - 1}:0] shifted_{c} = (scaled_{c} + "
            f"{literal(half, wide)}) >>> {node.shift};",
            "    always @(posedge clk) begin",
            f"        if (v_3) sum_{c} <= next_{c};",
            f"        if (v_3 && last_3) res_{c} <= next_{c};",
            f"        scaled_{c} <= res_{c} * {literal(node.mult, mult_bits)};",
            "        "
            + clamp_statement(
                f"wr_data[{c * out_bits} +: {out_bits}]",
                f"shifted_{c}",
                node.lo,
                node.hi,
                wide,
                out_bits,
            ).rstrip(),
            "    end",
        ]
    lines += [
        "    reg scaled_v;",
        "    always @(posedge clk) begin",
        "        if (rst) begin scaled_v <= 0; wr_en <= 0; end",
        "        else begin scaled_v <= res_v; wr_en <= scaled_v; end",
        "    end",
    ]
    body = control_lines(steps, depth) + lines
    info = {"kernel": [kh, kw], "window": kh * kw, "out_bits": out_bits}
    verilog = module_text(module, block_ports([fmap], out), body)
    return Block(node.name, node.op, module, verilog, [node.inputs[0]], out, steps, depth, {}, info)
