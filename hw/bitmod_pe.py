"""BitMoD's bit-serial processing element (Chen et al., HPCA 2025, Sec. IV-B) in Amaranth.

Each step takes four FP16 activations and four weight codes: FP4 or FP3 (``mode`` 0 or 1; the
negative-zero code stands for the group's special value, see ``models.bitmod.weight_half_units``),
or INT6 / INT8 (``mode`` 2 or 3, lossless BitMoD).  An FP weight's magnitude, in half units, has at
most two set bits: the PE processes it as two terms, one per cycle (two weight bits per cycle), so
a step takes 2 cycles and a group of 128 weights 64.  An INT weight is radix-4 Booth-recoded into
digits in {-2, -1, 0, 1, 2}, one term per digit: INT6 in 3 cycles per step, INT8 in 4.  A term is
(sign, position): its product with an
activation is the activation's 11-bit significand shifted by the activation's exponent plus the
term's position — exponent alignment onto a fixed-point accumulator that holds the group's exact
sum (times 2^26, see ``models.bitmod.pe_group_sum``).  ``last`` marks a group's final step: its
exact sum appears on ``sum`` with ``sum_valid`` and the accumulator restarts, so groups stream back
to back.  :class:`Dequant` multiplies a group sum by its 8-bit scale code bit-serially (one scale
bit per cycle, 8 cycles), in parallel with the next group's 64 cycles.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.bitmod import FP3_HALF, FP4_HALF, SPECIAL_HALF  # the weight value tables (constants)

ACC_BITS = 60  # |sum| < 128 weights x 2^8 (INT8, half units) x 2^11 x 2^30 = 2^56, plus sign
LANES = 4


class BitModPE(wiring.Component):
    in_valid: In(1)
    in_ready: Out(1)
    last: In(1)  # this step ends the group
    mode: In(2)  # weight format: 0 FP4, 1 FP3, 2 INT6, 3 INT8
    sel: In(2)  # the group's special value: +ER, -ER, +EA, -EA
    act: In(16).array(LANES)
    code: In(8).array(LANES)
    sum: Out(signed(ACC_BITS))
    sum_valid: Out(1)

    def elaborate(self, platform):
        m = Module()
        busy = Signal()  # a step is being processed
        phase = Signal(2)  # its term: 0, 1 (FP), up to 2 (INT6) or 3 (INT8)
        acc = Signal(signed(ACC_BITS))
        act_r = [Signal(16, name=f"act_r{i}") for i in range(LANES)]
        code_r = [Signal(8, name=f"code_r{i}") for i in range(LANES)]
        last_r, mode_r, sel_r = Signal(), Signal(2), Signal(2)
        final = Mux(mode_r == 3, 3, Mux(mode_r == 2, 2, 1))  # the last term's phase
        is_int = mode_r[1]
        fp3 = mode_r == 1

        # accept a new step when idle or in the last cycle of the current one
        m.d.comb += self.in_ready.eq(~busy | (phase == final))
        take = self.in_valid & self.in_ready

        # Each lane's current term (on, sign, position) is decoded from registers by case analysis,
        # the weight tables being constants; the products are expressions summed into `total`.
        # Only `total` reads other combinational signals, so the simulator settles the logic in two
        # evaluations a cycle.
        contrib = []
        for i in range(LANES):
            a, c = act_r[i], code_r[i]
            t_sign, t_pos, t_on = Signal(name=f"t_sign{i}"), Signal(4, name=f"t_pos{i}"), Signal(name=f"t_on{i}")

            def term(sign, pos, t_sign=t_sign, t_pos=t_pos, t_on=t_on):
                m.d.comb += [t_on.eq(1), t_sign.eq(sign), t_pos.eq(pos)]

            def fp_terms(sign, mag, term=term):
                # a magnitude (half units) has at most two set bits: the higher (or only) one is
                # the term of phase 0, the lower one the term of phase 1
                low = mag & -mag
                for ph, t in enumerate((mag ^ low, low) if mag & (mag - 1) else (mag, 0)):
                    if t:
                        with m.If(phase[0] == ph):
                            term(sign, t.bit_length() - 1)

            with m.If(is_int):
                # radix-4 Booth digit `phase` of the sign-extended 8-bit weight: bits (2j+1, 2j, 2j-1)
                c8 = Mux(mode_r == 2, Cat(c[0:6], c[5], c[5]), c)
                with m.Switch(phase):
                    for j in range(4):
                        with m.Case(j):
                            # digits 0-2 read bits 0-5 only, which INT6 and INT8 share
                            trip = Cat(Const(0, 1), c8 if j == 3 else c)[2 * j:2 * j + 3]
                            with m.Switch(trip):
                                for t in range(1, 7):  # 000 and 111: digit 0, no term
                                    with m.Case(t):
                                        two = t in (0b011, 0b100)  # |digit| == 2
                                        term(t >> 2, 2 * j + two + 1)  # 2j + (|d| == 2), +1 for half units
            with m.Else():
                # FP code -> sign and magnitude in half units (table constants)
                negzero = Mux(fp3, c[0:3] == 0b100, c[0:4] == 0b1000)
                with m.If(negzero):
                    with m.Switch(Cat(sel_r, fp3)):
                        for bits, sel_base in ((4, 0), (3, 4)):
                            for s, v in enumerate(SPECIAL_HALF[bits]):
                                with m.Case(s | sel_base):
                                    fp_terms(int(v < 0), abs(v))
                with m.Elif(fp3):
                    with m.Switch(c[0:2]):
                        for k, v in enumerate(FP3_HALF):
                            with m.Case(k):
                                fp_terms(c[2], v)
                with m.Else():
                    with m.Switch(c[0:3]):
                        for k, v in enumerate(FP4_HALF):
                            with m.Case(k):
                                fp_terms(c[3], v)

            # the product: the activation's significand shifted by its exponent plus the term's position
            exp = a[10:15]
            sig = Cat(a[0:10], exp != 0)  # 11-bit significand, hidden bit for normals
            eff = Mux(exp == 0, 1, exp)
            shifted = Mux(t_on, sig << (eff + t_pos), 0)[:ACC_BITS]
            neg = a[15] ^ t_sign
            contrib.append((shifted.as_signed() ^ Mux(neg, -1, 0)) + neg)  # negated: ~x + 1

        total = Signal(signed(ACC_BITS))
        m.d.comb += total.eq(acc + contrib[0] + contrib[1] + contrib[2] + contrib[3])

        m.d.sync += self.sum_valid.eq(0)
        with m.If(busy):
            with m.If(phase != final):
                m.d.sync += [acc.eq(total), phase.eq(phase + 1)]
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
            m.d.sync += [last_r.eq(self.last), mode_r.eq(self.mode), sel_r.eq(self.sel), phase.eq(0)]
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
