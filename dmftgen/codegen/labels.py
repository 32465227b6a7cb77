"""Split the loss and the metrics into their label part (r*, z only) and the rest.

The test observables evaluate the loss and the metrics on one common sample at every time
(:mod:`dmftgen.observables`); r* and the label noises z of that sample are the same at every time
(teacher first), only r moves. What depends on (r*, z) alone -- the labels, e.g. 1{u <
sigmoid(beta r*)} of the logistic teacher or erf(r*/sqrt2) + sigma z of the committee's -- is
therefore computed once per sample (``aux_batch``) instead of once per sample and time, and the
loss and metrics read it back (``loss_aux_batch``, ``metrics_aux_batch``; docs/kernels.md).

The split is syntactic: every maximal subexpression that has no student symbol but at least one
teacher or noise symbol becomes an auxiliary input ``_a0, _a1, ...`` (one per distinct
subexpression, shared by the loss and the metrics, numbered in order of first appearance in a
canonical traversal, so the generated text is deterministic); in a sum or product its r-free
terms are grouped into one. Substituting the auxiliaries back gives the original expressions
(tests/test_codegen.py).
"""
from __future__ import annotations

import sympy as sp


def split_labels(exprs, student, label_symbols):
    """(reduced, aux): ``exprs`` with their label subexpressions replaced by symbols, and the list
    of (symbol, subexpression) pairs.

    Parameters
    ----------
    exprs : sequence of sympy expressions (the loss, the metrics)
    student : the student symbols r (a subexpression containing one is never hoisted)
    label_symbols : the teacher and noise symbols (a hoisted subexpression contains one)
    """
    r = set(student)
    lab = set(label_symbols)
    table: dict = {}

    def aux_of(e):
        if e not in table:
            table[e] = sp.Symbol(f"_a{len(table)}", real=True)
        return table[e]

    def hoistable(e):
        # a bare teacher / noise symbol too: the kernels that take the label part have no r*, z
        fs = e.free_symbols
        return not (fs & r) and bool(fs & lab)

    def walk(e):
        if hoistable(e):
            return aux_of(e)
        if e.is_Atom or not e.args:
            return e
        if isinstance(e, (sp.Add, sp.Mul)):
            free = [a for a in e.args if not (a.free_symbols & r) and (a.free_symbols & lab)]
            rest = [a for a in e.args if a not in free]
            if free and rest:
                return e.func(aux_of(e.func(*free)), *[walk(a) for a in rest], evaluate=False)
        return e.func(*[walk(a) for a in e.args])

    reduced = [walk(sp.sympify(e)) for e in exprs]
    return reduced, [(s, e) for e, s in table.items()]
