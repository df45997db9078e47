"""The MatMul-free LM's two FPGA units (Zhu et al. 2024, arXiv 2406.02528) in Amaranth, bit-exact to
``models.ternary`` and taking the cycles it charges.

:class:`TernaryUnit` — the ternary accumulate unit of a BitLinear layer.  Each cycle with
``in_valid`` it takes a beat of ``lanes`` int8 activations (``act``) and ``lanes`` 2-bit weight codes
(``code``: 0b01 = +1, 0b11 = -1, 0b00 and 0b10 = 0).  Per lane a mux passes the activation, its
negation or zero (no multipliers); an adder tree sums the lanes into a registered partial sum
(stage 1); the next cycle adds it to a signed ``acc_width``-bit accumulator (stage 2).  ``first``
marks a dot product's first beat (the accumulator restarts; it also restarts by itself after a
``last``), ``last`` its final beat: the sum appears on ``sum`` with a one-cycle ``sum_valid`` one
cycle after the last beat is taken, ``ceil(k / lanes) + 1`` cycles for a dot product of length k
(``models.ternary.ternary_unit_cycles``).  No backpressure: a beat every cycle, dot products back
to back.  Lanes past k in the last beat must carry code 0 (or activation 0).  The accumulator
wraps modulo 2^acc_width; it is exact for k <= ``models.ternary.max_length(acc_width)`` (65535 for
the default 24 bits).

:class:`RowUnit` — the row-wise operation unit for the MLGRU and the channel mixer, Q8.8 fixed
point (``models.ternary``: add, sub, mul, gru, sigmoid, silu, rmsnorm; ``op`` is the index into
``ROW_OPS``, code 7 is reserved and yields zeros).  A row is ``length`` elements (1 .. 65535) sent as
``ceil(length / lanes)`` beats of ``lanes`` elements on ``a``, ``b``, ``c`` (the operands an op does not
use are ignored); ``op`` and ``length`` are read with a row's first beat, and the unit counts the
beats, so rows follow each other with no gap and no framing signals.  A beat is taken when
``in_valid`` and ``in_ready``.  Each beat goes through an input register and an output register:
its results appear on ``out`` with ``out_valid`` the cycle after it is taken; lanes past the row's
end read 0.  ``rmsnorm`` takes the row twice: the first pass accumulates the sum of squares (no
output); then ``in_ready`` is low for ``RMS_COMPUTE_CYCLES`` (40) cycles — a 35-step restoring divide
by the length, normalization of V = ms + 1, the LUT and three Newton multiplies (one each cycle) —
and the second pass streams the row again and scales it.  Structure: framing and the two register
stages in :class:`RowUnit`, one combinational :class:`RowLane` per lane (all ops, selected by the
registered op), :class:`SumSquares` (the first pass) and :class:`RmsFactor` (divide, LUT, Newton).
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from models import ternary as tm
from models.errors import SimError


def _check(unit, v, lo: int, hi: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        unit._MustUse__silence = True  # a unit rejected at construction is not "created but never used"
        raise SimError(f"{type(unit).__name__}: {name} must be an integer in {lo}..{hi}, got {v!r}")
    return v


def _tree(m: Module, terms: list, name: str):
    """Sum of ``terms`` by a balanced adder tree (combinational)."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            s = Signal(signed(max(len(terms[i]), len(terms[i + 1])) + 1), name=f"{name}_l{level}_{i // 2}")
            m.d.comb += s.eq(terms[i] + terms[i + 1])
            nxt.append(s)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms, level = nxt, level + 1
    return terms[0]


class TernaryUnit(wiring.Component):
    """Ternary dot-product unit: ``lanes`` add/subtract/skip lanes, an adder tree, a wide accumulator."""

    def __init__(self, lanes: int = 16, acc_width: int = 24):
        self.lanes = _check(self, lanes, 1, 1024, "lanes")
        self.acc_width = _check(self, acc_width, tm.acc_bits(self.lanes), 64, "acc_width")
        super().__init__({
            "in_valid": In(1),
            "first": In(1),
            "last": In(1),
            "act": In(data.ArrayLayout(signed(8), self.lanes)),
            "code": In(data.ArrayLayout(2, self.lanes)),
            "sum": Out(signed(self.acc_width)),
            "sum_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        terms = []
        for i in range(self.lanes):
            a, c = self.act[i], self.code[i]
            t = Signal(signed(9), name=f"term{i}")
            m.d.comb += t.eq(Mux(c[0], Mux(c[1], -a, a), 0))  # 0b01 add, 0b11 subtract, else skip
            terms.append(t)
        part = Signal(signed(tm.acc_bits(self.lanes)))  # stage 1: the beat's lane sum
        v1, f1, l1 = Signal(), Signal(), Signal()
        m.d.sync += [part.eq(_tree(m, terms, "tree")), v1.eq(self.in_valid), f1.eq(self.first), l1.eq(self.last)]

        acc = Signal(signed(self.acc_width))  # stage 2
        total = Signal(signed(self.acc_width))  # wraps modulo 2^acc_width
        m.d.comb += total.eq(Mux(f1, 0, acc) + part)
        m.d.sync += self.sum_valid.eq(0)
        with m.If(v1):
            with m.If(l1):
                m.d.sync += [self.sum.eq(total), self.sum_valid.eq(1), acc.eq(0)]
            with m.Else():
                m.d.sync += acc.eq(total)
        return m


def _sat(m: Module, v, name: str) -> Signal:
    s = Signal(signed(tm.Q_BITS), name=name)
    m.d.comb += s.eq(Mux(v > tm.Q_MAX, tm.Q_MAX, Mux(v < tm.Q_MIN, tm.Q_MIN, v)))
    return s


OP = tm.ROW_OP_CODE
DIV_BITS = tm.RMS_DIV_CYCLES  # quotient bits of floor(2^4 S / n)
V_BITS = DIV_BITS + 1  # V = ms + 1 <= 2^34 + 1
SSQ_BITS = 47  # sum of squares <= 65535 x 2^30


class RowLane(wiring.Component):
    """One lane's arithmetic (combinational): every op of ``ROW_OPS`` on (a, b, c), selected by ``op``;
    ``rmsnorm`` scales ``a`` by the row's factor g1 2^-shift (``rnd`` = 2^(shift-1))."""

    def __init__(self):
        q = signed(tm.Q_BITS)
        super().__init__({"op": In(3), "a": In(q), "b": In(q), "c": In(q), "g1": In(17), "shift": In(5),
                          "rnd": In(23), "res": Out(q)})

    def elaborate(self, platform):
        m = Module()
        a, b, c = self.a, self.b, self.c
        # sigmoid in Q0.16: LUT + interpolation on |a|, mirrored for a < 0
        t = Signal(16)
        m.d.comb += t.eq(abs(a))
        base, delta = Signal(17), Signal(16)
        with m.Switch(t[tm.SIG_KNOT_BITS:12]):
            for i in range(len(tm.SIGMOID_LUT) - 1):
                with m.Case(i):
                    m.d.comb += [base.eq(tm.SIGMOID_LUT[i]), delta.eq(tm.SIGMOID_LUT[i + 1] - tm.SIGMOID_LUT[i])]
        s16 = Signal(17)
        m.d.comb += s16.eq(Mux(t >= tm.SIG_LIMIT, 1 << 16, base + ((delta * t[:tm.SIG_KNOT_BITS]) >> tm.SIG_KNOT_BITS)))
        sig = Signal(17)
        m.d.comb += sig.eq(Mux(a < 0, (1 << 16) - s16, s16))

        with m.Switch(self.op):
            with m.Case(OP["add"]):
                m.d.comb += self.res.eq(_sat(m, a + b, "add"))
            with m.Case(OP["sub"]):
                m.d.comb += self.res.eq(_sat(m, a - b, "sub"))
            with m.Case(OP["mul"]):
                m.d.comb += self.res.eq(_sat(m, (a * b + (1 << 7)) >> 8, "mul"))
            with m.Case(OP["gru"]):  # f h + (256 - f) c == 256 c + f (h - c): one multiplier
                m.d.comb += self.res.eq(_sat(m, ((c << 8) + a * (b - c) + (1 << 7)) >> 8, "gru"))
            with m.Case(OP["sigmoid"]):
                m.d.comb += self.res.eq((sig + (1 << 7)) >> 8)
            with m.Case(OP["silu"]):
                m.d.comb += self.res.eq(_sat(m, (a * sig + (1 << 15)) >> 16, "silu"))
            with m.Case(OP["rmsnorm"]):
                m.d.comb += self.res.eq(_sat(m, (a * self.g1 + self.rnd) >> self.shift, "rms"))
            with m.Default():
                m.d.comb += self.res.eq(0)
        return m


class SumSquares(wiring.Component):
    """RMSNorm's first pass: with ``en``, ``total`` <= (``clear`` ? 0 : ``total``) + the sum of the
    squares of the lanes of ``x`` selected by ``mask``; ``next`` is that new value."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        super().__init__({"x": In(data.ArrayLayout(signed(tm.Q_BITS), lanes)), "mask": In(lanes), "en": In(1),
                          "clear": In(1), "total": Out(SSQ_BITS), "next": Out(SSQ_BITS)})

    def elaborate(self, platform):
        m = Module()
        squares = [Mux(self.mask[j], self.x[j] * self.x[j], 0) for j in range(self.lanes)]
        m.d.comb += self.next.eq(Mux(self.clear, 0, self.total) + _tree(m, squares, "sq"))
        with m.If(self.en):
            m.d.sync += self.total.eq(self.next)
        return m


class RmsFactor(wiring.Component):
    """RMSNorm's factor from the sum of squares ``s`` of ``n`` elements, ``RMS_COMPUTE_CYCLES`` (40)
    cycles after ``start``: 35 restoring-division steps (ms = floor(2^4 s / n)), then V = ms + 1 is
    normalized to u 4^e, the LUT gives g0, and three cycles of one multiply each give g1.  ``final``
    is high in the last cycle (g1 and e are valid from the next)."""

    def __init__(self):
        super().__init__({"start": In(1), "s": In(SSQ_BITS), "n": In(16), "busy": Out(1), "final": Out(1),
                          "g1": Out(17), "e": Out(5)})

    def elaborate(self, platform):
        m = Module()
        rem = Signal(tm.RMS_MS_FRAC - 2 * tm.Q_FRAC + SSQ_BITS)  # 2^4 S
        div = Signal(16 + DIV_BITS)  # n << 34, shifted right a step at a time
        quo = Signal(DIV_BITS)
        step = Signal(range(tm.RMS_COMPUTE_CYCLES))
        u_r = Signal(32)  # u in Q2.30
        g0, sq, pr = Signal(16), Signal(16), Signal(18)

        v = Signal(V_BITS)
        msb = Signal(range(V_BITS))
        m.d.comb += v.eq(quo + 1)
        for i in range(V_BITS):  # priority encoder: the last assignment (highest set bit) wins
            with m.If(v[i]):
                m.d.comb += msb.eq(i)
        e = Signal(5)
        norm = Signal(6)
        u36 = Signal(36)
        m.d.comb += [e.eq(msb >> 1), norm.eq(34 - Cat(Const(0, 1), e)), u36.eq(v << norm)]  # V << (34 - 2e)
        lut = Signal(16)
        with m.Switch(u_r[24:32]):
            for i, g in enumerate(tm.RSQRT_LUT):
                with m.Case(i + tm.RSQRT_LUT_FIRST):
                    m.d.comb += lut.eq(g)

        m.d.comb += self.final.eq(self.busy & (step == tm.RMS_COMPUTE_CYCLES - 1))
        with m.If(self.start):
            m.d.sync += [rem.eq(self.s << (tm.RMS_MS_FRAC - 2 * tm.Q_FRAC)), div.eq(self.n << (DIV_BITS - 1)),
                         quo.eq(0), step.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            m.d.sync += step.eq(step + 1)
            with m.If(step < DIV_BITS):  # restoring division, one quotient bit a cycle
                with m.If(rem >= div):
                    m.d.sync += [rem.eq(rem - div), quo.eq(Cat(Const(1, 1), quo))]
                with m.Else():
                    m.d.sync += quo.eq(Cat(Const(0, 1), quo))
                m.d.sync += div.eq(div >> 1)
            with m.Elif(step == DIV_BITS):  # normalize V = u 4^e
                m.d.sync += [u_r.eq(u36[4:36]), self.e.eq(e)]
            with m.Elif(step == DIV_BITS + 1):
                m.d.sync += g0.eq(lut)
            with m.Elif(step == DIV_BITS + 2):
                m.d.sync += sq.eq((g0 * g0) >> 15)
            with m.Elif(step == DIV_BITS + 3):
                m.d.sync += pr.eq((u_r[15:32] * sq) >> 15)
            with m.Else():
                m.d.sync += [self.g1.eq((g0 * (3 * (1 << 15) - pr)) >> 16), self.busy.eq(0), step.eq(0)]
        return m


class RowUnit(wiring.Component):
    """Row-wise operation unit: ``lanes`` Q8.8 lanes running one op of ``models.ternary.ROW_OPS`` a row."""

    def __init__(self, lanes: int = 8):
        self.lanes = _check(self, lanes, 1, 256, "lanes")
        q = signed(tm.Q_BITS)
        super().__init__({
            "in_valid": In(1),
            "in_ready": Out(1),
            "op": In(3),
            "length": In(16),
            "a": In(data.ArrayLayout(q, self.lanes)),
            "b": In(data.ArrayLayout(q, self.lanes)),
            "c": In(data.ArrayLayout(q, self.lanes)),
            "out": Out(data.ArrayLayout(q, self.lanes)),
            "out_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        q = signed(tm.Q_BITS)

        # ---- row framing: elements left in the current pass, phase 0 run / 1 compute / 2 rmsnorm pass 2
        left = Signal(17)
        phase = Signal(2)
        op_r, len_r = Signal(3), Signal(16)
        new_row = Signal()
        cur_op, cur_left, cur_len = Signal(3), Signal(17), Signal(16)
        m.d.comb += [
            new_row.eq((left == 0) & (phase == 0)),
            cur_op.eq(Mux(new_row, self.op, op_r)),
            cur_left.eq(Mux(new_row, self.length, left)),
            cur_len.eq(Mux(new_row, self.length, len_r)),
            self.in_ready.eq(phase != 1),
        ]
        take = Signal()
        end = Signal()  # this beat ends the pass
        m.d.comb += [take.eq(self.in_valid & self.in_ready), end.eq(cur_left <= lanes)]
        mask = Signal(lanes)
        m.d.comb += mask.eq(Cat(*[cur_left > j for j in range(lanes)]))

        # ---- stage 1: input registers
        a_r = Signal(data.ArrayLayout(q, lanes))
        b_r = Signal(data.ArrayLayout(q, lanes))
        c_r = Signal(data.ArrayLayout(q, lanes))
        mask_r, op1, v1 = Signal(lanes), Signal(3), Signal()
        is_rms = Signal()
        m.d.comb += is_rms.eq(cur_op == OP["rmsnorm"])
        m.d.sync += v1.eq(0)
        with m.If(take):
            m.d.sync += [a_r.eq(self.a), b_r.eq(self.b), c_r.eq(self.c), mask_r.eq(mask), op1.eq(cur_op),
                         v1.eq(~is_rms | (phase == 2)), op_r.eq(cur_op), len_r.eq(cur_len),
                         left.eq(Mux(end, 0, cur_left - lanes))]
            with m.If(end & (phase == 2)):
                m.d.sync += phase.eq(0)

        # ---- rmsnorm: pass 1 sums the squares straight off the inputs, then the factor
        m.submodules.ssq = ssq = SumSquares(lanes)
        m.submodules.factor = factor = RmsFactor()
        pass1 = Signal()
        m.d.comb += [pass1.eq(take & is_rms & (phase == 0)),
                     ssq.x.eq(self.a), ssq.mask.eq(mask), ssq.en.eq(pass1), ssq.clear.eq(new_row),
                     factor.start.eq(pass1 & end), factor.s.eq(ssq.next), factor.n.eq(cur_len)]
        with m.If(pass1 & end):
            m.d.sync += phase.eq(1)
        with m.If(factor.final):
            m.d.sync += [phase.eq(2), left.eq(len_r)]

        # ---- stage 2: the lanes' arithmetic on the registered beat, then the output register
        shift = Signal(5)
        rnd = Signal(23)
        m.d.comb += [shift.eq(factor.e + 5), rnd.eq(Const(1, 23) << (factor.e + 4))]
        m.d.sync += self.out_valid.eq(v1)
        for j in range(lanes):
            lane = RowLane()
            m.submodules[f"lane{j}"] = lane
            m.d.comb += [lane.op.eq(op1), lane.a.eq(a_r[j]), lane.b.eq(b_r[j]), lane.c.eq(c_r[j]),
                         lane.g1.eq(factor.g1), lane.shift.eq(shift), lane.rnd.eq(rnd)]
            m.d.sync += self.out[j].eq(Mux(mask_r[j], lane.res, 0))
        return m
