"""Symbolic layer (sympy): one module per model returns the expressions and equations of its
THEORY section (self-consistent equations, gap formulas, critical times, fixed points). Pure
functions of symbols with no numbers baked in; imports no other subpackage."""
