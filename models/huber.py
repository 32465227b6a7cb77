"""Huber regression (piecewise loss) with Gaussian label noise.

    theta*_j ~ N(0, 1),  theta^0 = 0
    y = s0 + sigma * z,   z ~ N(0, 1),   e = r0 - y
    L = e^2 / 2 if |e| <= c else c |e| - c^2 / 2,    ell = clip(e, -c, c)

Regenerate kernels: python -m dmftgen generate huber
"""
import sympy as sp

from dmftgen import Model, student, teacher

# Symbols
r = student(1)
s = teacher(1)
z, sigma, c = sp.symbols("z sigma c", real=True)

# Labels and loss
y = s[0] + sigma * z
e = r[0] - y

# Model
MODEL = Model(
    name="huber",
    description="Huber regression (threshold c), Gaussian teacher and label noise",
    student=r,
    teacher=s,
    noise={z: "normal"},
    params={sigma: 0.5, c: 1.0},
    labels=y,
    loss=sp.Piecewise((e**2 / 2, sp.Abs(e) <= c), (c * sp.Abs(e) - c**2 / 2, True)),
    init_std=0,
    teacher_std=1,
)
