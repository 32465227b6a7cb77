"""Two-layer committee machine with erf activation, square loss (student m = 2, teacher k = 1).

    f(r) = (erf(r0/sqrt2) + erf(r1/sqrt2)) / sqrt2
    y = erf(s0/sqrt2) + sigma * z,   z ~ N(0, 1)
    L = (f(r) - y)^2 / 2,   theta^0 rows ~ N(0, init_std^2 I)

Regenerate kernels: python -m dmftgen generate committee
"""
import sympy as sp

from dmftgen import Model, student, teacher

# Symbols
r = student(2)
s = teacher(1)
z, sigma, init_std = sp.symbols("z sigma init_std", real=True)

# Labels and loss
f = (sp.erf(r[0] / sp.sqrt(2)) + sp.erf(r[1] / sp.sqrt(2))) / sp.sqrt(2)
y = sp.erf(s[0] / sp.sqrt(2)) + sigma * z

# Model
MODEL = Model(
    name="committee",
    description="committee machine, erf activation, m = 2 student, k = 1 teacher, square loss",
    student=r,
    teacher=s,
    noise={z: "normal"},
    params={sigma: 0.1, init_std: 0.5},
    labels=y,
    loss=(f - y) ** 2 / 2,
    init_std=init_std,
    teacher_std=1,
)
