"""Text of the adjoint's unrolled inner products, pasted into ``templates/dmft.py`` at emit time.

The adjoint recursion of the r-side sweep (docs/theory.md §3) sums, for each of the LANES tangent
paths of a block, products of one row of R_theta^T with the path's Z. Written as one scalar
accumulator per lane (and per output component / row), LLVM's SLP vectoriser packs the lanes into
one SIMD register (issue 12; ``templates/dmft.py`` says why and how it is switched on). Those
functions are LANES-fold repetitions of one statement per accumulator, so they are generated here
from a description -- which rows of RT, which loads of Zt / Zc, which accumulators -- instead of
being written out by hand: one place to change, and the four variants cannot drift apart.

Precision: the helpers run in float32 (Zt, Zc, the accumulators, and RT, which the theta-side
keeps in float32; every accumulator starts at ``np.float32(0.0)`` so that numba types the sums
float32, a plain 0.0 would promote them to float64), so one AVX-512 register holds LANES = 16 lanes
instead of 8 float64 ones: twice the multiply-adds per instruction and half the bytes of Zt, Zc
and RT. The template's docstring (module
``templates/dmft.py``, "Precision of the adjoint") says why float32 round-off is harmless there.
"""
from __future__ import annotations

#: tangent paths per block (the template's LANES; tests check that the two agree)
LANES = 16


def _lanes(fmt: str) -> list[str]:
    return [fmt.format(i) for i in range(LANES)]


def _zero(fmt: str) -> str:
    return " = ".join(_lanes(fmt)) + " = np.float32(0.0)"


def _loop(ind, rows, loads, updates):
    """``for j`` over the products: the RT rows, the Z loads, then every accumulator's lanes."""
    out = [f"{ind}for j in range(j0, j1):"]
    out += [f"{ind}    {var} = {expr}" for var, expr in rows]
    for var, expr in loads:
        out += [f"{ind}    {v} = {e}" for v, e in zip(_lanes(var), _lanes(expr))]
    for acc, z, row in updates:
        out += [f"{ind}    {a} += {v} * {row}" for a, v in zip(_lanes(acc), _lanes(z))]
    return out


def _stores(ind, stores):
    return [f"{ind}{d} = {a}" for dst, acc in stores for d, a in zip(_lanes(dst), _lanes(acc))]


def _dots(head, rows, main, cv):
    """One helper: ``main`` / ``cv`` are (loads, updates, stores) of the tangent Z and of its
    control variate Zc (only ``if use_cv``); loads (name, expression), updates (accumulator, Z
    value, RT row), stores (destination, accumulator), each a format with {} for the lane."""
    ind, ind2 = " " * 8, " " * 12
    out = list(head)
    out += [ind + _zero(acc) for acc, _, _ in main[1]]
    out.append(ind + "if use_cv:")
    out += [ind2 + _zero(acc) for acc, _, _ in cv[1]]
    out += _loop(ind2, rows, main[0] + cv[0], main[1] + cv[1])
    out += _stores(ind2, cv[2])
    out.append(ind + "else:")
    out += _loop(ind2, rows, main[0], main[1])
    out += _stores(ind, main[2])
    return out


#: which helpers the template calls for a student width M (the others are never reached there)
USED = {"adjoint_dots": lambda M: M != 2, "adjoint_dots2": lambda M: M == 2,
        "adjoint_dots1p": lambda M: M == 1, "adjoint_dots2p": lambda M: M == 2}


def _stub(helper: list[str], M: int) -> list[str]:
    """A helper the template never calls for this M, as a lazily compiled stub with its name and
    arguments: the eager compilation of an unrolled helper costs ~2-7 s per generated module
    (uncached: a fresh clone, CI), for code that M never runs."""
    name = helper[1].split("def ", 1)[1].split("(", 1)[0]
    sig = helper[1].split("def ", 1)[1].split(":", 1)[0]
    return ['    @njit(cache=True, nogil=True)',
            f"    def {sig}:  # pragma: no cover - not called for M = {M}",
            f'        raise NotImplementedError("{name} is not used for M = {M}")']


