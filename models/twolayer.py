"""Two-layer tanh network, first layer trained, fixed second layer a = (1, -1)/2 (m = 2, k = 2).

    f(r) = (tanh(r0) - tanh(r1)) / 2,      teacher g(s) = (tanh(s0) - tanh(s1)) / 2
    y = g(s) + sigma * z,   z ~ N(0, 1)
    L = (f(r) - y)^2 / 2 + nothing;  theta^0 rows ~ N(0, init_std^2 I)

Regenerate kernels: python -m dmftgen generate twolayer
"""
import sympy as sp

from dmftgen import Model, student, teacher

# Symbols
r = student(2)
s = teacher(2)
z, sigma, init_std = sp.symbols("z sigma init_std", real=True)

# Labels and loss
f = (sp.tanh(r[0]) - sp.tanh(r[1])) / 2
y = (sp.tanh(s[0]) - sp.tanh(s[1])) / 2 + sigma * z

# Model
MODEL = Model(
    name="twolayer",
    description="two-layer tanh network (first layer trained), m = 2, teacher k = 2, square loss",
    student=r,
    teacher=s,
    noise={z: "normal"},
    params={sigma: 0.1, init_std: 0.3},
    labels=y,
    loss=(f - y) ** 2 / 2,
    init_std=init_std,
    teacher_std=1,
)
