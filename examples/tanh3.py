"""Width-3 tanh network (soft committee, square loss) on a width-1 tanh teacher (issue 10's
second user test).

    f(r) = (tanh r0 + tanh r1 + tanh r2) / 3,   y = tanh(s0) + sigma z,   z ~ N(0, 1)
    L = (f(r) - y)^2 / 2,   theta^0 rows ~ N(0, 1/4 I)

    dmftgen compare examples/tanh3.py --T 3 --out out/tanh3
"""
import sympy as sp

from dmftgen import Model, student, teacher

r = student(3)
s = teacher(1)
z, sigma = sp.symbols("z sigma", real=True)
f = (sp.tanh(r[0]) + sp.tanh(r[1]) + sp.tanh(r[2])) / 3
y = sp.tanh(s[0]) + sigma * z

MODEL = Model(
    name="tanh3",
    description="width-3 tanh soft committee, square loss, tanh teacher with Gaussian label noise",
    student=r,
    teacher=s,
    noise={z: "normal"},
    params={sigma: 0.1},
    labels=y,
    loss=(f - y) ** 2 / 2,
    init_std=sp.Rational(1, 2),
    teacher_std=1,
)
