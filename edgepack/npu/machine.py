"""A functional model of the Ethos-U55 (and the U65 command set) executing a decoded command stream.

Memory is a set of regions (base-pointer indices, as the driver programs them), each a uint8 numpy
array of shape (B, size): B independent inferences run at once (the leading batch dimension).
Commands run in order; DMA and NPU operations complete immediately (timing is not modelled, so
missing waits or SHRAM hazards are not detected).  Behaviours no document states are named rules
in `rules.py`; the code cites them by name.
"""

from __future__ import annotations

import numpy as np
from ethosu.vela.architecture_features import Accelerator, ArchitectureFeatures

from edgepack.errors import ModelError

from . import rules
from .decoder import Command, DriverPayload, decode_command_stream, parse_driver_payload
from .weights import DEPTH_FIRST, DEPTHWISE, PART_KERNEL, decode_scales, decode_weights

# (product, MACs) -> Vela accelerator (for the micro-block depths of the weight order)
_ACCELERATORS = {
    (0, 32): Accelerator.Ethos_U55_32,
    (0, 64): Accelerator.Ethos_U55_64,
    (0, 128): Accelerator.Ethos_U55_128,
    (0, 256): Accelerator.Ethos_U55_256,
    (1, 256): Accelerator.Ethos_U65_256,
}

_IFM_PREC = {0: (1, False), 1: (1, True), 4: (2, False), 5: (2, True), 9: (4, True)}  # ifm_precision
_OFM_PREC = {0: (1, False), 1: (1, True), 2: (2, False), 3: (2, True), 5: (4, True)}  # ofm_precision
_ELEMENTWISE = {0: "MUL", 1: "ADD", 2: "SUB", 3: "MIN", 4: "MAX", 5: "LRELU", 6: "ABS", 7: "CLZ", 8: "SHR", 9: "SHL"}
_UNARY = {"LRELU", "ABS", "CLZ"}


def _s32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def _s16(v: int) -> int:
    return v - 0x10000 if v >= 0x8000 else v


