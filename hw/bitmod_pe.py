"""BitMoD's bit-serial processing element (Chen et al., HPCA 2025, Sec. IV-B) in Amaranth.

Each step takes four FP16 activations and four 4-bit weight codes (FP4, or FP3 in the low three
bits, the negative-zero code standing for the group's special value; see
``models.bitmod.weight_half_units``).  A weight's magnitude, in half units, has at most two set
bits: the PE processes it as two terms, one per cycle (two weight bits per cycle), so a step takes
2 cycles and a group of 128 weights 64 cycles.  A term is (sign, position): its product with an
activation is the activation's 11-bit significand shifted by the activation's exponent plus the
term's position — exponent alignment onto a fixed-point accumulator that holds the group's exact
sum (times 2^26, see ``models.bitmod.pe_group_sum``).  ``last`` marks a group's final step: its
exact sum appears on ``sum`` with ``sum_valid`` and the accumulator restarts, so groups stream back
to back.  :class:`Dequant` multiplies a group sum by its 8-bit scale code bit-serially (one scale
bit per cycle, 8 cycles), in parallel with the next group's 64 cycles.
"""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

ACC_BITS = 60  # 11-bit significand << (30 + 4), over 4 lanes x 32 steps x 2 terms: 45 + 8 + sign
LANES = 4
CYCLES_PER_STEP = 2
FP4_HALF = (0, 1, 2, 3, 4, 6, 8, 12)
FP3_HALF = (0, 2, 4, 8)
SPECIAL_HALF = {4: (10, -10, 16, -16), 3: (6, -6, 12, -12)}


class BitModPE(wiring.Component):
    in_valid: In(1)
    in_ready: Out(1)
    last: In(1)  # this step ends the group
    fp3: In(1)  # codes are FP3 (else FP4)
    sel: In(2)  # the group's special value: +ER, -ER, +EA, -EA
    act: In(16).array(LANES)
    code: In(4).array(LANES)
    sum: Out(signed(ACC_BITS))
    sum_valid: Out(1)

    def elaborate(self, platform):
        m = Module()
        busy = Signal()  # a step is being processed
        phase = Signal()  # its term: 0 (high bit) or 1 (low bit)
        acc = Signal(signed(ACC_BITS))
        act_r = [Signal(16, name=f"act_r{i}") for i in range(LANES)]
        code_r = [Signal(4, name=f"code_r{i}") for i in range(LANES)]
        last_r, fp3_r, sel_r = Signal(), Signal(), Signal(2)

        # accept a new step when idle or in the last cycle of the current one
        m.d.comb += self.in_ready.eq(~busy | phase)
        take = self.in_valid & self.in_ready

        contrib = []
        for i in range(LANES):
            a, c = act_r[i], code_r[i]
            exp = a[10:15]
            sig = Cat(a[0:10], exp != 0)  # 11-bit significand, hidden bit for normals
            eff = Mux(exp == 0, 1, exp)
            # weight code -> sign and magnitude in half units (5 bits)
            w_sign, w_mag = Signal(name=f"w_sign{i}"), Signal(5, name=f"w_mag{i}")
            special = Signal(signed(6), name=f"special{i}")
            with m.Switch(Cat(sel_r, fp3_r)):
                for s in range(4):
                    with m.Case(s):  # FP4
                        m.d.comb += special.eq(SPECIAL_HALF[4][s])
                    with m.Case(s | 4):  # FP3
                        m.d.comb += special.eq(SPECIAL_HALF[3][s])
            with m.If(fp3_r):
                with m.If(c[0:3] == 0b100):
                    m.d.comb += [w_sign.eq(special < 0), w_mag.eq(Mux(special < 0, -special, special))]
                with m.Else():
                    m.d.comb += w_sign.eq(c[2])
                    with m.Switch(c[0:2]):
                        for k, v in enumerate(FP3_HALF):
                            with m.Case(k):
                                m.d.comb += w_mag.eq(v)
            with m.Else():
                with m.If(c == 0b1000):
                    m.d.comb += [w_sign.eq(special < 0), w_mag.eq(Mux(special < 0, -special, special))]
                with m.Else():
                    m.d.comb += w_sign.eq(c[3])
                    with m.Switch(c[0:3]):
                        for k, v in enumerate(FP4_HALF):
                            with m.Case(k):
                                m.d.comb += w_mag.eq(v)
            # the two terms: the lowest set bit, and the rest (one bit at most)
            low = Signal(5, name=f"low{i}")
            m.d.comb += low.eq(w_mag & (~w_mag + 1))
            two = (w_mag & (w_mag - 1)) != 0
            term = Signal(5, name=f"term{i}")
            m.d.comb += term.eq(Mux(phase, Mux(two, low, 0), Mux(two, w_mag ^ low, w_mag)))
            pos = Signal(3, name=f"pos{i}")
            with m.Switch(term):
                for p in range(5):
                    with m.Case(1 << p):
                        m.d.comb += pos.eq(p)
            shifted = Signal(ACC_BITS, name=f"shifted{i}")
            m.d.comb += shifted.eq(Mux(term != 0, sig << (eff + pos), 0))
            neg = a[15] ^ w_sign
            part = Signal(signed(ACC_BITS), name=f"part{i}")
            m.d.comb += part.eq(Mux(neg, -shifted.as_signed(), shifted.as_signed()))
            contrib.append(part)

        total = Signal(signed(ACC_BITS))
        m.d.comb += total.eq(acc + contrib[0] + contrib[1] + contrib[2] + contrib[3])

        m.d.sync += self.sum_valid.eq(0)
        with m.If(busy):
            with m.If(~phase):
                m.d.sync += [acc.eq(total), phase.eq(1)]
            with m.Else():
                with m.If(last_r):
                    m.d.sync += [self.sum.eq(total), self.sum_valid.eq(1), acc.eq(0)]
                with m.Else():
                    m.d.sync += acc.eq(total)
                m.d.sync += [phase.eq(0), busy.eq(take)]
        with m.Elif(take):
            m.d.sync += busy.eq(1)
        with m.If(take):
            m.d.sync += [r.eq(v) for r, v in zip(act_r, self.act)]
            m.d.sync += [r.eq(v) for r, v in zip(code_r, self.code)]
            m.d.sync += [last_r.eq(self.last), fp3_r.eq(self.fp3), sel_r.eq(self.sel), phase.eq(0)]
        return m


class Dequant(wiring.Component):
    """Group sum x 8-bit scale code, one scale bit per cycle (MSB first): 8 cycles."""

    start: In(1)
    sum: In(signed(ACC_BITS))
    scale: In(8)
    result: Out(signed(ACC_BITS + 9))
    valid: Out(1)

    def elaborate(self, platform):
        m = Module()
        s = Signal(signed(ACC_BITS))
        scale = Signal(8)
        count = Signal(4)
        m.d.sync += self.valid.eq(0)
        with m.If(self.start):
            m.d.sync += [s.eq(self.sum), scale.eq(self.scale), count.eq(8), self.result.eq(0)]
        with m.Elif(count != 0):
            m.d.sync += [self.result.eq((self.result << 1) + Mux(scale[7], s, 0)),
                         scale.eq(scale << 1), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += self.valid.eq(1)
        return m
