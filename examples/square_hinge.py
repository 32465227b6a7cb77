"""Square-hinge student on a probit teacher (issue 10's first user test).

    theta*_j ~ N(0, 1),  theta^0 rows ~ N(0, 1/4)
    y = sign(s0 + sigma z),  z ~ N(0, 1)        (probit: P(y = 1 | s0) = Phi(s0 / sigma))
    L = max(0, 1 - y r0)^2 / 2,   ell = -y max(0, 1 - y r0)   (Lipschitz, piecewise-linear ell)
    metric error = 1{y r0 <= 0}

    dmftgen compare examples/square_hinge.py --T 3 --out out/hinge
"""
import sympy as sp

from dmftgen import Model, student, teacher

r = student(1)
s = teacher(1)
z, sigma = sp.symbols("z sigma", real=True)
y = sp.sign(s[0] + sigma * z)
m = 1 - y * r[0]

MODEL = Model(
    name="square_hinge",
    description="square-hinge student, probit teacher sign(s + sigma z)",
    student=r,
    teacher=s,
    noise={z: "normal"},
    params={sigma: 0.3},
    labels=y,
    loss=sp.Piecewise((m**2 / 2, m > 0), (0, True)),
    metrics={"error": sp.Heaviside(-y * r[0], 1)},
    init_std=sp.Rational(1, 2),
    teacher_std=1,
)