def scale_round(v: np.ndarray, scale, shift, round_mode: int) -> np.ndarray:
    """round(v * scale / 2^shift) in the given round mode (rules.TFL_ROUNDING). int64 in and out."""
    v = np.asarray(v, dtype=np.int64)
    scale = np.asarray(scale, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(scale != 1):
        big = float(np.abs(v).max(initial=0)) * float(np.abs(scale).max(initial=0))
        if big >= 2.0 ** 62:
            raise ModelError(f"accumulator x scale overflows 64 bits ({big:.3g}); not modelled")
        v = v * scale
    shift = np.broadcast_to(shift, v.shape)
    if round_mode == 1:  # TRUNCATE: toward zero
        q = np.abs(v) >> shift
        return np.where(v < 0, -q, q)
    s1 = np.maximum(shift - 1, 0)
    half_up = np.where(shift > 0, (v + (np.int64(1) << s1)) >> shift, v)
    if round_mode == 2:  # NATURAL
        return half_up
    if round_mode != 0:
        raise ModelError(f"unknown round mode {round_mode}")
    # TFL / double rounding: half up at bit 31, then round half away from zero (RoundingDivideByPOT)
    if not np.any(shift > 31):
        return half_up
    v1 = (v + (np.int64(1) << 30)) >> 31
    e = np.maximum(shift - 31, 0)
    mask = (np.int64(1) << e) - 1
    thr = (mask >> 1) + (v1 < 0)
    dbl = (v1 >> e) + ((v1 & mask) > thr)
    return np.where(shift > 31, dbl, half_up)


class NpuMachine:
    """Executes command streams of one NPU configuration on a set of memory regions."""

    def __init__(self, payload: DriverPayload, regions: dict[int, np.ndarray], batch: int):
        acc = _ACCELERATORS.get((payload.product, payload.macs))
        if acc is None:
            raise ModelError(f"unsupported NPU configuration: product {payload.product}, {payload.macs} MACs "
                             "(supported: Ethos-U55-32/64/128/256, Ethos-U65-256)")
        cfg = ArchitectureFeatures.accelerator_configs[acc]
        self.ofm_ublock_depth = cfg.ofm_ublock.depth
        self.ifm_ublock_depth = cfg.ifm_ublock.depth
        self.payload = payload
        self.batch = batch
        self.regions = regions
        self.shram = np.zeros((batch, max(payload.shram_kib, 1) * 1024), dtype=np.uint8)
        self.reg: dict[str, Command] = {}
        self.cmd: Command | None = None
        self.trace = None  # optional callback(machine, command, ofm_values) after each NPU operation
        self.stream = 0  # which `ethos-u` operator of the model this command stream is (for traces)

    # ---- registers -------------------------------------------------------------------------
    def p(self, name: str, default: int = 0) -> int:
        c = self.reg.get(name)
        return default if c is None else c.param

    def d(self, name: str, default: int = 0) -> int:
        c = self.reg.get(name)
        return default if c is None else c.payload

    def f(self, name: str, fld: str, default: int = 0) -> int:
        c = self.reg.get(name)
        return default if c is None else c.fields[fld]

    def fail(self, msg: str):
        off = self.cmd.offset if self.cmd else 0
        raise ModelError(f"command stream offset 0x{off:06x} ({self.cmd.name if self.cmd else '?'}): {msg}")

    # ---- memory ----------------------------------------------------------------------------
    def _mem(self, region: int) -> np.ndarray:
        m = self.regions.get(region)
        if m is None:
            self.fail(f"region {region} has no memory (base pointer not set)")
        return m

    def _gather(self, mem: np.ndarray, addr: np.ndarray, size: int, signed: bool) -> np.ndarray:
        if addr.size and (addr.min() < 0 or addr.max() + size > mem.shape[1]):
            self.fail(f"read of bytes {addr.min()}..{addr.max() + size} outside the region ({mem.shape[1]} bytes)")
        idx = addr[..., None] + np.arange(size)
        b = mem[:, idx]
        if mem.shape[0] != self.batch:
            b = np.broadcast_to(b, (self.batch,) + b.shape[1:])
        raw = np.ascontiguousarray(b).view({1: "<u1", 2: "<u2", 4: "<u4"}[size])[..., 0].astype(np.int64)
        if signed:
            raw = np.where(raw >= 1 << (8 * size - 1), raw - (1 << (8 * size)), raw)
        return raw

    def _scatter(self, mem: np.ndarray, addr: np.ndarray, values: np.ndarray, size: int):
        if addr.size and (addr.min() < 0 or addr.max() + size > mem.shape[1]):
            self.fail(f"write of bytes {addr.min()}..{addr.max() + size} outside the region ({mem.shape[1]} bytes)")
        if mem.shape[0] != self.batch:
            self.fail("write to a read-only (unbatched) region")
        v = (values.astype(np.int64) & ((1 << (8 * size)) - 1)).astype({1: "<u1", 2: "<u2", 4: "<u4"}[size])
        bytes_ = v[..., None].view(np.uint8)
        idx = addr[..., None] + np.arange(size)
        mem[:, idx] = bytes_

    def _fm_addr(self, prefix: str, h: int, w: int, c: int, fmt: int, elem: int) -> np.ndarray:
        """Byte address of every (y, x, c) of a feature map: tiles BASE0..3, NHWC or NHCWB16."""
        bases = [self.d(f"NPU_SET_{prefix}_BASE{t}") for t in range(4)]
        h0 = self.p(f"NPU_SET_{prefix}_HEIGHT0_M1") + 1
        h1 = self.p(f"NPU_SET_{prefix}_HEIGHT1_M1") + 1
        w0 = self.p(f"NPU_SET_{prefix}_WIDTH0_M1") + 1
        # strides are signed: Vela walks a feature map backwards for MIRROR_PAD (rules.SIGNED_STRIDES)
        sx, sy, sc = (_s32(self.d(f"NPU_SET_{prefix}_STRIDE_{a}")) for a in "XYC")
        y = np.arange(h)[:, None, None]
        x = np.arange(w)[None, :, None]
        ch = np.arange(c)[None, None, :]
        right = x >= w0
        bottom = np.where(right, y >= h1, y >= h0)
        t = right.astype(np.int64) + 2 * bottom
        yy = y - np.where(bottom, np.where(right, h1, h0), 0)
        xx = x - np.where(right, w0, 0)
        base = np.asarray(bases, dtype=np.int64)[t]
        if fmt == 0:  # NHWC
            cpart = ch * sc
        elif fmt == 1:  # NHCWB16
            cpart = (ch // 16) * sc + (ch % 16) * elem
        else:
            self.fail(f"unknown {prefix} format {fmt}")
        return (base + yy * sy + xx * sx + cpart).astype(np.int64)

    def read_fm(self, prefix: str, h: int, w: int, c: int) -> np.ndarray:
        if prefix == "IFM2":
            prec, fmt = self.f("NPU_SET_IFM2_PRECISION", "precision"), self.f("NPU_SET_IFM2_PRECISION", "format")
            region = self.p("NPU_SET_IFM2_REGION")
        else:
            prec, fmt = self.f("NPU_SET_IFM_PRECISION", "precision"), self.f("NPU_SET_IFM_PRECISION", "format")
            region = self.p("NPU_SET_IFM_REGION")
        if prec not in _IFM_PREC:
            self.fail(f"unsupported {prefix} precision {prec}")
        size, signed = _IFM_PREC[prec]
        addr = self._fm_addr(prefix, h, w, c, fmt, size)
        return self._gather(self._mem(region), addr, size, signed)

    def ofm_type(self) -> tuple[int, bool]:
        prec = self.f("NPU_SET_OFM_PRECISION", "precision")
        if prec not in _OFM_PREC:
            self.fail(f"unsupported OFM precision {prec}")
        return _OFM_PREC[prec]

    def write_ofm(self, values: np.ndarray):
        size, _signed = self.ofm_type()
        _, h, w, c = values.shape
        addr = self._fm_addr("OFM", h, w, c, self.f("NPU_SET_OFM_PRECISION", "format"), size)
        self._scatter(self._mem(self.p("NPU_SET_OFM_REGION")), addr, values, size)

    def ofm_shape(self) -> tuple[int, int, int]:
        return (self.p("NPU_SET_OFM_HEIGHT_M1") + 1, self.p("NPU_SET_OFM_WIDTH_M1") + 1,
                self.p("NPU_SET_OFM_DEPTH_M1") + 1)

    # ---- execution -------------------------------------------------------------------------
    def run(self, commands: list[Command]):
        for cmd in commands:
            self.cmd = cmd
            name = cmd.name
            if not cmd.is_operation:
                self.reg[name] = cmd
            elif name == "NPU_OP_STOP":
                return
            elif name == "NPU_OP_DMA_START":
                self.dma()
            elif name in ("NPU_OP_CONV", "NPU_OP_DEPTHWISE"):
                self.conv(name == "NPU_OP_DEPTHWISE")
            elif name == "NPU_OP_POOL":
                self.pool(cmd.fields["mode"])
            elif name == "NPU_OP_ELEMENTWISE":
                self.elementwise(cmd.fields["mode"])
            elif name in ("NPU_OP_DMA_WAIT", "NPU_OP_KERNEL_WAIT", "NPU_OP_PMU_MASK", "NPU_OP_IRQ"):
                pass  # sequential model: every operation has completed
            else:
                self.fail("operation not modelled")

    def dma(self):
        src = self.reg.get("NPU_SET_DMA0_SRC_REGION")
        dst = self.reg.get("NPU_SET_DMA0_DST_REGION")
        if src is None or dst is None:
            self.fail("DMA without source/destination region")
        if src.fields["stride_mode"] != 0 or dst.fields["stride_mode"] != 0:
            self.fail("DMA 2D/3D stride modes are not modelled")
        length = self.d("NPU_SET_DMA0_LEN")
        s_addr, d_addr = self.d("NPU_SET_DMA0_SRC"), self.d("NPU_SET_DMA0_DST")
        smem = self.shram if src.fields["internal"] else self._mem(src.fields["region"])
        dmem = self.shram if dst.fields["internal"] else self._mem(dst.fields["region"])  # rules.LUT_IN_SHRAM
        if s_addr + length > smem.shape[1] or d_addr + length > dmem.shape[1]:
            self.fail(f"DMA of {length} bytes from 0x{s_addr:x} to 0x{d_addr:x} outside its regions")
        dmem[:, d_addr:d_addr + length] = smem[:, s_addr:s_addr + length]

    def _kernel(self):
        ks = self.reg.get("NPU_SET_KERNEL_STRIDE")
        kf = ks.fields if ks else {k: 0 for k, _, _ in rules.PARAM_SUBFIELDS["NPU_SET_KERNEL_STRIDE"]}
        sx = (kf["stride_x_lsb"] | kf["stride_x_msb"] << 1) + 1
        sy = (kf["stride_y_lsb"] | kf["stride_y_msb"] << 1) + 1
        dx, dy = kf["dilation_x"] + 1, kf["dilation_y"] + 1
        kw_d = self.p("NPU_SET_KERNEL_WIDTH_M1") + 1
        kh_d = self.p("NPU_SET_KERNEL_HEIGHT_M1") + 1
        if (kw_d - 1) % dx or (kh_d - 1) % dy:
            self.fail("dilated kernel size is not a multiple of the dilation")
        kw, kh = (kw_d - 1) // dx + 1, (kh_d - 1) // dy + 1
        return sy, sx, dy, dx, kh, kw, kh_d, kw_d, kf["weight_order"]

    def _padded_ifm(self, c: int, pad_value_fn):
        """IFM with the implied extent and padding (rules.IFM_EXTENT_FROM_OFM)."""
        if self.f("NPU_SET_IFM_UPSCALE", "mode") != 0:
            self.fail("IFM upscaling (resampling) is not modelled")
        oh, ow, _ = self.ofm_shape()
        sy, sx, dy, dx, kh, kw, kh_d, kw_d, _ = self._kernel()
        pt, pl = self.p("NPU_SET_IFM_PAD_TOP"), self.p("NPU_SET_IFM_PAD_LEFT")
        pb, pr = self.p("NPU_SET_IFM_PAD_BOTTOM"), self.p("NPU_SET_IFM_PAD_RIGHT")
        full_h, full_w = (oh - 1) * sy + kh_d, (ow - 1) * sx + kw_d
        ih, iw = max(full_h - pt - pb, 0), max(full_w - pl - pr, 0)
        ifm = self.read_fm("IFM", ih, iw, c)
        padded = np.full((self.batch, full_h, full_w, c), pad_value_fn(), dtype=np.int64)
        h_end, w_end = min(pt + ih, full_h), min(pl + iw, full_w)
        padded[:, pt:h_end, pl:w_end, :] = ifm[:, :h_end - pt, :w_end - pl, :]
        valid = np.zeros((full_h, full_w), dtype=bool)
        valid[pt:h_end, pl:w_end] = True
        return padded, valid, (sy, sx, dy, dx, kh, kw)

    def _taps(self, arr, geom, oh, ow):
        sy, sx, dy, dx, kh, kw = geom
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dy, kx * dx
                yield ky, kx, arr[:, y0:y0 + (oh - 1) * sy + 1:sy, x0:x0 + (ow - 1) * sx + 1:sx]

    def conv(self, depthwise: bool):
        oh, ow, oc = self.ofm_shape()
        ic = oc if depthwise else self.p("NPU_SET_IFM_DEPTH_M1") + 1
        zp = _s16(self.p("NPU_SET_IFM_ZERO_POINT"))
        if self.f("NPU_SET_IFM_PRECISION", "precision") == 9:  # rules.IFM_PRECISION_32_NO_ZERO_POINT
            zp = 0
        padded, _valid, geom = self._padded_ifm(ic, lambda: zp)
        sy, sx, dy, dx, kh, kw = geom
        traversal = DEPTHWISE if depthwise else (PART_KERNEL if self._kernel()[8] else DEPTH_FIRST)
        wlen, wbase = self.d("NPU_SET_WEIGHT_LENGTH"), self.d("NPU_SET_WEIGHT_BASE")
        wmem = self._mem(self.p("NPU_SET_WEIGHT_REGION"))
        if wbase + wlen > wmem.shape[1]:
            self.fail("weight stream outside its region")
        # weights are constants: take them from the first inference (rules.WEIGHT_STREAM_ORDER)
        w = decode_weights(wmem[0, wbase:wbase + wlen].tobytes(), oc, 1 if depthwise else ic, kh, kw, dy, dx,
                           self.p("NPU_SET_OFM_BLK_DEPTH_M1") + 1, traversal, self.ofm_ublock_depth,
                           self.ifm_ublock_depth, self.cmd.offset)
        slen, sbase = self.d("NPU_SET_SCALE_LENGTH"), self.d("NPU_SET_SCALE_BASE")
        smem = self._mem(self.p("NPU_SET_SCALE_REGION"))
        bias, scale, shift = decode_scales(smem[0, sbase:sbase + slen].tobytes(), oc, self.cmd.offset)
        x = (padded - zp).astype(np.float64)  # exact: |partial sums| < 2^53
        acc = np.zeros((self.batch, oh, ow, oc), dtype=np.float64)
        wf = w.astype(np.float64)
        for ky, kx, patch in self._taps(x, geom, oh, ow):
            if depthwise:
                acc += patch * wf[:, ky, kx, 0]
            else:
                acc += patch @ wf[:, ky, kx, :].T
        acc = acc.astype(np.int64) + bias  # rules.ACC_BIAS_40BIT
        if self.f("NPU_SET_OFM_PRECISION", "scaling"):  # global scale
            scale, shift = self.d("NPU_SET_OFM_SCALE"), self.f("NPU_SET_OFM_SCALE", "shift")
        self.output(acc, scale, shift)

    def pool(self, mode: int):
        oh, ow, oc = self.ofm_shape()
        zp = _s16(self.p("NPU_SET_IFM_ZERO_POINT"))
        if self.f("NPU_SET_IFM_PRECISION", "precision") == 9:  # rules.IFM_PRECISION_32_NO_ZERO_POINT
            zp = 0
        scale, shift = self.d("NPU_SET_OFM_SCALE", 1), self.f("NPU_SET_OFM_SCALE", "shift")
        if mode == 2:  # REDUCE_SUM over depth (rules.REDUCE_SUM_OVER_DEPTH)
            ic = self.p("NPU_SET_IFM_DEPTH_M1") + 1
            padded, _valid, geom = self._padded_ifm(ic, lambda: zp)
            acc = np.zeros((self.batch, oh, ow, 1), dtype=np.int64)
            for _ky, _kx, patch in self._taps(padded - zp, geom, oh, ow):
                acc += patch.sum(axis=3, keepdims=True)
            if oc != 1:
                self.fail(f"REDUCE_SUM with OFM depth {oc} (expected 1)")
            self.output(acc, scale, shift)
            return
        if mode == 0:  # MAX: padding never wins
            padded, _valid, geom = self._padded_ifm(oc, lambda: -(1 << 40))
            acc = None
            for _ky, _kx, patch in self._taps(padded, geom, oh, ow):
                acc = patch.copy() if acc is None else np.maximum(acc, patch)
            self.output(acc - zp, scale, shift)
            return
        if mode != 1:
            self.fail(f"unknown pooling mode {mode}")
        padded, valid, geom = self._padded_ifm(oc, lambda: zp)
        acc = np.zeros((self.batch, oh, ow, oc), dtype=np.int64)
        count = np.zeros((oh, ow), dtype=np.int64)
        v = valid[None, :, :, None].astype(np.int64)
        for _ky, _kx, patch in self._taps(padded - zp, geom, oh, ow):
            acc += patch
        for _ky, _kx, vp in self._taps(v, geom, oh, ow):
            count += vp[0, :, :, 0]
        pads = sum(self.p(f"NPU_SET_IFM_PAD_{s}") for s in ("TOP", "LEFT", "BOTTOM", "RIGHT"))
        if pads and scale == 1 and shift == 0:  # rules.AVGPOOL_HW_DIVIDE
            n = count[None, :, :, None]
            q = (np.abs(acc) + n // 2) // n
            acc = np.where(acc < 0, -q, q)
        self.output(acc, scale, shift)

    def elementwise(self, mode: int):
        op = _ELEMENTWISE.get(mode)
        if op is None:
            self.fail(f"unknown elementwise mode {mode}")
        oh, ow, oc = self.ofm_shape()
        ifm_prec = self.f("NPU_SET_IFM_PRECISION", "precision")
        zpa = 0 if ifm_prec == 9 else _s16(self.p("NPU_SET_IFM_ZERO_POINT"))
        a = self.read_fm("IFM", oh, ow, oc) - zpa
        round_mode = self.f("NPU_SET_OFM_PRECISION", "rounding")
        global_scale = self.f("NPU_SET_OFM_PRECISION", "scaling")
        scale, shift = self.d("NPU_SET_OFM_SCALE", 1), self.f("NPU_SET_OFM_SCALE", "shift")
        if not global_scale:  # rules.UNSCALED_ELEMENTWISE
            scale, shift = 1, 0
        if op in _UNARY:
            if op == "ABS":
                r = np.abs(a)
            elif op == "LRELU":
                # alpha in OFM_SCALE applies to negative values only; positives pass unscaled
                self.output(np.where(a < 0, scale_round(a, scale, shift, round_mode), a), 1, 0)
                return
            else:  # CLZ of the 32-bit value
                u = (a & 0xFFFFFFFF).astype(np.uint64)
                r = np.full(a.shape, 32, dtype=np.int64)
                nz = u != 0
                r[nz] = 31 - np.floor(np.log2(u[nz].astype(np.float64))).astype(np.int64)
                scale, shift = 1, 0
            self.output(r, scale, shift)
            return
        bc = self.reg.get("NPU_SET_IFM2_BROADCAST")
        bf = bc.fields if bc else {"broadcast_height": 0, "broadcast_width": 0, "broadcast_depth": 0,
                                   "operand_order": 0, "broadcast_scalar": 0}
        ifm2_prec = self.f("NPU_SET_IFM2_PRECISION", "precision")
        zpb = 0 if ifm2_prec == 9 else _s16(self.p("NPU_SET_IFM2_ZERO_POINT"))
        if bf["broadcast_scalar"]:
            sv = self.p("NPU_SET_IFM2_SCALAR")
            if _IFM_PREC.get(ifm2_prec, (1, True))[1]:
                sv = _s16(sv)
            b = np.full((self.batch, 1, 1, 1), sv - zpb, dtype=np.int64)
        else:
            h2 = 1 if bf["broadcast_height"] else oh
            w2 = 1 if bf["broadcast_width"] else ow
            c2 = 1 if bf["broadcast_depth"] else oc
            b = self.read_fm("IFM2", h2, w2, c2) - zpb
        b = np.broadcast_to(b, a.shape)
        if bf["operand_order"]:  # rules.OPERAND_ORDER
            a, b = b, a
        if op in ("ADD", "SUB"):
            smode = self.f("NPU_SET_IFM_PRECISION", "scale_mode")
            opa_scale, opa_shift = self.d("NPU_SET_OPA_SCALE"), self.f("NPU_SET_OPA_SCALE", "shift")
            opb_scale = self.d("NPU_SET_OPB_SCALE")
            if smode == 0:  # rules.ELEMENTWISE_16BIT_SCALE
                if opa_shift:
                    self.fail("OPA_SCALE shift in 16-bit scale mode is not modelled")
                a2, b2 = a * opa_scale, b * opb_scale
            elif smode in (1, 2):  # rules.ADVANCED_ADD_SUB
                big, small = (b, a) if smode == 1 else (a, b)
                small = scale_round(small << 20, opa_scale, opa_shift + 20, round_mode)
                big = big << 19
                a2, b2 = (small, big) if smode == 1 else (big, small)
            else:
                self.fail(f"unknown IFM scale mode {smode}")
            r = a2 + b2 if op == "ADD" else a2 - b2
            self.output(r, scale, shift)
        elif op == "MUL":
            r = a * b
            if ifm_prec == 9:  # rules.MUL_32BIT_SHIFT_ONLY
                scale = 1
            self.output(r, scale, shift)
        elif op in ("MIN", "MAX"):
            self.output(np.minimum(a, b) if op == "MIN" else np.maximum(a, b), scale, shift)
        elif op == "SHL":
            self.output(a << np.clip(b, 0, 63), 1, 0)
        elif op == "SHR":  # rules.SHR_ROUND_FROM_OFM
            n = np.clip(b, 0, 63)
            if round_mode == 1:
                r = a >> n
            else:
                r = np.where(n > 0, (a + (np.int64(1) << np.maximum(n - 1, 0))) >> n, a)
            self.output(r, 1, 0)

    def output(self, acc: np.ndarray, scale, shift):
        """Output stage: scale and round, add the OFM zero point, activation, clamp, saturate."""
        round_mode = self.f("NPU_SET_OFM_PRECISION", "rounding")
        size, signed = self.ofm_type()
        v = scale_round(acc, scale, shift, round_mode)
        zp = _s16(self.p("NPU_SET_OFM_ZERO_POINT"))
        v = v + zp
        act = self.reg.get("NPU_SET_ACTIVATION")
        func = act.fields["type"] if act else 0
        clip = act.fields["act_clip_range"] if act else 0
        amin, amax = self.p("NPU_SET_ACTIVATION_MIN"), self.p("NPU_SET_ACTIVATION_MAX")
        if clip == 0:
            csigned = signed
        elif clip in (3, 5):
            csigned = True
        elif clip == 2:
            csigned = False
        else:
            self.fail(f"unknown activation clip range {clip}")
        if csigned:
            amin, amax = _s16(amin), _s16(amax)
        if size == 4 and clip == 0:
            pass  # int32 OFM with OFM-precision clip: no 16-bit clamp (rules.OFM_SATURATE)
        else:
            v = np.clip(v, amin, amax)
        if func == 0:
            pass
        elif 16 <= func <= 23:  # rules.CLAMP_BEFORE_LUT, rules.LUT_IN_SHRAM
            v = self.lut(func - 16, v, size)
        else:
            self.fail(f"activation function {func} (hardware TANH/SIGMOID) is not modelled")
        lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << (8 * size)) - 1)
        v = np.clip(v, lo, hi)
        self.write_ofm(v)
        if self.trace is not None:
            self.trace(self, self.cmd, v)

    def lut(self, slot: int, v: np.ndarray, size: int) -> np.ndarray:
        if size == 2:
            self.fail("int16 lookup tables are not modelled")
        base = self.shram.shape[1] - 2048 + 256 * slot  # rules.LUT_IN_SHRAM
        idx = np.clip(v, -128, 127) + 128
        table = self._gather(self.shram, base + np.arange(256) * size, size, True)  # (B, 256)
        b = np.arange(self.batch).reshape((-1,) + (1,) * (v.ndim - 1))
        return table[b, idx]


def run_command_stream(payload_bytes: bytes, regions: dict[int, np.ndarray], batch: int, trace=None,
                       stream: int = 0) -> NpuMachine:
    """Decode a driver payload and run it on `regions` (modified in place). Returns the machine.
    `trace(machine, command, ofm)` is called after every NPU operation with its OFM values (B, H, W, C);
    `machine.stream` is `stream` (the n-th `ethos-u` operator of the model, as Vela's debug database
    numbers command streams)."""
    payload = parse_driver_payload(payload_bytes)
    commands = decode_command_stream(payload.command_stream)
    m = NpuMachine(payload, regions, batch)
    m.trace = trace
    m.stream = stream
    m.run(commands)
    return m