def adjoint_helpers(M: int) -> str:
    """The four helpers (indented for the template's ``try:`` block), in template order:
    ``adjoint_dots`` (M = 1 at l = 0, M >= 3; one (a, c)), ``adjoint_dots2`` (M = 2, all (a, c)),
    ``adjoint_dots1p`` (M = 1, rows l and l - 1) and ``adjoint_dots2p`` (M = 2, rows l and l - 1);
    those that student width ``M`` does not call as stubs (:func:`_stub`)."""
    deco = '    @njit({}, cache=True, nogil=True, error_model="numpy", fastmath={{"contract"}})'
    ac = [(a, c) for a in range(2) for c in range(2)]
    dots = _dots(
        [deco.format("ADJ_SIG"),
         "    def adjoint_dots(RT, Zt, Zc, l, a, c, j0, j1, use_cv, acc3, accc):  # pragma: no cover - compiled",
         '        """acc3[a, c, :] = sum_{j0 <= j < j1} Zt[j, a, :] RT[l M + c, j] for the LANES lanes, and',
         '        the same into accc for the control variate Zc (one pass: the loads of RT shared)."""',
         "        rrow = l * M + c"],
        [("rv", "RT[rrow, j]")],
        ([], [("u{}", "Zt[j, a, {}]", "rv")], [("acc3[a, c, {}]", "u{}")]),
        ([], [("w{}", "Zc[j, a, {}]", "rv")], [("accc[a, c, {}]", "w{}")]))
    dots2 = _dots(
        [deco.format("ADJ_SIG"),
         "    def adjoint_dots2(RT, Zt, Zc, l, a, c, j0, j1, use_cv, acc3, accc):  # pragma: no cover - compiled",
         '        """M = 2: adjoint_dots for every (a, c) in one pass (each load of Zt, Zc, RT shared; eight',
         '        independent SIMD accumulators with the control variate, four without); ``a``, ``c`` unused."""',
         "        r0 = l * 2",
         "        r1 = r0 + 1"],
        [("rv0", "RT[r0, j]"), ("rv1", "RT[r1, j]")],
        ([(f"z{a}_{{}}", f"Zt[j, {a}, {{}}]") for a in range(2)],
         [(f"u{a}{c}_{{}}", f"z{a}_{{}}", f"rv{c}") for a, c in ac],
         [(f"acc3[{a}, {c}, {{}}]", f"u{a}{c}_{{}}") for a, c in ac]),
        ([(f"q{a}_{{}}", f"Zc[j, {a}, {{}}]") for a in range(2)],
         [(f"w{a}{c}_{{}}", f"q{a}_{{}}", f"rv{c}") for a, c in ac],
         [(f"accc[{a}, {c}, {{}}]", f"w{a}{c}_{{}}") for a, c in ac]))
    dots1p = _dots(
        [deco.format("ADJ1P_SIG"),
         "    def adjoint_dots1p(RT, Zt, Zc, l, j0, j1, use_cv, acc3, accc, accp, acccp):  # pragma: no cover",
         '        """M = 1: the sums of rows l and l - 1 in one pass over j0 <= j < j1 (j0 = l + 1): acc3 /',
         "        accc complete for row l, accp / acccp row l - 1 without its j = l term (added once Z_l is",
         '        known). Four independent SIMD accumulators with the control variate instead of two."""',
         "        r1 = l - 1"],
        [("rv", "RT[l, j]"), ("sv", "RT[r1, j]")],
        ([("z{}", "Zt[j, 0, {}]")], [("u{}", "z{}", "rv"), ("x{}", "z{}", "sv")],
         [("acc3[0, 0, {}]", "u{}"), ("accp[0, 0, {}]", "x{}")]),
        ([("q{}", "Zc[j, 0, {}]")], [("w{}", "q{}", "rv"), ("y{}", "q{}", "sv")],
         [("accc[0, 0, {}]", "w{}"), ("acccp[0, 0, {}]", "y{}")]))
    # M = 2, rows l and l - 1 in one pass: sixteen accumulators (eight per row with the control
    # variate), every load of Zt, Zc used four times and of RT eight times (rows l: 2l, 2l + 1;
    # l - 1: 2l - 2, 2l - 1)
    dots2p = _dots(
        [deco.format("ADJ1P_SIG"),
         "    def adjoint_dots2p(RT, Zt, Zc, l, j0, j1, use_cv, acc3, accc, accp, acccp):  # pragma: no cover",
         '        """M = 2: adjoint_dots2 of rows l and l - 1 in one pass over j0 <= j < j1 (j0 = 2 (l + 1)):',
         "        acc3 / accc complete for row l, accp / acccp row l - 1 without its j = 2 l, 2 l + 1 terms",
         '        (added once Z_l is known)."""',
         "        r0 = l * 2",
         "        r1 = r0 + 1",
         "        p0 = r0 - 2",
         "        p1 = r0 - 1"],
        [("rv0", "RT[r0, j]"), ("rv1", "RT[r1, j]"), ("sv0", "RT[p0, j]"), ("sv1", "RT[p1, j]")],
        ([(f"z{a}_{{}}", f"Zt[j, {a}, {{}}]") for a in range(2)],
         [(f"u{a}{c}_{{}}", f"z{a}_{{}}", f"rv{c}") for a, c in ac]
         + [(f"x{a}{c}_{{}}", f"z{a}_{{}}", f"sv{c}") for a, c in ac],
         [(f"acc3[{a}, {c}, {{}}]", f"u{a}{c}_{{}}") for a, c in ac]
         + [(f"accp[{a}, {c}, {{}}]", f"x{a}{c}_{{}}") for a, c in ac]),
        ([(f"q{a}_{{}}", f"Zc[j, {a}, {{}}]") for a in range(2)],
         [(f"w{a}{c}_{{}}", f"q{a}_{{}}", f"rv{c}") for a, c in ac]
         + [(f"y{a}{c}_{{}}", f"q{a}_{{}}", f"sv{c}") for a, c in ac],
         [(f"accc[{a}, {c}, {{}}]", f"w{a}{c}_{{}}") for a, c in ac]
         + [(f"acccp[{a}, {c}, {{}}]", f"y{a}{c}_{{}}") for a, c in ac]))
    helpers = [(name, body if USED[name](M) else _stub(body, M))
               for name, body in (("adjoint_dots", dots), ("adjoint_dots2", dots2),
                                  ("adjoint_dots1p", dots1p), ("adjoint_dots2p", dots2p))]
    return "\n".join(helpers[0][1] + [""] + [line for _, body in helpers[1:] for line in body]) + "\n"
